"""A variational bound on −log p(x) for discrete data: :func:`nll_bound` (nats per sample).

For an x0 denoiser over analog bits (or continuous pixels) on the cosine schedule, the continuous-time bound of
Kingma et al. (2021, "Variational Diffusion Models", Eq. 17) in log-SNR ``λ = log(α²/σ²)``:

    −log p(x) ≤ KL(q(z_{λ₀} | x) ‖ N(0, I))                       (prior, at t = 1)
              + ½ ∫_{λ₀}^{λ₁} e^λ · E_ε ‖x − x̂(z_λ, λ)‖² dλ       (diffusion)
              + E_{z_{λ₁}} [ −log p(x | z_{λ₁}) ]                  (decoder)

with ``z_λ = α x + σ ε``. The decoder is the factorised lattice posterior ``p(x_d = v | z_d) ∝ exp(−(z_d − α v)²
/ (2σ²))`` over the values ``v`` an analog channel takes (``±b`` for bits, the ``K`` levels of a continuous
pixel). The bound holds for any function ``x̂(z, λ)``: a self-conditioned model is evaluated with its own
estimate from a first pass at the same ``z`` (two passes), an energy model through its gradient, and the estimate
is clipped to the lattice's range (a projection onto a convex set holding ``x``, which never increases the error).

The upper end ``λ₁`` defaults to where the lattice is resolved: ``α·h/σ = 6`` for ``h`` half the lattice's
smallest gap (``λ₁ = 2·log(6/h)``, capped at the schedule's ``λ(0)``); there the factorised decoder costs
< 1e-8 nats per channel, and beyond it the exact denoiser has nothing left to learn while a trained one's residual
error would only loosen the bound (``e^λ`` reaches 9·10⁶ at ``λ(0)``). The bound is then that of the model run
from t = 1 down to ``t(λ₁)`` and decoded there; ``log_snr_max`` sets another end.

By the I-MMSE relation (Guo, Shamai & Verdú 2005) the bound equals the entropy for the exact denoiser, up to the
end-point terms: fair bits give 1 bit per bit, bits that are +b with probability 0.9 give 0.469 bits.

Estimator: ``draws`` values of λ per sample from the proposal ``q(λ) ∝ v·e^λ / (1 + v·e^λ)`` on ``[λ₀, λ₁]``
(the shape of ``e^λ·mmse(λ)`` for data of variance ``v = b²``, so the importance weights are flat where the data
look Gaussian and fall where the lattice is resolved), stratified across the draws, inverted in closed form.

The absorbing-state model (:class:`~bitcompose.diffusion.masked.MaskedDenoiser`) gets its own ELBO in the same
units (:func:`masked_nll_bound`), written without the ``1/t`` weight: conditioning on the number ``n`` of masked
symbols (uniform on ``1..N``) turns ``E_t[(1/t)·Σ_{masked} −log p_θ]`` into ``N·E[mean_{masked} −log p_θ]`` at
``t ~ Beta(n, N − n + 1)`` (the n-th smallest of the symbols' uniforms), whose variance stays finite as t → 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bitcompose.core.precision import autocast
from bitcompose.core.schedules import CosineSchedule
from bitcompose.core.tensors import append_dims
from bitcompose.diffusion.as_model import DenoiserFn
from bitcompose.diffusion.denoiser import BitDenoiser
from bitcompose.diffusion.masked import MaskedDenoiser, mask_inputs

__all__ = ["BoundTerms", "bits_per_dim", "bound_terms", "masked_nll_bound", "nll_bound"]

#: ``α·h/σ`` at the default upper end of the integral (h: half the lattice's smallest gap).
RESOLVED_SEPARATION = 6.0


@dataclass(frozen=True)
class BoundTerms:
    """The three terms of the bound, each in nats per sample ``[B]``.

    Attributes:
        prior: KL of ``q(z | x)`` at t = 1 from ``N(0, I)``.
        diffusion: the weighted denoising error integrated over ``[λ₀, λ₁]`` (Monte Carlo).
        decoder: ``−log p(x | z)`` of the lattice decoder at ``λ₁``.
        log_snr_range: ``(λ₀, λ₁)``, the ends of the integral.
    """

    prior: Tensor
    diffusion: Tensor
    decoder: Tensor
    log_snr_range: tuple[float, float]

    @property
    def total(self) -> Tensor:
        """The bound on −log p(x), nats per sample ``[B]``."""
        return self.prior + self.diffusion + self.decoder


def _time_of_log_snr(schedule: CosineSchedule, lam: Tensor) -> Tensor:
    """The inverse of the cosine schedule's ``λ(t) = −2·log tan(((t + ns)/(1 + ds))·π/2)``, same shape."""
    angle = torch.atan(torch.exp(-0.5 * lam))
    return (angle * (2.0 / math.pi) * (1.0 + schedule.ds) - schedule.ns).clamp(0.0, 1.0)


