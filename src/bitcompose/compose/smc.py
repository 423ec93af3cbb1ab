"""Importance weights and resampling along an annealing path (annealed importance sampling / SMC).

Moving particles ``x ~ π_{t+1}`` to the next level ``π_t ∝ exp(−E(·, t))`` without changing them earns the
incremental weight ``log w += E(x, t+1) − E(x, t)`` (Neal 2001, "Annealed importance sampling"). Resampling the particles by these
weights whenever the effective sample size drops corrects the share of each mode between levels, which MCMC at
one level cannot do once the modes are separated by high barriers. Needs energies (up to a per-level constant,
which cancels in the normalised weights).

When the batch holds particles of several targets (a condition bound to each slot: a class label, a set of
requested objects), weights under different targets are not comparable and a particle must never move into a slot
that asks for another target: :func:`resample_within_groups` checks the ESS and resamples within each group of
slots that share a target.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["effective_sample_size", "systematic_resample", "resample_within_groups", "check_groups"]


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


_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_groups(groups: object, batch: int) -> Tensor:
    """``groups`` if it is an integer tensor of shape ``[batch]``, else a one-line ``ValueError``."""
    if not isinstance(groups, Tensor):
        raise ValueError(f"resample_groups must be an integer tensor [B], got {type(groups).__name__}")
    if groups.dtype not in _INTEGER_DTYPES:
        raise ValueError(f"resample_groups must have an integer dtype, got {groups.dtype}")
    if tuple(groups.shape) != (batch,):
        raise ValueError(
            f"resample_groups must have shape [{batch}] (one group per sample), got {tuple(groups.shape)}"
        )
    return groups


def resample_within_groups(
    log_weights: Tensor,
    groups: Tensor,
    generator: torch.Generator,
    *,
    ess_fraction: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Systematic resampling done separately within each group of slots; a particle only replaces one of its group.

    Each group's weights are normalised within the group. With ``ess_fraction`` a group is resampled only when its
    effective sample size is below ``ess_fraction·n_g`` (``n_g`` its size); with ``None``, every group whose
    log-weights are not all 0 (the driver's final resampling: a group just resampled has zero log-weights). A group
    of one is left as it is. Groups are visited in increasing order of their value, one uniform draw from
    ``generator`` each (so one group over the whole batch draws what :func:`systematic_resample` draws).

    Args:
        log_weights: unnormalised log-weights ``[B]``.
        groups: integer group of each slot ``[B]`` (any values; equal values share a target).
        generator: source of the offsets.
        ess_fraction: ``None`` or the ESS threshold as a fraction of the group's size, in ``(0, 1]``.

    Returns:
        ``(indices LongTensor [B], resampled BoolTensor [B])``: slot ``i`` takes the particle ``indices[i]`` (a
        member of ``i``'s group; ``i`` itself where its group was not resampled), and ``resampled[i]`` says whether
        ``i``'s group was resampled (those slots' log-weights should be reset to 0).
    """
    b = log_weights.shape[0] if log_weights.ndim == 1 else -1
    if b < 1:
        raise ValueError(f"log_weights must have shape [B] with B >= 1, got {tuple(log_weights.shape)}")
    groups = check_groups(groups, b).to(log_weights.device)
    if ess_fraction is not None and not 0 < ess_fraction <= 1:
        raise ValueError(f"ess_fraction must lie in (0, 1], got {ess_fraction}")
    idx = torch.arange(b, device=log_weights.device)
    done = torch.zeros(b, dtype=torch.bool, device=log_weights.device)
    for g in torch.unique(groups).tolist():
        members = torch.nonzero(groups == g).flatten()
        if members.numel() < 2:
            continue
        lw = log_weights[members]
        if ess_fraction is None:
            if not bool((lw != 0).any()):
                continue
        elif effective_sample_size(lw) >= ess_fraction * members.numel():
            continue
        idx[members] = members[systematic_resample(lw, generator)]
        done[members] = True
    return idx, done
