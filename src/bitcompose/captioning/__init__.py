"""Image captioning with Bit Diffusion (paper §3.1, Tables 3–4) and an autoregressive baseline of the same size."""

from __future__ import annotations

from bitcompose.captioning.config import PRESETS, CaptionRunConfig, preset
from bitcompose.captioning.model import Captioner, load_captioner
from bitcompose.captioning.train import train_captioner, train_or_load

__all__ = [
    "PRESETS",
    "CaptionRunConfig",
    "Captioner",
    "load_captioner",
    "preset",
    "train_captioner",
    "train_or_load",
]