def _lattice(values: Tensor | None, scale: float, x0: Tensor) -> Tensor:
    """The sorted lattice ``[V]`` (float64) and a check that every entry of ``x0`` lies on it."""
    lattice = torch.tensor([-scale, scale], dtype=torch.float64) if values is None else values
    lattice = torch.as_tensor(lattice, dtype=torch.float64).flatten().unique()
    if lattice.numel() < 2:
        raise ValueError(f"the lattice needs at least two values, got {lattice.tolist()}")
    gap = float((lattice[1:] - lattice[:-1]).min())
    off = (x0.detach().double().cpu().unsqueeze(-1) - lattice).abs().min(dim=-1).values
    if off.numel() and float(off.max()) > 1e-3 * gap:
        raise ValueError(
            f"x0 must lie on the lattice of analog values {lattice.tolist()[:8]} (an entry is "
            f"{float(off.max()):.3g} away); pass values= for a continuous-pixel code (BitCodec.lattice)"
        )
    return lattice


def _log_snr_ends(
    schedule: CosineSchedule, lattice: Tensor, log_snr_max: float | None
) -> tuple[float, float]:
    lam_min = float(schedule.log_snr(torch.tensor(1.0, dtype=torch.float64)))
    lam_top = float(schedule.log_snr(torch.tensor(0.0, dtype=torch.float64)))
    if log_snr_max is None:
        half_gap = float((lattice[1:] - lattice[:-1]).min()) / 2
        log_snr_max = min(lam_top, 2.0 * math.log(RESOLVED_SEPARATION / half_gap))
    if not lam_min < log_snr_max <= lam_top + 1e-9:
        raise ValueError(
            f"log_snr_max must lie in ({lam_min:.3g}, {lam_top:.3g}] (the schedule's range), got {log_snr_max}"
        )
    return lam_min, float(log_snr_max)


def _softplus(x: Tensor) -> Tensor:
    return torch.nn.functional.softplus(x)


def _inverse_softplus(s: Tensor) -> Tensor:
    """``log(e^s − 1)`` for ``s > 0``, stable at both ends."""
    return s + torch.log(-torch.expm1(-s))


def _estimate(
    denoiser: BitDenoiser | DenoiserFn, z: Tensor, t: Tensor, cond: Any, self_condition: bool
) -> Tensor:
    """``x̂(z, t)``: one pass, or two where the denoiser self-conditions (the first pass's clipped estimate fed to
    the second; both at the same ``z``)."""
    est = denoiser(z, t, None, cond)
    if self_condition:
        clip = float(getattr(denoiser, "scale", 1.0))
        est = denoiser(z, t, est.clamp(-clip, clip).to(z.dtype), cond)
    return est


def _decoder_nll(x0: Tensor, lattice: Tensor, alpha: float, sigma: float, noise: Tensor) -> Tensor:
    """``−log p(x | z)`` ``[B]`` of the factorised lattice decoder at ``z = α·x0 + σ·noise``."""
    values = lattice.to(device=x0.device, dtype=torch.float64)
    z = alpha * x0.double() + sigma * noise.double()
    logits = -((z.unsqueeze(-1) - alpha * values) ** 2) / (2 * sigma**2)  # [B, ..., V]
    index = (x0.double().unsqueeze(-1) - values).abs().argmin(dim=-1, keepdim=True)
    nll = torch.logsumexp(logits, dim=-1, keepdim=True) - logits.gather(-1, index)
    return nll.flatten(1).sum(1)


