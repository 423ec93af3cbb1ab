"""Plain ``torchrun`` + ``DistributedDataParallel`` helpers, and the deterministic global batch order.

Launch with e.g. ``torchrun --nproc_per_node=8 -m bitcompose.cli train --preset cifar10 --root DATA``:
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed`
reads them and joins the process group (``nccl`` on CUDA, ``gloo`` on CPU). Without them it is a single process.

Determinism across world sizes: the global batch of step ``s`` is the slice ``[s·B, (s+1)·B)`` of an endless stream
of per-epoch permutations of the data set (the permutation of epoch ``e`` is drawn from a generator seeded by
``(seed, e)``), and rank ``r`` of ``W`` takes the ``r``-th contiguous part of it. All per-example randomness (flip,
t, noise, masks) is a function of ``(seed, step, global position in the batch)`` (see :func:`example_seed`), so
one process with batch ``2B`` computes exactly what two ranks with ``B`` each compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "resolve_device",
    "all_reduce_mean",
    "gather_to_main",
    "GlobalBatchOrder",
    "mix_seed",
    "example_seed",
]

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands.

    Attributes:
        rank: global rank. world_size: number of processes. local_rank: rank on this machine.
        device: the device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (which logs, samples and writes checkpoints)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; other names are checked."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(x: Tensor, info: DistInfo) -> Tensor:
    """Mean of ``x`` over ranks (``x`` itself for a single process)."""
    if not info.distributed:
        return x
    y = x.clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / info.world_size


def gather_to_main(x: Tensor, info: DistInfo) -> Tensor | None:
    """Concatenate ``x`` ``[n_r, ...]`` of every rank along dim 0, in rank order, on rank 0 (others get None).

    Ranks may hold different ``n_r``; the trailing shapes and dtype must agree.
    """
    if not info.distributed:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(info.world_size)]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    padded = torch.zeros((max(counts), *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.zeros_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)  # all_gather (not gather): gloo and nccl both support it
    if not info.is_main:
        return None
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])


def mix_seed(*values: int) -> int:
    """A 63-bit seed that mixes integers (splitmix64 finaliser); different inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def example_seed(seed: int, step: int, position: int) -> int:
    """The seed of the random stream of the example at global ``position`` in the batch of ``step``."""
    return mix_seed(seed, 1, step, position)


class GlobalBatchOrder:
    """Which data indices each rank uses at each step.

    Args:
        num_examples: size of the data set.
        batch_size: global batch size (divisible by ``world_size``).
        seed: seed of the epoch permutations.
        rank, world_size: this process's part.
    """

    def __init__(
        self, num_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if num_examples < 1:
            raise ValueError("cannot train on an empty data set")
        if batch_size % world_size:
            raise ValueError(
                f"batch_size={batch_size} is not divisible by the {world_size} distributed ranks"
            )
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.local_batch = batch_size // world_size
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> Tensor:
        """The data order of ``epoch`` (``[num_examples]`` long), identical on every rank."""
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, 0, epoch))
            self._perm = torch.randperm(self.num_examples, generator=g)
            self._epoch = epoch
        return self._perm

    def positions(self, step: int) -> Tensor:
        """Global positions ``[local_batch]`` (in ``0..batch_size-1``) of this rank's examples at ``step``."""
        start = self.rank * self.local_batch
        return torch.arange(start, start + self.local_batch)

    def indices(self, step: int) -> Tensor:
        """Data indices ``[local_batch]`` of this rank's examples at ``step``."""
        stream = step * self.batch_size + self.positions(step)
        epochs = stream // self.num_examples
        out = torch.empty_like(stream)
        for epoch in torch.unique(epochs).tolist():
            sel = epochs == epoch
            out[sel] = self.permutation(int(epoch))[stream[sel] % self.num_examples]
        return out
