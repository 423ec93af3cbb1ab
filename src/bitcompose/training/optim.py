"""Optimiser, learning-rate schedule and EMA settings shared by every training run."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from bitcompose.core.config import Config, check

__all__ = [
    "OptimConfig",
    "adamw_recipe",
    "LR_SCHEDULES",
    "learning_rate",
    "ema_decay",
    "ema_initial_share",
    "build_optimizer",
]

LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass(frozen=True)
class OptimConfig(Config):
    """Optimiser, learning-rate schedule, gradient clipping and EMA.

    Attributes:
        name: ``adam`` or ``adamw``.
        lr: the peak learning rate.
        betas: Adam betas.
        eps: Adam epsilon.
        weight_decay: weight decay (the paper: 0).
        warmup_steps: linear warm-up from 0 to ``lr`` over this many steps (0: none).
        schedule: after warm-up: ``constant``; ``cosine`` decay to ``final_lr_fraction·lr`` at the last step;
            ``linear`` decay to 0 at the last step.
        final_lr_fraction: the floor of the cosine decay, as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this value (0: no clipping).
        ema_decay: EMA decay of the weights used for sampling, in [0, 1); ``None``: no EMA.
        ema_warmup: use ``min(ema_decay, (1 + n)/(10 + n))`` at step n, so a short run is not an average
            dominated by its first weights.
    """

    name: str = "adamw"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float | None = 0.9999
    ema_warmup: bool = False

    def __post_init__(self) -> None:
        check(self.name in ("adam", "adamw"), f"optim.name must be 'adam' or 'adamw', got {self.name!r}")
        check(math.isfinite(self.lr) and self.lr > 0, f"optim.lr must be finite and > 0, got {self.lr}")
        check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas must be two in [0,1)"
        )
        check(math.isfinite(self.eps) and self.eps > 0, f"optim.eps must be finite and > 0, got {self.eps}")
        check(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "optim.weight_decay must be finite and >= 0",
        )
        check(self.warmup_steps >= 0, "optim.warmup_steps must be >= 0")
        check(
            self.schedule in LR_SCHEDULES,
            f"optim.schedule must be one of {LR_SCHEDULES}, got {self.schedule!r}",
        )
        check(0 <= self.final_lr_fraction <= 1, "optim.final_lr_fraction must lie in [0, 1]")
        check(
            math.isfinite(self.grad_clip) and self.grad_clip >= 0,
            "optim.grad_clip must be finite and >= 0 (0 disables clipping)",
        )
        check(
            self.ema_decay is None or 0 <= self.ema_decay < 1,
            f"optim.ema_decay must lie in [0, 1) (or be none), got {self.ema_decay}",
        )


def learning_rate(config: OptimConfig, step: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of a run of ``total_steps`` steps."""
    warm = config.warmup_steps
    if warm > 0 and step < warm:
        return config.lr * min(1.0, (step + 1) / warm)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "linear":
        return config.lr * (1.0 - step / total_steps)
    progress = (step - warm) / max(1, total_steps - warm)
    floor = config.final_lr_fraction
    return config.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def ema_decay(config: OptimConfig, step: int) -> float:
    """The EMA decay used after optimiser step ``step`` (0-based); needs ``config.ema_decay``."""
    assert config.ema_decay is not None
    if config.ema_warmup:
        return min(config.ema_decay, (1.0 + step) / (10.0 + step))
    return config.ema_decay


def ema_initial_share(config: OptimConfig, steps: int) -> float:
    """The share of the initial weights still in the EMA after ``steps`` updates, ``Π_n d_n`` (0 without an
    EMA: there is nothing to forget)."""
    if config.ema_decay is None or config.ema_decay <= 0:
        return 0.0
    return math.exp(sum(math.log(ema_decay(config, n)) for n in range(steps)))


def build_optimizer(config: OptimConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The configured Adam or AdamW over ``params``."""
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


def adamw_recipe(run: Any) -> OptimConfig:
    """The Transformer runs' optimiser (captioning, sequences): AdamW (β = 0.9, 0.99), linear warm-up, then constant
    or cosine decay to 10 %, gradient clipping at 1, EMA with warm-up — from a run config's ``lr``,
    ``weight_decay``, ``warmup``, ``lr_schedule`` and ``ema_decay``."""
    return OptimConfig(
        name="adamw",
        lr=run.lr,
        betas=(0.9, 0.99),
        weight_decay=run.weight_decay,
        warmup_steps=run.warmup,
        schedule=run.lr_schedule,
        final_lr_fraction=0.1,
        grad_clip=1.0,
        ema_decay=run.ema_decay,
        ema_warmup=True,
    )
