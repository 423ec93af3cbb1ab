"""Training: EMA, atomic checkpoints, configs, the trainer and distributed helpers."""

from __future__ import annotations

from bitcompose.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bitcompose.train.ema import EMA

__all__ = ["EMA", "Checkpoint", "load_checkpoint", "save_checkpoint"]
