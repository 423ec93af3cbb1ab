"""The training loop for image Bit Diffusion: Adam(W), warm-up, clipping, EMA, bf16, DDP, checkpoints, resume.

Randomness. Nothing uses the global RNG except the weight initialisation, which runs inside
``torch.random.fork_rng`` with a seed derived from ``config.seed`` (the global state is restored afterwards).
The data order and every per-example random draw (flip, t, noise, self-conditioning mask, label dropout) are
functions of ``(seed, step, global position in the batch)`` (:mod:`bitcompose.training.dist`), so

* resuming from a checkpoint continues *exactly* as an uninterrupted run (bitwise on CPU), and
* ``W`` ranks with batch ``B/W`` each compute the same gradients as one process with batch ``B``.

The generator of the preview sample grids is the one stateful stream; its state is checkpointed.

Files in the run folder: ``config.json`` (the run config), ``metrics.jsonl`` (one JSON line per ``log_every``
steps: step, loss, lr, grad_norm, images_per_s, elapsed_s), ``samples/step_NNNNNNN.png`` and ``checkpoint/``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from bitcompose.data.images import ImageDataset, load_image_dataset, random_flip
from bitcompose.diffusion import diffusion_loss
from bitcompose.diffusion.samplers import sample
from bitcompose.figures.grids import save_grid
from bitcompose.images.config import TrainConfig
from bitcompose.images.model import (
    DataSpec,
    build_codec,
    build_unet,
    checkpoint_config,
    make_denoiser,
    parse_checkpoint_config,
)
from bitcompose.training.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from bitcompose.training.dist import (
    DistInfo,
    GlobalBatchOrder,
    all_reduce_mean,
    example_seed,
    init_distributed,
    mix_seed,
)
from bitcompose.training.ema import EMA

__all__ = ["Trainer", "TrainResult", "load_training_data", "data_spec_for", "learning_rate", "sample_grid"]

# Settings that may change when a run is resumed (they do not change what is computed).
RESUMABLE_KEYS = ("steps", "log_every", "sample_every", "checkpoint_every", "compile", "device", "precision")


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up to ``optim.lr``, then constant."""
    warm = config.optim.warmup_steps
    return config.optim.lr * (min(1.0, (step + 1) / warm) if warm > 0 else 1.0)


def load_training_data(config: TrainConfig) -> ImageDataset:
    """Load the data set named by ``config.data``."""
    d = config.data
    return load_image_dataset(d.name, root=d.root, path=d.path, levels=d.levels, max_images=d.max_images)


def data_spec_for(config: TrainConfig, dataset: ImageDataset) -> DataSpec:
    """The :class:`DataSpec` of ``dataset`` for ``config``; checks that the data suits the config."""
    c, h, w = dataset.image_shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w} in dataset {dataset.name!r}")
    if config.data.conditional and dataset.labels is None:
        raise ValueError(
            f"dataset {dataset.name!r} has no labels but data.conditional=true "
            "(train an unconditional model with --set data.conditional=false)"
        )
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} is empty")
    classes = dataset.num_classes if config.data.conditional else 0
    return DataSpec(
        channels=c, image_size=h, num_values=dataset.num_values, num_classes=classes, name=dataset.name
    )