@torch.no_grad()
def bound_terms(
    denoiser: BitDenoiser | DenoiserFn,
    x0: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    draws: int = 4,
    values: Tensor | None = None,
    log_snr_max: float | None = None,
    self_condition: bool | None = None,
    precision: str = "fp32",
) -> BoundTerms:
    """The bound's three terms for the analog bits ``x0`` (see the module docstring and :func:`nll_bound`)."""
    if isinstance(denoiser, MaskedDenoiser):
        raise ValueError(
            "an absorbing-state model has no continuous bound; use masked_nll_bound (nll_bound does)"
        )
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise ValueError("x0 must be a batched float tensor of analog bits, shape [B, ...]")
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    schedule = getattr(denoiser, "schedule", None) or CosineSchedule()
    if not isinstance(schedule, CosineSchedule):
        raise ValueError(f"the continuous-time bound needs the cosine schedule, got {schedule!r}")
    scale = float(getattr(denoiser, "scale", 1.0))
    lattice = _lattice(values, scale, x0)
    lam_min, lam_max = _log_snr_ends(schedule, lattice, log_snr_max)
    if self_condition is None:
        self_condition = bool(getattr(denoiser, "self_condition", True))
    batch, device = x0.shape[0], x0.device
    lo, hi = float(lattice[0]), float(lattice[-1])

    # prior: KL(N(α₀x, σ₀²) ‖ N(0, 1)) per channel at t = 1
    g1 = float(schedule.gamma(torch.tensor(1.0, dtype=torch.float64)))
    prior = 0.5 * (g1 * x0.double().pow(2) + (1 - g1) - 1 - math.log1p(-g1)).flatten(1).sum(1)

    # diffusion: stratified draws from q(λ) ∝ sigmoid(λ + log v), weight ½·Z·SSE·(1 + v·e^λ)/v
    log_v = 2.0 * math.log(max(abs(lo), abs(hi)))
    s_lo = float(_softplus(torch.tensor(lam_min + log_v, dtype=torch.float64)))
    z_norm = float(_softplus(torch.tensor(lam_max + log_v, dtype=torch.float64))) - s_lo
    diffusion = torch.zeros(batch, dtype=torch.float64, device=device)
    for k in range(draws):
        u = (k + torch.rand(batch, generator=generator, device=device, dtype=torch.float64)) / draws
        lam = _inverse_softplus(s_lo + u * z_norm) - log_v
        t = _time_of_log_snr(schedule, lam)
        alpha = append_dims(schedule.alpha(t), x0).to(x0.dtype)
        sigma = append_dims(schedule.sigma(t), x0).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        z = alpha * x0 + sigma * noise
        with autocast(precision, device):
            est = _estimate(denoiser, z, t.float(), cond, self_condition)
        sse = (x0.double() - est.double().clamp(lo, hi)).pow(2).flatten(1).sum(1)
        diffusion += 0.5 * z_norm * sse * (1 + torch.exp(lam + log_v)) / math.exp(log_v)
    diffusion /= draws

    # decoder at λ₁
    t1 = _time_of_log_snr(schedule, torch.tensor(lam_max, dtype=torch.float64))
    a1, s1 = float(schedule.alpha(t1)), float(schedule.sigma(t1))
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    decoder = _decoder_nll(x0, lattice, a1, s1, noise)
    return BoundTerms(prior, diffusion, decoder, (lam_min, lam_max))


