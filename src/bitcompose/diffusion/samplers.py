"""Bit Diffusion's samplers: DDIM, DDPM and DPM-Solver++(2M) with asymmetric time intervals and self-conditioning.

The loop follows the official ``Scheduler.generate`` (pix2seq), on a :class:`~bitcompose.core.grid.TimeGrid`:

* its steps ``(t_now, t_next)`` from the noisiest level down: on ``TimeGrid.uniform(T, td)`` step ``k = 0 … T−1``
  goes from ``t_now = 1 − k/T`` to ``t_next = max(1 − (k + 1 + td)/T, 0)``; the model is queried at ``t_now`` and
  the sampler jumps to ``t_next`` (``td`` is measured in sampling steps);
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

:func:`sample_model` (model, start, time grid, :class:`~bitcompose.diffusion.options.SamplingOptions`) runs on any
model of the protocol (a denoiser via :func:`~bitcompose.as_model`, or a composite); :func:`sample` is the thin
denoiser-level convenience over it (steps and td, class labels and classifier-free guidance).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bitcompose.core.grid import TimeGrid
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
from bitcompose.diffusion.as_model import DenoiserFn, cfg_model
from bitcompose.diffusion.denoiser import BitDenoiser
from bitcompose.diffusion.options import DDPM_VARIANCES, SAMPLERS, SamplingOptions

__all__ = ["sample", "sample_model", "time_pairs", "SAMPLERS", "DDPM_VARIANCES", "SamplingOptions"]


def time_pairs(steps: int, td: float = 0.0) -> list[tuple[float, float]]:
    """The ``(t_now, t_next)`` pairs of a sampling run with asymmetric time intervals:
    ``TimeGrid.uniform(steps, td).steps()``.

    Args:
        steps: number of sampling steps T (>= 1).
        td: time difference in units of steps (>= 0); ``t_next = max(1 − (k + 1 + td)/T, 0)``.
    """
    return TimeGrid.uniform(steps, td).steps()


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
    x: Tensor, x0: Tensor, g_now: float, g_next: float, options: SamplingOptions, generator: torch.Generator
) -> Tensor:
    """One DDIM or DDPM step from ``γ_now`` to ``γ_next`` given the clipped estimate ``x0`` (coefficients in
    float64: near t = 0 and t = 1 they are differences of numbers close to 1). ``dpmpp2m`` passes its
    extrapolated x0 and takes the DDIM step."""
    s_now = math.sqrt(1.0 - g_now)
    if options.sampler in ("ddim", "dpmpp2m"):
        # x_next = √γ_next·x0 + √(1−γ_next)·ε̂, with ε̂ = (x − √γ_now·x0)/√(1−γ_now).
        c_eps = math.sqrt(1.0 - g_next) / s_now
        return c_eps * x + (math.sqrt(g_next) - c_eps * math.sqrt(g_now)) * x0
    alpha = min(max(g_now / g_next, 0.0), 1.0)
    # μ = (x − (1−α)/√(1−γ_now)·ε̂)/√α, expanded in x and x0.
    c = (1.0 - alpha) / (1.0 - g_now)
    mean = ((1.0 - c) * x + c * math.sqrt(g_now) * x0) / math.sqrt(alpha)
    var = 1.0 - alpha
    if options.ddpm_variance == "small":
        var *= (1.0 - g_next) / (1.0 - g_now)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return mean + math.sqrt(var) * noise


def _start(
    x_or_shape: Tensor | tuple[int, ...] | torch.Size,
    generator: torch.Generator,
    device: torch.device | str | None,
) -> Tensor:
    """The starting noise: a given tensor in float32 (on ``device`` if given), or ``N(0, I)`` of a shape."""
    if isinstance(x_or_shape, Tensor):
        return x_or_shape.to(device=device or x_or_shape.device, dtype=torch.float32)
    return torch.randn(tuple(x_or_shape), generator=generator, device=device)


def _estimate(
    model: DiffusionModel, x: Tensor, t_now: float, sc: Tensor | None, options: SamplingOptions
) -> tuple[Tensor, int]:
    """The model's (unclipped) x0 estimate ``[B, *dims]`` at ``x`` and ``t_now`` given the self-conditioning
    ``sc`` (``None``: not fed), combined with a blind pass under self-guidance; and the evaluations it took."""
    t = torch.full((x.shape[0],), t_now, device=x.device)
    evals = 1
    with autocast(options.precision, x.device):
        pred = model.with_self_cond(sc).predict(x, t).x0
        if options.self_guidance > 0:
            blind = model.with_self_cond(torch.zeros_like(x)).predict(x, t).x0
            w = options.self_guidance if options.self_guidance_form == "cfg" else options.self_guidance - 1.0
            pred = pred + w * (pred - blind)
            evals = 2
    return pred.to(x.dtype), evals


@torch.no_grad()
def sample_model(
    model: DiffusionModel,
    x_or_shape: Tensor | tuple[int, ...] | torch.Size,
    grid: TimeGrid | None = None,
    options: SamplingOptions | None = None,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    device: torch.device | str | None = None,
) -> SampleResult:
    """DDIM, DDPM or DPM-Solver++(2M) on any model, along a time grid (see the module docstring).

    Args:
        model: a model or composite (``as_model(denoiser)``, ``cfg_model(...)``, ``Product(...)``, ...).
        x_or_shape: the starting noise ``[B, *dims]``, or the shape to draw it from ``N(0, I)``.
        grid: the steps, e.g. ``TimeGrid.uniform(steps, td)`` (``None``: the model's own levels, ``model.grid()``).
        options: sampler, DDPM variance, self-conditioning, precision, Appendix G's momentum and self-guidance
            (default :class:`~bitcompose.diffusion.options.SamplingOptions`).
        generator: source of all randomness (``None``: a fresh one seeded from the OS).
        progress: show a tqdm bar.
        callback: called with a :class:`~bitcompose.core.sampling.StepInfo` after each step.
        device: where to draw the starting noise (default CPU; ignored when a tensor is given).

    Returns:
        :class:`~bitcompose.core.sampling.SampleResult` whose ``samples`` are the final clipped x0 estimate.
    """
    model = check_model(model, "sample_model")
    options = SamplingOptions() if options is None else options
    steps = (model.grid() if grid is None else grid).steps()
    generator = resolve_generator(generator, device)
    x = _start(x_or_shape, generator, device)
    use_sc = options.self_condition and model.self_conditioned
    if (options.momentum > 0 or options.self_guidance > 0) and not use_sc:
        raise ValueError("momentum and self_guidance act on self-conditioning: use a self-conditioned model")
    b, m = model.x0_clip, options.momentum
    x0 = torch.zeros_like(x)
    sc = x0  # what the network is conditioned on: the last clipped estimate, or its EMA under momentum
    nfe, rejected, times = 0, 0, []
    prev: tuple[Tensor, float] | None = None  # dpmpp2m: the previous clipped estimate and its γ
    walk = progress_bar(steps, progress=progress, desc=f"{options.sampler} sampling")
    for k, (t_now, t_next) in enumerate(walk):
        pred, evals = _estimate(model, x, t_now, sc if use_sc else None, options)
        x0_new = pred if b is None else pred.clamp(-b, b)
        g_now, g_next = _gamma(model, t_now), _gamma(model, t_next)
        # dpmpp2m: first order onto t = 0 (see the module docstring: λ(0) is finite, the extrapolation is not)
        second_order = options.sampler == "dpmpp2m" and t_next > 0.0
        step_x0 = multistep_x0(x0_new, prev, g_now, g_next) if second_order else x0_new
        x_new = _transition(x, step_x0, g_now, g_next, options, generator)
        x, bad = keep_finite(x_new, x, t_now)  # a sample whose estimate is not finite stays where it was
        x0 = keep_finite(x0_new, x0, t_now)[0]
        sc = x0 if m == 0 else m * sc + (1.0 - m) * x0
        prev = (x0, g_now)
        rejected += bad
        nfe += evals
        times.append(t_now)
        if callback is not None:
            callback(StepInfo(k, t_now, t_next, x, x0, nfe))
    return SampleResult(samples=x0, nfe=nfe, rejected_nonfinite=rejected, times=times)


def _options(given: dict[str, Any]) -> SamplingOptions:
    """:class:`SamplingOptions` from keyword arguments, an unknown name refused in one line."""
    known = set(SamplingOptions.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown sampling options {unknown}; expected among {sorted(known)}")
    return SamplingOptions(**given)


def sample(
    denoiser: BitDenoiser | DenoiserFn | DiffusionModel,
    shape: tuple[int, ...] | torch.Size,
    *,
    steps: int = 100,
    td: float = 0.0,
    cond: Any = None,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    x_init: Tensor | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    **options: Any,
) -> SampleResult:
    """Generate analog bits with DDIM, DDPM or DPM-Solver++(2M), self-conditioning and asymmetric time intervals:
    :func:`sample_model` of ``cfg_model(denoiser, cond, guidance)`` on ``TimeGrid.uniform(steps, td)``.

    Args:
        denoiser: the x0 predictor (e.g. a :class:`~bitcompose.diffusion.denoiser.BitDenoiser`), or a model.
        shape: ``[B, ...]`` shape of the samples (analog bits).
        steps: number of sampling steps T.
        td: asymmetric time difference, in steps (paper: 0 – 0.5 for images, ≈ 7 for captions).
        cond: conditioning passed to the denoiser (class labels ``[B]``, images, ...).
        guidance: classifier-free guidance weight g: ``x̂0 = (1 + g)·x̂0(cond) − g·x̂0(null)``, where the null
            prediction is the denoiser's with ``cond=None`` (:func:`~bitcompose.diffusion.as_model.cfg_model`).
        generator: source of all randomness (``None``: a fresh one seeded from the OS).
        x_init: optional starting noise ``[B, ...]`` instead of drawing it.
        progress: show a tqdm bar.
        callback: called with a :class:`~bitcompose.core.sampling.StepInfo` after each step.
        **options: fields of :class:`~bitcompose.diffusion.options.SamplingOptions`: ``sampler`` (``"ddim"``,
            ``"ddpm"``, ``"dpmpp2m"``), ``ddpm_variance``, ``self_condition``, ``precision``, ``momentum``,
            ``self_guidance``.

    Returns:
        :class:`~bitcompose.core.sampling.SampleResult` whose ``samples`` ``[B, ...]`` are the final clipped x0
        estimate; decode them with the codec (threshold at 0). Sampling runs on the device of the denoiser's
        parameters (CPU if it has none); the clip range is its ``scale`` (1.0 if absent).
    """
    model = cfg_model(denoiser, cond, guidance)
    params = list(denoiser.parameters()) if isinstance(denoiser, torch.nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    start: Tensor | tuple[int, ...] | torch.Size = shape
    if x_init is not None:
        if tuple(x_init.shape) != tuple(shape):
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {tuple(shape)}")
        start = x_init.to(device)
    grid, opts = TimeGrid.uniform(steps, td), _options(options)
    return sample_model(
        model, start, grid, opts, generator=generator, progress=progress, callback=callback, device=device
    )