@torch.no_grad()
def sample_grid(
    denoiser: torch.nn.Module,
    config: TrainConfig,
    spec: DataSpec,
    generator: torch.Generator,
    *,
    per_class: int = 10,
    unconditional: int = 64,
    progress: bool = False,
) -> tuple[Tensor, Tensor | None, int]:
    """Sample a preview grid: one row per class (first 10 classes) or an 8×8 grid for unconditional models.

    Returns:
        ``(images long [B, C, H, W], labels long [B] or None, images per row)``.
    """
    codec = build_codec(config.model, spec.num_values)
    device = next(denoiser.parameters()).device
    if spec.num_classes > 0:
        classes = min(spec.num_classes, 10)
        labels: Tensor | None = torch.arange(classes, device=device).repeat_interleave(per_class)
        n, nrow = classes * per_class, per_class
    else:
        labels, n, nrow = None, unconditional, 8
    shape = (n, spec.channels * codec.num_bits, spec.image_size, spec.image_size)
    s = config.sample
    bits = sample(
        denoiser,  # type: ignore[arg-type]
        shape,
        steps=s.steps,
        sampler=s.sampler,  # type: ignore[arg-type]
        td=s.td,
        cond=labels,
        guidance=s.guidance if labels is not None else 0.0,
        generator=generator,
        progress=progress,
        ddpm_variance=s.ddpm_variance,  # type: ignore[arg-type]
        device=device,
    )
    return codec.decode_images(bits).cpu(), None if labels is None else labels.cpu(), nrow


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        step: steps done so far. loss: mean loss of the last logging window (nan if none).
        train_seconds: wall time of this call. run_dir: the run folder. checkpoint: the checkpoint folder.
    """

    step: int
    loss: float
    train_seconds: float
    run_dir: Path
    checkpoint: Path


class Trainer:
    """Trains a class-conditional or unconditional image Bit Diffusion model.

    Args:
        config: the run configuration.
        run_dir: output folder (created).
        dataset: the training data (default: loaded from ``config.data``).
        resume: continue from ``run_dir/checkpoint`` when it exists (its config must match ``config`` except
            for :data:`RESUMABLE_KEYS`).
        progress: show a tqdm bar (rank 0 only).
        dist_info: distributed placement (default: from the torchrun environment).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        dataset: ImageDataset | None = None,
        resume: bool = False,
        progress: bool = True,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.info = dist_info if dist_info is not None else init_distributed(config.device)
        self.device = self.info.device
        self.progress = progress and self.info.is_main
        self.dataset = dataset if dataset is not None else load_training_data(config)
        self.spec = data_spec_for(config, self.dataset)
        self.codec = build_codec(config.model, self.spec.num_values)
        self.order = GlobalBatchOrder(
            len(self.dataset), config.batch_size, config.seed, self.info.rank, self.info.world_size
        )
        with torch.random.fork_rng(devices=[]):  # deterministic init without touching the caller's RNG
            torch.manual_seed(mix_seed(config.seed, 2))
            self.net = build_unet(config.model, self.spec, self.codec)
        self.net.to(self.device)
        self.ema = EMA(self.net, config.optim.ema_decay)
        opt_cls = torch.optim.AdamW if config.optim.name == "adamw" else torch.optim.Adam
        o = config.optim
        self.optimizer = opt_cls(
            self.net.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        self.preview_generator = torch.Generator(self.device).manual_seed(mix_seed(config.seed, 3))
        self.step = 0
        ckpt_dir = self.run_dir / "checkpoint"
        if ckpt_dir.exists() and not resume:
            raise ValueError(
                f"{self.run_dir} already holds a checkpoint; pass resume=True (--resume) or another --out"
            )
        if resume and ckpt_dir.exists():
            self._restore(ckpt_dir)
        elif resume and self.info.is_main:
            print(f"bitcompose: no checkpoint in {self.run_dir}; starting a new run", file=sys.stderr)

        net: torch.nn.Module = self.net
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)
        if config.compile:
            net = torch.compile(net)  # type: ignore[assignment]
        self.train_denoiser = make_denoiser(net, config.model)
        self.autocast_bf16 = config.precision == "bf16" or (
            config.precision == "auto" and self.device.type == "cuda"
        )
        self._noise_gen = torch.Generator(self.device)
        self._example_gen = torch.Generator()

    # ------------------------------------------------------------------------------------------- state

    def _restore(self, folder: Path) -> None:
        ckpt = load_checkpoint(folder)
        saved, spec = parse_checkpoint_config(ckpt.config, where=str(folder))
        mine, theirs = self.config.to_dict(), saved.to_dict()
        diffs = _diff_keys(mine, theirs)
        diffs = [k for k in diffs if k not in RESUMABLE_KEYS]
        if diffs:
            raise ValueError(
                f"cannot resume {folder}: the config differs from the checkpoint's in {', '.join(diffs)}"
            )
        if spec != self.spec:
            raise ValueError(
                f"cannot resume {folder}: the data differ from the checkpoint's ({spec} vs {self.spec})"
            )
        load_state_strict(self.net, ckpt.model_state, what=f"model weights of {folder}")
        if ckpt.ema_state is None:
            raise ValueError(f"cannot resume {folder}: ema.safetensors is missing")
        self.ema.load_state_dict(ckpt.ema_state)
        self.ema.to(self.device)
        ts = ckpt.training_state
        try:
            self.optimizer.load_state_dict(ts["optimizer"])
            self.preview_generator.set_state(ts["preview_generator"])
            self.step = int(ts["step"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(f"cannot resume {folder}: bad training_state.pt ({exc})") from exc
        self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop metric lines logged after the checkpoint (they will be logged again)."""
        path = self.run_dir / "metrics.jsonl"
        if not self.info.is_main or not path.exists():
            return
        kept = [
            ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step
        ]
        path.write_text("".join(line + "\n" for line in kept))

    def save(self) -> Path:
        """Write ``run_dir/checkpoint`` (rank 0 only; other ranks return the path)."""
        folder = self.run_dir / "checkpoint"
        if self.info.is_main:
            save_checkpoint(
                folder,
                config=checkpoint_config(self.config, self.spec),
                model_state=self.net.state_dict(),
                ema_state=self.ema.state_dict(),
                training_state={
                    "step": self.step,
                    "optimizer": self.optimizer.state_dict(),
                    "preview_generator": self.preview_generator.get_state(),
                    "world_size": self.info.world_size,
                },
            )
        return folder

    # ------------------------------------------------------------------------------------------- steps

    def make_batch(self, step: int) -> dict[str, Any]:
        """This rank's examples of ``step`` and their random draws (see the module docstring)."""
        cfg = self.config
        idx = self.order.indices(step)
        images = self.dataset.images[idx].clone()
        labels = (
            self.dataset.labels[idx] if cfg.data.conditional and self.dataset.labels is not None else None
        )
        n = len(idx)
        uniforms = torch.empty(n, 3)
        noise = torch.empty(
            (n, self.spec.channels * self.codec.num_bits, self.spec.image_size, self.spec.image_size),
            device=self.device,
        )
        g, gn = self._example_gen, self._noise_gen
        for j, pos in enumerate(self.order.positions(step).tolist()):
            s = example_seed(cfg.seed, step, pos)
            g.manual_seed(s)
            if cfg.data.random_flip:
                images[j : j + 1] = random_flip(images[j : j + 1], g)
            uniforms[j] = torch.rand(3, generator=g)
            gn.manual_seed(mix_seed(s, 1))
            noise[j] = torch.randn(noise.shape[1:], generator=gn, device=self.device)
        uniforms = uniforms.to(self.device)
        drop = uniforms[:, 2] < cfg.cond_drop_prob if labels is not None and cfg.cond_drop_prob > 0 else None
        return {
            "x0": self.codec.encode_images(images.to(self.device)),
            "labels": None if labels is None else labels.to(self.device),
            "t": uniforms[:, 0],
            "self_cond_mask": uniforms[:, 1] < cfg.self_cond_prob,
            "cond_drop_mask": drop,
            "noise": noise,
        }

    def train_step(self) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns ``(loss, grad_norm)`` as device tensors (no host sync)."""
        cfg = self.config
        batch = self.make_batch(self.step)
        lr = learning_rate(cfg, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        ctx = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.autocast_bf16 else nullcontext()
        with ctx:
            out = diffusion_loss(
                self.train_denoiser,
                batch["x0"],
                cond=batch["labels"],
                self_cond_prob=cfg.self_cond_prob,
                cond_drop_prob=cfg.cond_drop_prob if batch["cond_drop_mask"] is not None else 0.0,
                t=batch["t"],
                noise=batch["noise"],
                self_cond_mask=batch["self_cond_mask"],
                cond_drop_mask=batch["cond_drop_mask"],
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        params = [p for p in self.net.parameters() if p.grad is not None]
        if cfg.optim.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))  # type: ignore[union-attr]
        self.optimizer.step()
        self.ema.update(self.net)
        self.step += 1
        return out.loss.detach().float(), grad_norm.detach().float()

    def preview(self) -> Path | None:
        """Sample a grid with the EMA weights into ``samples/step_NNNNNNN.png`` (rank 0)."""
        if not self.info.is_main:
            return None
        den = make_denoiser(self.ema.module, self.config.model)
        images, _, nrow = sample_grid(den, self.config, self.spec, self.preview_generator)
        upscale = max(1, 64 // self.spec.image_size)
        return save_grid(
            images,
            self.run_dir / "samples" / f"step_{self.step:07d}.png",
            nrow,
            self.spec.num_values,
            upscale,
        )

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def train(self, until: int | None = None) -> TrainResult:
        """Train up to step ``until`` (default ``config.steps``), with logging, previews and checkpoints."""
        cfg = self.config
        end = cfg.steps if until is None else min(until, cfg.steps)
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(cfg.to_json() + "\n")
        start_time = time.perf_counter()
        window_loss, window_norm, window_steps, window_start = None, None, 0, time.perf_counter()
        last_loss = math.nan
        bar = tqdm(total=end, initial=self.step, disable=not self.progress, desc="train", dynamic_ncols=True)
        while self.step < end:
            loss, norm = self.train_step()
            window_loss = loss if window_loss is None else window_loss + loss
            window_norm = norm if window_norm is None else window_norm + norm
            window_steps += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == end:
                assert window_loss is not None and window_norm is not None
                mean_loss = float(all_reduce_mean(window_loss / window_steps, self.info))
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": self.step,
                    "loss": mean_loss,
                    "grad_norm": float(window_norm / window_steps),
                    "lr": learning_rate(cfg, self.step - 1),
                    "images_per_s": window_steps * cfg.batch_size / max(elapsed, 1e-9),
                    "elapsed_s": time.perf_counter() - start_time,
                }
                last_loss = mean_loss
                if self.info.is_main:
                    self._log(record)
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{record['images_per_s']:.0f}")
                window_loss, window_norm, window_steps, window_start = None, None, 0, time.perf_counter()
            if cfg.sample_every and self.step % cfg.sample_every == 0 and self.step < end:
                self.preview()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < end:
                self.save()
        bar.close()
        train_seconds = time.perf_counter() - start_time
        if cfg.sample_every and self.step == cfg.steps:
            self.preview()
        folder = self.save()
        if self.info.distributed:
            torch.distributed.barrier()
        return TrainResult(self.step, last_loss, train_seconds, self.run_dir, folder)


def _diff_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(_diff_keys(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out.append(prefix + key)
    return out
