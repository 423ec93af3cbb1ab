"""Small tensor helpers shared by every layer."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["append_dims", "batch_where", "sum_except_batch", "all_finite", "randn_like_from"]


def append_dims(v: Tensor, x: Tensor) -> Tensor:
    """A per-sample tensor ``[B]`` reshaped to ``[B, 1, …, 1]`` and cast to ``x``'s device and dtype, so it
    broadcasts against ``x`` ``[B, *dims]``."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def batch_where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per-sample select: ``a[i]`` where ``mask[i]`` else ``b[i]``; ``mask`` bool ``[B]``, ``a``/``b`` ``[B, ...]``."""
    return torch.where(mask.reshape(-1, *([1] * (a.ndim - 1))), a, b)


def sum_except_batch(v: Tensor) -> Tensor:
    """Sum over all non-batch dims: ``[B, *dims] -> [B]``."""
    return v.flatten(1).sum(1)


def all_finite(v: Tensor) -> Tensor:
    """bool ``[B]``: every entry of each sample of ``v`` ``[B, ...]`` (or each entry of ``v`` ``[B]``) is finite."""
    return torch.isfinite(v).flatten(1).all(1) if v.ndim > 1 else torch.isfinite(v)


def randn_like_from(x: Tensor, generator: torch.Generator) -> Tensor:
    """``N(0, I)`` shaped like ``x`` (its dtype), drawn on the generator's device and moved to ``x``'s."""
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
