"""Noise-level and class embeddings for the paper-style U-Net.

The official Bit Diffusion network (pix2seq ``architectures/transunet.py``, ``ScalarEmbedding``) is
conditioned on the noise level γ(t), not on t: a sinusoidal encoding of ``γ·time_scaling`` goes through
``Dense(4·dim) + SiLU → Dense(4·dim) + SiLU``. A class label there is a one-hot vector concatenated to the
hidden vector *after* the first dense layer. Concatenating a one-hot vector before a dense layer equals adding
one learned row per class to that layer's input, so :class:`NoiseLevelEmbedding` adds a learned class
embedding between the two dense layers; it has one extra "null" row (the last one) for "no label", used for
label dropout and classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["NoiseLevelEmbedding", "sinusoidal_embedding"]


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style sinusoidal features of a scalar per example.

    Args:
        x: float tensor ``[B]`` (e.g. ``γ·1000``).
        dim: output width (even, >= 2).
        max_period: longest wavelength.

    Returns:
        Float tensor ``[B, dim]``: ``[sin(x·f_0), …, sin(x·f_{h-1}), cos(x·f_0), …, cos(x·f_{h-1})]`` with
        ``h = dim/2`` and ``f_i = max_period^(−i/h)``.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"sinusoidal_embedding needs an even dim >= 2, got {dim}")
    if x.dim() != 1:
        raise ValueError(f"sinusoidal_embedding expects a 1-D tensor [B], got shape {tuple(x.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class NoiseLevelEmbedding(nn.Module):
    """Embedding of the noise level γ (and optionally a class label) shared by all residual blocks.

    Args:
        dim: sinusoidal width (the U-Net's base channel count); the output width is ``4·dim``.
        num_classes: number of classes (0 = unconditional, no class table).
        time_scaling: γ is multiplied by this before the sinusoidal encoding (official value 1000).
    """

    def __init__(self, dim: int, num_classes: int = 0, time_scaling: float = 1000.0) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = 4 * dim
        self.num_classes = num_classes
        self.time_scaling = time_scaling
        self.linear1 = nn.Linear(dim, self.out_dim)
        self.linear2 = nn.Linear(self.out_dim, self.out_dim)
        self.act = nn.SiLU()
        # Rows 0..num_classes-1 are the classes; row num_classes is the null class.
        self.class_embedding: nn.Embedding | None = (
            nn.Embedding(num_classes + 1, self.out_dim) if num_classes > 0 else None
        )

    def class_rows(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        """Map labels to rows of the class table (``-1`` → null row); validates them.

        Args:
            cond: integer tensor ``[B]`` of labels in ``{-1, 0, …, num_classes−1}``, or None (all null).
            batch: the batch size B.
            device: device of the result.

        Returns:
            Long tensor ``[B]`` of row indices, or None for an unconditional embedding.
        """
        if self.num_classes == 0:
            if cond is not None:
                raise ValueError("this U-Net is unconditional (num_classes=0) but class labels were given")
            return None
        if cond is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if cond.dtype.is_floating_point or cond.dtype.is_complex or cond.dtype == torch.bool:
            raise ValueError(f"class labels must be an integer tensor, got dtype {cond.dtype}")
        if cond.shape != (batch,):
            raise ValueError(f"class labels must have shape [B]=[{batch}], got {tuple(cond.shape)}")
        # The range check reads the labels on the host: skipped inside torch.compile (a graph break) and on
        # accelerators (a device sync every forward); there an out-of-range label fails in the embedding lookup.
        if cond.numel() > 0 and cond.device.type == "cpu" and not torch.compiler.is_compiling():
            low, high = int(cond.min()), int(cond.max())
            if low < -1 or high >= self.num_classes:
                raise ValueError(
                    f"class labels must lie in [-1, {self.num_classes - 1}] (-1 = no label), "
                    f"got values in [{low}, {high}]"
                )
        cond = cond.to(device=device, dtype=torch.long)
        return torch.where(cond < 0, torch.full_like(cond, self.num_classes), cond)

    def forward(self, gamma: Tensor, cond: Tensor | None = None) -> Tensor:
        """Embed γ (and labels).

        Args:
            gamma: float tensor ``[B]`` of noise levels γ(t) in [0, 1].
            cond: integer labels ``[B]`` (``-1`` = null class) or None.

        Returns:
            Float tensor ``[B, 4·dim]``.
        """
        h = sinusoidal_embedding(gamma * self.time_scaling, self.dim).to(self.linear1.weight.dtype)
        h = self.act(self.linear1(h))
        rows = self.class_rows(cond, gamma.shape[0], gamma.device)
        if rows is not None and self.class_embedding is not None:
            h = h + self.class_embedding(rows)
        return self.act(self.linear2(h))
