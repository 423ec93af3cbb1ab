"""The residual MLP of the 2-D composition experiments (Du et al. 2023, notebook ``ResnetDiffusionModel``).

Architecture (``n_layers=4, h_dim=128, emb_dim=32, widen=2, emb_type='learned'`` in the notebook)::

    h = Linear(dim → 128)(x)
    e = Embedding(T, 32)(t)                       # learned time embedding
    4 × { z = Linear(128 → 256)(swish(LayerNorm(h))) + Linear(32 → 256)(e)
          z = Linear(256 → 256)(swish(z))
          h = h + Linear(256 → 128, zero-init)(swish(z)) }
    out = Linear(128 → dim, zero-init)(h)

Dense layers use the Haiku default initialisation (truncated normal with std ``1/√fan_in`` cut at two standard
deviations, zero biases), the embedding a truncated standard normal; the residual outputs and the final layer start
at zero, so the untrained network outputs exactly zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.core.config import Config

__all__ = ["ResidualMLP", "ResidualMLPConfig"]


@dataclass(frozen=True)
class ResidualMLPConfig(Config):
    """Hyper-parameters of :class:`ResidualMLP` (defaults: the notebook's 2-D model)."""

    dim: int = 2
    hidden: int = 128
    widen: int = 2
    num_blocks: int = 4
    emb_dim: int = 32
    num_steps: int = 100

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "widen", "num_blocks", "emb_dim", "num_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ResidualMLPConfig.{name} must be >= 1, got {getattr(self, name)}")


def _trunc_normal_(w: Tensor, std: float, generator: torch.Generator | None) -> None:
    nn.init.trunc_normal_(w, mean=0.0, std=std, a=-2 * std, b=2 * std, generator=generator)


class _Block(nn.Module):
    def __init__(self, hidden: int, inner: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc_in = nn.Linear(hidden, inner)
        self.fc_emb = nn.Linear(emb_dim, inner)
        self.fc_mid = nn.Linear(inner, inner)
        self.fc_out = nn.Linear(inner, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        z = self.fc_in(F.silu(self.norm(h))) + self.fc_emb(emb)
        z = self.fc_mid(F.silu(z))
        return h + self.fc_out(F.silu(z))


class ResidualMLP(nn.Module):
    """ε-network for 2-D (or ``dim``-D) points: ``net(x [B, dim], t long [B]) -> [B, dim]``.

    Args:
        config: architecture (defaults to the notebook's).
        generator: random generator for the initialisation (``None``: torch's default generator).
    """

    def __init__(
        self, config: ResidualMLPConfig | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.config = cfg = config or ResidualMLPConfig()
        inner = cfg.hidden * cfg.widen
        self.embed = nn.Embedding(cfg.num_steps, cfg.emb_dim)
        self.fc_in = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(_Block(cfg.hidden, inner, cfg.emb_dim) for _ in range(cfg.num_blocks))
        self.fc_out = nn.Linear(cfg.hidden, cfg.dim)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every weight (Haiku-style; zero residual outputs and zero final layer)."""
        _trunc_normal_(self.embed.weight, 1.0, generator)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _trunc_normal_(m.weight, 1.0 / math.sqrt(m.in_features), generator)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for block in self.blocks:
            assert isinstance(block, _Block)
            nn.init.zeros_(block.fc_out.weight)
        nn.init.zeros_(self.fc_out.weight)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """``x``: float ``[B, dim]``; ``t``: integer steps ``[B]`` in ``[0, num_steps)``; returns ``[B, dim]``."""
        if x.dim() != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"ResidualMLP expects x of shape [B, {self.config.dim}], got {tuple(x.shape)}")
        if t.dim() != 1 or t.shape[0] != x.shape[0] or t.is_floating_point():
            raise ValueError(f"ResidualMLP expects integer t of shape [{x.shape[0]}], got {tuple(t.shape)}")
        emb = self.embed(t)
        h = self.fc_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.fc_out(h)
