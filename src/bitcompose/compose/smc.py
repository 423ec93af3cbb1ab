"""Importance weights and resampling along an annealing path (annealed importance sampling / SMC).

Moving particles ``x ~ π_{t+1}`` to the next level ``π_t ∝ exp(−E(·, t))`` without changing them earns the
incremental weight ``log w += E(x, t+1) − E(x, t)`` (Neal 2001, "Annealed importance sampling"). Resampling the particles by these
weights whenever the effective sample size drops corrects the share of each mode between levels, which MCMC at
one level cannot do once the modes are separated by high barriers. Needs energies (up to a per-level constant,
which cancels in the normalised weights).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["effective_sample_size", "systematic_resample"]


def effective_sample_size(log_weights: Tensor) -> float:
    """``(Σ w)² / Σ w²`` of unnormalised log-weights ``[B]`` (``B`` for equal weights, 1 for a single particle)."""
    w = torch.softmax(log_weights.double(), dim=0)
    return float(1.0 / (w * w).sum())


def systematic_resample(log_weights: Tensor, generator: torch.Generator) -> Tensor:
    """Indices ``LongTensor [B]`` drawn by systematic resampling from the normalised weights of ``log_weights``.

    One uniform offset ``u ~ U[0, 1/B)`` and the points ``u + k/B``; particle ``i`` is copied about ``B·w_i`` times
    (between ``⌊B·w_i⌋`` and ``⌈B·w_i⌉``). Non-finite log-weights get weight 0; at least one must be finite.
    """
    lw = log_weights.detach().double().cpu()
    if lw.ndim != 1 or lw.numel() == 0:
        raise ValueError(f"log_weights must have shape [B] with B >= 1, got {tuple(lw.shape)}")
    lw = torch.where(torch.isnan(lw), torch.full_like(lw, -torch.inf), lw)
    if not bool(torch.isfinite(lw).any()):
        raise ValueError("systematic_resample: every log-weight is -inf or NaN")
    b = lw.numel()
    cdf = torch.cumsum(torch.softmax(lw, dim=0), dim=0)
    cdf[-1] = 1.0
    u = (
        torch.rand((), generator=generator, device=generator.device, dtype=torch.float64).cpu()
        + torch.arange(b)
    ) / b
    return torch.searchsorted(cdf, u, right=True).clamp_max(b - 1).to(log_weights.device)
