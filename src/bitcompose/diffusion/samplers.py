"""Bit Diffusion's samplers: DDIM, DDPM and DPM-Solver++(2M) with asymmetric time intervals and self-conditioning.

The loop follows the official ``Scheduler.generate`` (pix2seq):

* step ``k = 0 … T−1``: ``t_now = 1 − k/T``, ``t_next = max(1 − (k + 1 + td)/T, 0)``; the model is queried at
  ``t_now`` and the sampler jumps to ``t_next`` (``td`` is measured in sampling steps);
* the x0 estimate is clipped to ``[−b, b]`` (the model's ``x0_clip``) and ε is re-derived from the clipped estimate;
* self-conditioning feeds the previous step's clipped estimate (zeros at the first step);
* the result is the last clipped x0 estimate, not ``x_t`` (thresholding it at 0 gives the bits).

``dpmpp2m`` is the second-order multistep solver of the probability-flow ODE in the x0 parameterisation (Lu et
al. 2022, "DPM-Solver++", Algorithm 2) on the same γ(t): the DDIM step with x̂0 replaced by the extrapolation
``D = x̂0 + (x̂0 − x̂0_prev)/(2r)``, ``r = h_prev/h`` in half-log-SNR ``λ = ½ log(γ/(1−γ))``; first order at the first
step and at every step whose target is ``t = 0``. γ(0) is just below 1, so λ(0) is finite (≈ 8 for the cosine
schedule) but far from the λ of the other steps: ``h`` onto ``t = 0`` is large, ``r`` small, and the extrapolation
would multiply ``x̂0 − x̂0_prev`` by ``1/(2r)``. At ``td = 0`` only the last step lands there and its state is not
returned; under ``td > 0`` several steps land on ``t = 0`` and their state is read again, so a second-order step
there diverges. The clipped estimates enter ``D``, so clipping, self-conditioning and ``td`` work as in DDIM (under
``td`` the state is read at ``t_now``, as there).

Appendix G's two self-conditioning variants, for any sampler: the **momentum estimate** feeds the network an EMA of
the past clipped estimates, ``x̃ ← m·x̃ + (1 − m)·x̂0`` (``momentum = 0`` is the default sampler, bit for bit), and
**self-guidance** takes a second pass with a zero estimate each step and combines the two like classifier-free
guidance, ``x̂0 = (1 + w)·f(x_t, x̃) − w·f(x_t, 0)`` (two network evaluations per step; the paper gives no formula,
this is our reading of "similar to classifier-free guidance").

:func:`sample_model` runs on any model of the protocol (a denoiser via :func:`~bitcompose.as_model`, or a
composite); :func:`sample` is the denoiser-level entry point with class labels and classifier-free guidance.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from bitcompose.core.composite import CFGConjunction
from bitcompose.core.model import DiffusionModel, check_model
from bitcompose.core.precision import autocast
from bitcompose.core.sampling import (
    Callback,
    SampleResult,
    StepInfo,
    keep_finite,
    progress_bar,
    resolve_generator,
)
from bitcompose.core.schedules import Schedule
from bitcompose.diffusion.as_model import DenoiserFn, as_model
from bitcompose.diffusion.denoiser import BitDenoiser

__all__ = ["sample", "sample_model", "time_pairs", "SAMPLERS", "DDPM_VARIANCES"]

SAMPLERS: tuple[str, ...] = ("ddim", "ddpm", "dpmpp2m")
DDPM_VARIANCES: tuple[str, ...] = ("large", "small")


def time_pairs(steps: int, td: float = 0.0) -> list[tuple[float, float]]:
    """The ``(t_now, t_next)`` pairs of a sampling run with asymmetric time intervals.

    Args:
        steps: number of sampling steps T (>= 1).
        td: time difference in units of steps (>= 0); ``t_next = max(1 − (k + 1 + td)/T, 0)``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not td >= 0 or not math.isfinite(td):
        raise ValueError(f"td must be finite and >= 0 (in units of steps), got {td}")
    return [(1.0 - k / steps, max(1.0 - (k + 1 + td) / steps, 0.0)) for k in range(steps)]


def _gamma(model: DiffusionModel, t: float) -> float:
    return float(model.schedule.gamma(torch.tensor(t, dtype=torch.float64)))


