"""Tiny fabricated data and config shared by the training tests (not a test module)."""

from __future__ import annotations

import torch

from bitcompose.data.images import ImageDataset
from bitcompose.images.config import DataConfig, ModelConfig, OptimConfig, SampleConfig, TrainConfig

#: ``--set`` overrides that make a CLI training run tiny (the model's resolutions left to the data fitting).
TINY_SETS = [
    "model.base_channels=8",
    "model.num_res_blocks=1",
    "model.num_groups=4",
    "model.per_head_dim=8",
    "batch_size=8",
    "data.levels=4",
    "sample.steps=2",
    "sample.num_eval=12",
    "checkpoint_every=0",
    "log_every=1",
]


def cli_sets(items: list[str]) -> list[str]:
    """``["--set", item, ...]`` for the command line."""
    return [arg for item in items for arg in ("--set", item)]


def tiny_dataset(n: int = 24, num_values: int = 4, num_classes: int = 3, size: int = 4) -> ImageDataset:
    g = torch.Generator().manual_seed(123)
    images = torch.randint(0, num_values, (n, 1, size, size), generator=g)
    labels = torch.arange(n) % num_classes
    return ImageDataset(
        images=images, labels=labels, num_values=num_values, num_classes=num_classes, name="tiny"
    )


def tiny_config(**kw: object) -> TrainConfig:
    base = dict(
        preset="tiny",
        seed=7,
        steps=6,
        batch_size=8,
        log_every=2,
        checkpoint_every=0,
        sample_every=0,
        cond_drop_prob=0.25,
        data=DataConfig(name="tiny", conditional=True, random_flip=True),
        model=ModelConfig(
            base_channels=8,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(2,),
            num_groups=4,
            per_head_dim=8,
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=3, ema_decay=0.9),
        sample=SampleConfig(steps=3, num_eval=20),
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]
