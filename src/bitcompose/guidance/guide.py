"""The guide: a noise-conditioned classifier ``p_φ(y | x_t, t)`` on the analog bits of the guidance data.

It learns from ``x_t = √γ(t)·x0 + √(1−γ(t))·ε`` with ``t ~ U(0, 1)`` on the paper's cosine γ, where ``x0`` are the
analog bits of the train split in the diffusion models' encoding (so it sees exactly what the samplers hand it),
with cross-entropy on the true label; trained with the shared trainer, deterministic from its seed, kept in the harness's model cache (kind ``guides``) with its held-out accuracy at each noise level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.core.bits import BitCodec
from bitcompose.core.schedules import CosineSchedule
from bitcompose.core.tensors import append_dims
from bitcompose.experiments.cache import NETWORK, cached
from bitcompose.guidance.data import splits
from bitcompose.guidance.models import guidance_config
from bitcompose.images.model import build_codec
from bitcompose.nets.noisy_classifier import (
    NOISY_ARCHITECTURE,
    NoisyClassifier,
    NoisyClassifierConfig,
    build_noisy_classifier,
)
from bitcompose.training.loop import Trainer
from bitcompose.training.optim import OptimConfig

__all__ = ["GUIDE_STEPS", "NOISE_TIMES", "accuracy_by_time", "guide_codec", "load_or_train_guide", "noised"]

#: Training steps (batches of 128) of the guide.
GUIDE_STEPS = 3000
#: Times at which the held-out accuracy is reported.
NOISE_TIMES = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def guide_codec(dataset: str) -> BitCodec:
    """The analog-bit codec of the experiment's diffusion models for ``dataset``."""
    return build_codec(guidance_config(dataset, "score").model, splits(dataset)[0].num_values)


def noised(x0: Tensor, t: Tensor, generator: torch.Generator) -> Tensor:
    """``√γ(t)·x0 + √(1−γ(t))·ε`` on the paper's cosine γ, ``x0`` ``[B, ...]``, ``t`` ``[B]``."""
    schedule = CosineSchedule()
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    return append_dims(schedule.alpha(t), x0) * x0 + append_dims(schedule.sigma(t), x0) * eps


class GuideTask:
    """Cross-entropy of the guide on noised analog bits of random batches (the trainer's task).

    Args:
        model: the guide.
        bits: ``[N, C·bits, H, W]`` analog bits of the train split.
        labels: ``long [N]``.
        batch_size: examples per step.
        generator: the source of batches, times and noise (its state is resumable).
    """

    def __init__(
        self,
        model: NoisyClassifier,
        bits: Tensor,
        labels: Tensor,
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        self.module: nn.Module = model
        self.bits, self.labels = bits, labels
        self.batch_size, self.generator = batch_size, generator

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """Cross-entropy of one batch at random times."""
        idx = torch.randint(len(self.bits), (self.batch_size,), generator=self.generator)
        t = torch.rand(self.batch_size, generator=self.generator)
        return F.cross_entropy(net(noised(self.bits[idx], t, self.generator), t), self.labels[idx])

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])


@torch.no_grad()
def accuracy_by_time(
    guide: NoisyClassifier,
    bits: Tensor,
    labels: Tensor,
    times: tuple[float, ...] = NOISE_TIMES,
    seed: int = 0,
) -> dict[str, float]:
    """The guide's accuracy on ``bits`` ``[N, C·bits, H, W]`` noised at each of ``times`` (keys ``"t=0.5"``)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for time in times:
        t = torch.full((len(bits),), float(time))
        pred = guide(noised(bits, t, gen), t).argmax(1)
        out[f"t={time:g}"] = float((pred == labels).double().mean())
    return out


def load_or_train_guide(
    dataset: str,
    *,
    steps: int | None = None,
    seed: int = 0,
    cache: str | Path | None = None,
    progress: bool = True,
) -> NoisyClassifier:
    """The guide of ``dataset`` from the cache, or trained there first (Adam, lr 2e-3 decaying linearly) for
    ``steps`` steps (default :data:`GUIDE_STEPS`).

    Returns:
        The guide in eval mode with its parameters frozen; ``info`` holds ``steps``, ``train_seconds``,
        ``accuracy_by_time`` (held-out), ``path``.
    """
    steps = GUIDE_STEPS if steps is None else steps
    train_split, held_out = splits(dataset)
    assert train_split.labels is not None and held_out.labels is not None
    codec = guide_codec(dataset)

    def train(folder: Path) -> dict[str, Any]:
        assert train_split.labels is not None and held_out.labels is not None
        c, h, w = train_split.image_shape
        guide = build_noisy_classifier(
            NoisyClassifierConfig(c * codec.num_bits, h, w, train_split.num_classes)
        )
        gen = torch.Generator().manual_seed(seed)
        guide.reset_parameters(gen)
        optim = OptimConfig(name="adam", lr=2e-3, schedule="linear", grad_clip=1.0, ema_decay=None)
        task = GuideTask(guide, codec.encode_images(train_split.images), train_split.labels, 128, gen)
        result = Trainer(
            task, optim, steps=steps, log_every=1, progress=progress, desc=f"guide {dataset}"
        ).train()
        guide.eval()
        guide.info = {
            "dataset": train_split.name,
            "steps": steps,
            "seed": seed,
            "final_loss": result.loss,
            "train_seconds": result.train_seconds,
            "accuracy_by_time": accuracy_by_time(
                guide, codec.encode_images(held_out.images), held_out.labels
            ),
            "num_train": len(train_split),
            "num_held_out": len(held_out),
        }
        guide.save(folder / NETWORK)
        return guide.info

    spec = {
        "architecture": NOISY_ARCHITECTURE,
        "codec": [codec.encoding, codec.scale],
        "steps": steps,
        "seed": seed,
    }
    entry = cached("guides", train_split.name, spec, train, data=train_split.fingerprint(), cache=cache)
    return NoisyClassifier.load(entry.path / NETWORK).requires_grad_(False).eval()