def _half_log_snr(g: float) -> float:
    """``λ = ½ log(γ/(1−γ))``; ``±inf`` at γ = 1 / γ = 0."""
    if g <= 0.0:
        return -math.inf
    if g >= 1.0:
        return math.inf
    return 0.5 * math.log(g / (1.0 - g))


def multistep_x0(x0: Tensor, prev: tuple[Tensor, float] | None, g_now: float, g_next: float) -> Tensor:
    """DPM-Solver++(2M)'s x0 to use in the DDIM step from ``γ_now`` to ``γ_next``: ``x0 + (x0 − x0_prev)/(2r)``
    with ``r = (λ_now − λ_prev)/(λ_next − λ_now)``; ``x0`` itself (first order) without a finite previous step
    or when the step reaches ``γ = 1``. The caller takes the step onto ``t = 0`` first order itself (γ(0) < 1,
    so λ there is finite and this function would extrapolate).

    Args:
        x0: the clipped estimate at ``γ_now``, ``[B, *dims]``.
        prev: the previous step's clipped estimate and its ``γ``, or ``None`` at the first step.
        g_now, g_next: γ of the current and the next time.
    """
    if prev is None:
        return x0
    x0_prev, g_prev = prev
    lam_prev, lam_now, lam_next = _half_log_snr(g_prev), _half_log_snr(g_now), _half_log_snr(g_next)
    h, h_prev = lam_next - lam_now, lam_now - lam_prev
    if not (math.isfinite(h) and math.isfinite(h_prev)) or h <= 0.0 or h_prev <= 0.0:
        return x0
    return x0 + (h / (2.0 * h_prev)) * (x0 - x0_prev)


def _transition(
    x: Tensor,
    x0: Tensor,
    g_now: float,
    g_next: float,
    sampler: str,
    ddpm_variance: str,
    generator: torch.Generator,
) -> Tensor:
    """One DDIM or DDPM step from ``γ_now`` to ``γ_next`` given the clipped estimate ``x0`` (coefficients in
    float64: near t = 0 and t = 1 they are differences of numbers close to 1). ``dpmpp2m`` passes its
    extrapolated x0 and takes the DDIM step."""
    s_now = math.sqrt(1.0 - g_now)
    if sampler in ("ddim", "dpmpp2m"):
        # x_next = √γ_next·x0 + √(1−γ_next)·ε̂, with ε̂ = (x − √γ_now·x0)/√(1−γ_now).
        c_eps = math.sqrt(1.0 - g_next) / s_now
        return c_eps * x + (math.sqrt(g_next) - c_eps * math.sqrt(g_now)) * x0
    alpha = min(max(g_now / g_next, 0.0), 1.0)
    # μ = (x − (1−α)/√(1−γ_now)·ε̂)/√α, expanded in x and x0.
    c = (1.0 - alpha) / (1.0 - g_now)
    mean = ((1.0 - c) * x + c * math.sqrt(g_now) * x0) / math.sqrt(alpha)
    var = 1.0 - alpha
    if ddpm_variance == "small":
        var *= (1.0 - g_next) / (1.0 - g_now)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return mean + math.sqrt(var) * noise


