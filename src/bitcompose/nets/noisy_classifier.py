"""A noise-conditioned classifier ``p_φ(y | x_t, t)`` on analog bits: the guide of classifier guidance.

The same four-block CNN as the evaluation classifier (:class:`~bitcompose.nets.classifier.ImageClassifier`), but
its input is the noised analog bits ``x_t`` (float ``[B, C·bits, H, W]``) and each block is modulated by the time:
a sinusoidal embedding of ``1000·t`` through a two-layer MLP gives every block a FiLM ``(1 + scale)·h + shift``
after its GroupNorm (as the U-Net's residual blocks do with the noise level).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.core.config import Config
from bitcompose.nets.classifier import read_network, save_network, uniform_init_
from bitcompose.nets.embeddings import sinusoidal_embedding

__all__ = ["NOISY_ARCHITECTURE", "NoisyClassifierConfig", "NoisyClassifier", "build_noisy_classifier"]

NOISY_ARCHITECTURE = "noisy-cnn-v1"
_FORMAT = "bitcompose-noisy-classifier"


@dataclass(frozen=True)
class NoisyClassifierConfig(Config):
    """Shape of the noise-conditioned classifier.

    Attributes:
        in_channels: analog-bit channels (image channels × bits per value).
        height, width: image size.
        num_classes: output classes.
        channels: width of the first block (later blocks 2× and 4×).
        time_dim: width of the time embedding.
        feature_dim: size of the penultimate features.
    """

    in_channels: int
    height: int
    width: int
    num_classes: int
    channels: int = 32
    time_dim: int = 128
    feature_dim: int = 128

    def __post_init__(self) -> None:
        fields = (
            self.in_channels,
            self.height,
            self.width,
            self.num_classes,
            self.channels,
            self.feature_dim,
        )
        if min(fields) < 1 or self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"NoisyClassifierConfig fields must be positive (time_dim even): {self}")


class _TimeBlock(nn.Module):
    """conv3×3 → GroupNorm → FiLM(time) → SiLU."""

    def __init__(self, cin: int, cout: int, stride: int, time_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1)
        self.norm = nn.GroupNorm(min(8, cout), cout)
        self.film = nn.Linear(time_dim, 2 * cout)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        return F.silu(self.norm(self.conv(h)) * (1 + scale) + shift)


class NoisyClassifier(nn.Module):
    """Logits ``[B, num_classes]`` of noised analog bits ``x_t`` ``[B, C·bits, H, W]`` at times ``t`` ``[B]``.

    Attributes:
        config: the :class:`NoisyClassifierConfig`.
        info: how it was trained (data set, steps, accuracy per noise level, ...).
    """

    def __init__(self, config: NoisyClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.info: dict[str, Any] = {}
        c, d = config.channels, config.time_dim
        stem_stride = 2 if min(config.height, config.width) >= 24 else 1
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            [
                _TimeBlock(config.in_channels, c, stem_stride, d),
                _TimeBlock(c, 2 * c, 2, d),
                _TimeBlock(2 * c, 4 * c, 2, d),
                _TimeBlock(4 * c, 4 * c, 1, d),
            ]
        )
        self.fc = nn.Linear(4 * c, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise from ``generator``: uniform ±1/√fan_in; norms to 1/0; FiLM layers to zero (identity)."""
        uniform_init_(self, generator)
        with torch.no_grad():
            for block in self.blocks:
                assert isinstance(block, _TimeBlock)
                block.film.weight.zero_()
                block.film.bias.zero_()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of ``x`` ``[B, C·bits, H, W]`` (float) at times ``t`` ``[B]`` in ``[0, 1]``."""
        cfg = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.in_channels, cfg.height, cfg.width):
            raise ValueError(
                f"noisy classifier expects x [B, {cfg.in_channels}, {cfg.height}, {cfg.width}], got {tuple(x.shape)}"
            )
        if not x.dtype.is_floating_point:
            raise ValueError(f"noisy classifier expects float analog bits, got {x.dtype}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"noisy classifier expects times [B] = [{x.shape[0]}], got {tuple(t.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(1000.0 * t, cfg.time_dim).to(x.dtype))
        h = x
        for block in self.blocks:
            h = block(h, emb)
        return self.head(F.silu(self.fc(h.mean(dim=(2, 3)))))

    def save(self, path: str | Path) -> None:
        """Write the folder ``path`` (``config.json``, ``model.safetensors``) atomically."""
        save_network(self, path, _FORMAT, NOISY_ARCHITECTURE, self.config.to_dict(), self.info)

    @classmethod
    def load(cls, path: str | Path) -> NoisyClassifier:
        """Load what :meth:`save` wrote (its folder)."""
        meta, weights = read_network(path, _FORMAT, NOISY_ARCHITECTURE)
        model = build_noisy_classifier(NoisyClassifierConfig.from_dict(meta["config"]))
        model.load_state_dict(weights)
        model.info = dict(meta.get("info", {}), path=str(path))
        return model.eval()


def build_noisy_classifier(config: NoisyClassifierConfig) -> NoisyClassifier:
    """Construct on the meta device (no global RNG use), then allocate; call ``reset_parameters`` or load."""
    with torch.device("meta"):
        model = NoisyClassifier(config)
    return model.to_empty(device="cpu")