@torch.no_grad()
def masked_nll_bound(
    denoiser: MaskedDenoiser,
    x0: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    draws: int = 4,
    precision: str = "fp32",
) -> Tensor:
    """The absorbing-state ELBO, nats per sample ``[B]``, for one-hot codes ``x0`` ``[B, C·K, ...]`` (the layout
    :class:`~bitcompose.diffusion.masked.MaskedDenoiser` trains on; ``N = C·…`` symbols per sample).

    Each draw: ``n`` masked symbols (stratified over ``1..N`` across the draws), the mask the ``n`` smallest of
    per-symbol uniforms, the time their n-th order statistic; the estimate is ``N × mean −log p_θ`` of the masked
    symbols (see the module docstring for why this equals the ELBO's ``1/t``-weighted form).
    """
    if not isinstance(x0, Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise ValueError("x0 must be a batched float tensor of one-hot codes, shape [B, C·K, ...]")
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws!r}")
    num_values = denoiser.num_values
    b, ck, *rest = x0.shape
    if ck % num_values:
        raise ValueError(f"{ck} channels are not a multiple of num_values={num_values}")
    codes = x0.reshape(b, ck // num_values, num_values, *rest)
    target = codes.argmax(dim=2)  # [B, C, ...]
    symbols = target[0].numel()
    total = torch.zeros(b, dtype=torch.float64, device=x0.device)
    for k in range(draws):
        u = (k + torch.rand(b, generator=generator, device=x0.device, dtype=torch.float64)) / draws
        n = (u * symbols).long().clamp(0, symbols - 1) + 1  # [B] in 1..N
        uniforms = torch.rand(target.shape, generator=generator, device=x0.device, dtype=torch.float64)
        flat = uniforms.flatten(1)
        t = flat.sort(dim=1).values.gather(1, (n - 1).unsqueeze(1)).squeeze(1)  # n-th smallest
        masked = uniforms <= append_dims(t, uniforms)
        with autocast(precision, x0.device):
            logits = denoiser.logits(mask_inputs(x0, masked, num_values), t.float(), cond)
        nll = torch.nn.functional.cross_entropy(logits.movedim(2, 1), target, reduction="none")
        total += symbols * (nll.double() * masked).flatten(1).sum(1) / n
    return total / draws


def nll_bound(
    denoiser: BitDenoiser | MaskedDenoiser | DenoiserFn,
    x0: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    draws: int = 4,
    values: Tensor | None = None,
    log_snr_max: float | None = None,
    self_condition: bool | None = None,
    precision: str = "fp32",
) -> Tensor:
    """A variational upper bound on −log p(x0), nats per sample ``[B]``.

    Args:
        denoiser: a :class:`BitDenoiser` (x0, ε, logistic or energy; with or without self-conditioning), a plain
            callable ``f(x_t, t, self_cond=None, cond=None) -> x̂0`` on the cosine schedule, or a
            :class:`MaskedDenoiser` (its ELBO, :func:`masked_nll_bound`).
        x0: ``[B, ...]`` the data as the model sees them: analog bits ``±b`` (or continuous-pixel levels, with
            ``values``); one-hot codes ``[B, C·K, ...]`` for a masked model.
        cond: the conditioning passed to the denoiser (class labels ``[B]``, ...), or None.
        generator: the source of all randomness (times, noise, masks).
        draws: Monte Carlo draws of the time per sample (stratified).
        values: the lattice of values an analog channel takes (default ``±b``; ``BitCodec.lattice`` for
            continuous pixels).
        log_snr_max: the upper end of the integral (default: where the lattice is resolved, module docstring).
        self_condition: evaluate with a first-pass estimate (default: the denoiser's ``self_condition``).
        precision: ``fp32`` or ``bf16`` (autocast of the network).

    Returns:
        float64 ``[B]``; divide by ``ln 2`` and the number of pixel-channels for bits per dimension
        (:func:`bits_per_dim`).
    """
    if isinstance(denoiser, MaskedDenoiser):
        return masked_nll_bound(
            denoiser, x0, cond=cond, generator=generator, draws=draws, precision=precision
        )
    terms = bound_terms(
        denoiser,
        x0,
        cond=cond,
        generator=generator,
        draws=draws,
        values=values,
        log_snr_max=log_snr_max,
        self_condition=self_condition,
        precision=precision,
    )
    return terms.total


def bits_per_dim(nats: Tensor, dims: int) -> tuple[float, float]:
    """``(mean, standard error)`` of a bound in bits per dimension from its nats per sample ``[B]`` and the
    number of dimensions (pixel-channels, tokens) of one sample."""
    if nats.ndim != 1 or nats.numel() < 2:
        raise ValueError(f"need at least two per-sample bounds [B], got shape {tuple(nats.shape)}")
    if not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive integer, got {dims!r}")
    per_dim = nats.double() / (dims * math.log(2))
    return float(per_dim.mean()), float(per_dim.std() / math.sqrt(per_dim.numel()))