@torch.no_grad()
def sample_model(
    model: DiffusionModel,
    x_or_shape: Tensor | tuple[int, ...] | torch.Size,
    *,
    steps: int = 100,
    sampler: Literal["ddim", "ddpm", "dpmpp2m"] = "ddim",
    td: float = 0.0,
    self_condition: bool = True,
    ddpm_variance: Literal["large", "small"] = "large",
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
    precision: str = "fp32",
    momentum: float = 0.0,
    self_guidance: float = 0.0,
) -> SampleResult:
    """DDIM, DDPM or DPM-Solver++(2M) with asymmetric time intervals on any model (see the module docstring).

    Args:
        model: a model or composite (``as_model(denoiser)``, ``Product(...)``, ...).
        x_or_shape: the starting noise ``[B, *dims]``, or the shape to draw it from ``N(0, I)``.
        steps: number of sampling steps T.
        sampler: ``"ddim"`` (η = 0, deterministic), ``"ddpm"`` (ancestral) or ``"dpmpp2m"`` (second-order
            multistep, deterministic; for few steps).
        td: asymmetric time difference, in steps (paper: 0 – 0.5 for images, ≈ 7 for captions).
        self_condition: feed the previous clipped estimate back (only to self-conditioned models).
        ddpm_variance: ``"large"`` (σ² = 1 − α, the paper's default) or ``"small"`` (the posterior variance).
        generator: source of all randomness (``None``: a fresh one seeded from the OS).
        progress: show a tqdm bar.
        callback: called with a :class:`~bitcompose.core.sampling.StepInfo` after each step.
        device: where to draw the starting noise (default CPU; ignored when a tensor is given).
        precision: ``fp32``, ``bf16`` or ``auto`` (:mod:`bitcompose.core.precision`): autocast of the model
            evaluations only; the state, the coefficients and the x0 estimates stay fp32.
        momentum: Appendix G's momentum estimate ``m ∈ [0, 1)`` (self-conditioned models only).
        self_guidance: Appendix G's self-guidance weight ``w ≥ 0`` (self-conditioned models only; the paper: 3–5).

    Returns:
        :class:`~bitcompose.core.sampling.SampleResult` whose ``samples`` are the final clipped x0 estimate.
    """
    model = check_model(model, "sample_model")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    if ddpm_variance not in DDPM_VARIANCES:
        raise ValueError(f"ddpm_variance must be 'large' or 'small', got {ddpm_variance!r}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if not (self_guidance >= 0.0 and math.isfinite(self_guidance)):
        raise ValueError(f"self_guidance must be finite and >= 0, got {self_guidance}")
    pairs = time_pairs(steps, td)
    generator = resolve_generator(generator, device)
    if isinstance(x_or_shape, Tensor):
        x = x_or_shape.to(device=device or x_or_shape.device, dtype=torch.float32)
    else:
        x = torch.randn(tuple(x_or_shape), generator=generator, device=device)
    use_sc = self_condition and model.self_conditioned
    if (momentum > 0 or self_guidance > 0) and not use_sc:
        raise ValueError("momentum and self_guidance act on self-conditioning: use a self-conditioned model")
    b = model.x0_clip
    x0 = torch.zeros_like(x)
    sc = x0  # what the network is conditioned on: the last clipped estimate, or its EMA under momentum
    nfe, rejected, times = 0, 0, []
    prev: tuple[Tensor, float] | None = None  # dpmpp2m: the previous clipped estimate and its γ
    for k, (t_now, t_next) in enumerate(progress_bar(pairs, progress=progress, desc=f"{sampler} sampling")):
        t = torch.full((x.shape[0],), t_now, device=x.device)
        with autocast(precision, x.device):
            pred = model.predict(x, t, sc if use_sc else None).x0
            if self_guidance > 0:
                blind = model.predict(x, t, torch.zeros_like(x)).x0
                pred = (1.0 + self_guidance) * pred - self_guidance * blind
                nfe += 1
        pred = pred.to(x.dtype)
        x0_new = pred if b is None else pred.clamp(-b, b)
        g_now, g_next = _gamma(model, t_now), _gamma(model, t_next)
        # dpmpp2m: first order onto t = 0 (see the module docstring: λ(0) is finite, the extrapolation is not)
        second_order = sampler == "dpmpp2m" and t_next > 0.0
        step_x0 = multistep_x0(x0_new, prev, g_now, g_next) if second_order else x0_new
        x_new = _transition(x, step_x0, g_now, g_next, sampler, ddpm_variance, generator)
        x, bad = keep_finite(x_new, x, t_now)  # a sample whose estimate is not finite stays where it was
        x0 = keep_finite(x0_new, x0, t_now)[0]
        sc = x0 if momentum == 0 else momentum * sc + (1.0 - momentum) * x0
        prev = (x0, g_now)
        rejected += bad
        nfe += 1
        times.append(t_now)
        if callback is not None:
            callback(StepInfo(k, t_now, t_next, x, x0, nfe))
    return SampleResult(samples=x0, nfe=nfe, rejected_nonfinite=rejected, times=times)


def _sampling_model(
    denoiser: BitDenoiser | DenoiserFn | DiffusionModel,
    cond: Any,
    guidance: float,
    scale: float | None,
    schedule: Schedule | None,
) -> DiffusionModel:
    """The model :func:`sample` runs: the denoiser bound to ``cond``, guided as ``CFGConjunction(w = 1 + g)``."""
    if isinstance(denoiser, DiffusionModel):
        if cond is not None or guidance > 0:
            raise ValueError("a model carries its own conditioning; compose guidance with CFGConjunction")
        return denoiser
    b = float(scale if scale is not None else getattr(denoiser, "scale", 1.0))
    model = as_model(denoiser, cond=cond, scale=b, schedule=schedule)
    if guidance > 0:
        null = as_model(denoiser, cond=None, scale=b, schedule=schedule)
        return CFGConjunction(null, [model], weight=1.0 + guidance)
    return model


def sample(
    denoiser: BitDenoiser | DenoiserFn | DiffusionModel,
    shape: tuple[int, ...] | torch.Size,
    *,
    steps: int = 100,
    sampler: Literal["ddim", "ddpm", "dpmpp2m"] = "ddim",
    td: float = 0.0,
    self_condition: bool = True,
    cond: Any = None,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    ddpm_variance: Literal["large", "small"] = "large",
    scale: float | None = None,
    schedule: Schedule | None = None,
    x_init: Tensor | None = None,
    device: torch.device | str | None = None,
    callback: Callback | None = None,
    precision: str = "fp32",
    momentum: float = 0.0,
    self_guidance: float = 0.0,
) -> Tensor:
    """Generate analog bits with DDIM, DDPM or DPM-Solver++(2M), self-conditioning and asymmetric time intervals.

    Args:
        denoiser: the x0 predictor (e.g. a :class:`~bitcompose.diffusion.denoiser.BitDenoiser`), or a model.
        shape: ``[B, ...]`` shape of the samples (analog bits).
        steps: number of sampling steps T.
        sampler: ``"ddim"`` (η = 0, deterministic), ``"ddpm"`` (ancestral) or ``"dpmpp2m"`` (second-order
            multistep, deterministic; for few steps).
        td: asymmetric time difference, in steps (paper: 0 – 0.5 for images, ≈ 7 for captions).
        self_condition: feed the previous clipped estimate back; ignored when the denoiser declares
            ``self_condition = False``.
        cond: conditioning passed to the denoiser (class labels ``[B]``, images, ...).
        guidance: classifier-free guidance weight g: ``x̂0 = (1 + g)·x̂0(cond) − g·x̂0(null)``, where the null
            prediction is the denoiser's with ``cond=None`` (the :class:`~bitcompose.CFGConjunction` of the two
            with ``w = 1 + g``).
        generator: source of all randomness (``None``: a fresh one seeded from the OS).
        progress: show a tqdm bar.
        ddpm_variance: ``"large"`` (σ² = 1 − α, the paper's default) or ``"small"`` (the posterior variance).
        scale: clip range b; default ``denoiser.scale`` (1.0 if absent).
        schedule: default ``denoiser.schedule`` (the paper's cosine if absent).
        x_init: optional starting noise ``[B, ...]`` instead of drawing it.
        device: where to sample; default the denoiser's parameters' device (CPU if none).
        callback: called with a :class:`~bitcompose.core.sampling.StepInfo` after each step.
        precision: ``fp32`` (default), ``bf16`` or ``auto``: autocast of the network evaluations.
        momentum: Appendix G's momentum estimate ``m ∈ [0, 1)`` (0: the default sampler).
        self_guidance: Appendix G's self-guidance weight ``w ≥ 0`` (0: off; each step then costs two passes).

    Returns:
        ``[B, ...]`` the final clipped x0 estimate; decode it with the codec (threshold at 0).
    """
    if not guidance >= 0 or not math.isfinite(guidance):
        raise ValueError(f"guidance must be finite and >= 0, got {guidance}")
    if guidance > 0 and cond is None:
        raise ValueError("classifier-free guidance needs cond (the labels to guide towards)")
    model = _sampling_model(denoiser, cond, guidance, scale, schedule)
    if device is None:
        params = list(denoiser.parameters()) if isinstance(denoiser, torch.nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    start: Tensor | tuple[int, ...] | torch.Size = shape
    if x_init is not None:
        if tuple(x_init.shape) != tuple(shape):
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {tuple(shape)}")
        start = x_init.to(device)
    return sample_model(
        model,
        start,
        steps=steps,
        sampler=sampler,
        td=td,
        self_condition=self_condition,
        ddpm_variance=ddpm_variance,
        generator=generator,
        progress=progress,
        callback=callback,
        device=device,
        precision=precision,
        momentum=momentum,
        self_guidance=self_guidance,
    ).samples
