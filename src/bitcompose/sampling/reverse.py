"""Reverse-diffusion samplers for Bit Diffusion: DDIM and DDPM with asymmetric time intervals.

The loop follows the official ``Scheduler.generate`` (pix2seq) step by step:

* step ``k = 0 … T−1``: ``t_now = 1 − k/T``, ``t_next = max(1 − (k + 1 + td)/T, 0)``; the network is queried at
  ``t_now`` and the sampler jumps to ``t_next`` — ``td`` is measured in *sampling steps*;
* the x0 estimate is clipped to ``[−b, b]`` and ε is re-derived from the clipped estimate;
* self-conditioning feeds the previous step's clipped estimate (zeros at the first step);
* the result is the **last clipped x0 estimate**, not ``x_t`` (thresholding it at 0 gives the bits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bitcompose.schedules import CosineSchedule

__all__ = ["sample", "time_pairs", "StepInfo", "Denoiser", "SAMPLERS"]

SAMPLERS: tuple[str, ...] = ("ddim", "ddpm")


class Denoiser(Protocol):
    """``denoiser(x_t, t, self_cond=None, cond=None) -> x0_hat`` with ``t`` of shape ``[B]`` in [0, 1]."""

    def __call__(
        self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None
    ) -> Tensor: ...


@dataclass(frozen=True)
class StepInfo:
    """Passed to ``callback`` after every step.

    Attributes:
        step: index k. t_now, t_next: the times of the step. x: ``x_{t_next}``. x0: the clipped estimate at t_now.
    """

    step: int
    t_now: float
    t_next: float
    x: Tensor
    x0: Tensor


def time_pairs(steps: int, td: float = 0.0) -> list[tuple[float, float]]:
    """The ``(t_now, t_next)`` pairs of a sampling run with asymmetric time intervals.

    Args:
        steps: number of sampling steps T (>= 1).
        td: time difference in units of steps (>= 0); ``t_next = max(1 − (k + 1 + td)/T, 0)``.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not td >= 0:
        raise ValueError(f"td must be >= 0 (in units of steps), got {td}")
    return [(1.0 - k / steps, max(1.0 - (k + 1 + td) / steps, 0.0)) for k in range(steps)]


def _gamma(schedule: CosineSchedule, t: float) -> float:
    return float(schedule.gamma(torch.tensor(t, dtype=torch.float64)))


@torch.no_grad()
def sample(
    denoiser: Denoiser,
    shape: tuple[int, ...] | torch.Size,
    *,
    steps: int = 100,
    sampler: Literal["ddim", "ddpm"] = "ddim",
    td: float = 0.0,
    self_condition: bool = True,
    cond: Any = None,
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    ddpm_variance: Literal["large", "small"] = "large",
    scale: float | None = None,
    schedule: CosineSchedule | None = None,
    x_init: Tensor | None = None,
    device: torch.device | str | None = None,
    callback: Callable[[StepInfo], None] | None = None,
) -> Tensor:
    """Generate analog bits with DDIM or DDPM, self-conditioning and asymmetric time intervals.

    Args:
        denoiser: the x0 predictor (e.g. a :class:`~bitcompose.denoiser.BitDenoiser`).
        shape: ``[B, ...]`` shape of the samples (analog bits).
        steps: number of sampling steps T.
        sampler: ``"ddim"`` (η = 0, deterministic) or ``"ddpm"`` (ancestral).
        td: asymmetric time difference, in steps (paper: 0 – 0.5 for images, ≈ 7 for captions).
        self_condition: feed the previous clipped estimate back; ignored (no estimate passed) when the denoiser
            declares ``self_condition = False``.
        cond: conditioning passed to the denoiser (class labels ``[B]``, images, ...).
        guidance: classifier-free guidance weight w: ``x̂0 = (1 + w)·x̂0(cond) − w·x̂0(null)``, where the null
            prediction is the denoiser's with ``cond=None``.
        generator: source of all randomness (initial noise, DDPM noise).
        progress: show a tqdm bar.
        ddpm_variance: ``"large"`` (σ² = 1 − α, the paper's default) or ``"small"`` (the posterior variance).
        scale: clip range b; default ``denoiser.scale`` (1.0 if absent).
        schedule: default ``denoiser.schedule`` (the paper's cosine if absent).
        x_init: optional starting noise ``[B, ...]`` instead of drawing it.
        device: where to sample; default the denoiser's parameters' device (CPU if none).
        callback: called with a :class:`StepInfo` after each step.

    Returns:
        ``[B, ...]`` the final clipped x0 estimate; decode it with the codec (threshold at 0).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    if ddpm_variance not in ("large", "small"):
        raise ValueError(f"ddpm_variance must be 'large' or 'small', got {ddpm_variance!r}")
    if not guidance >= 0:
        raise ValueError(f"guidance must be >= 0, got {guidance}")
    if guidance > 0 and cond is None:
        raise ValueError("classifier-free guidance needs cond (the labels to guide towards)")
    pairs = time_pairs(steps, td)
    b = float(scale if scale is not None else getattr(denoiser, "scale", 1.0))
    sched = schedule if schedule is not None else getattr(denoiser, "schedule", None) or CosineSchedule()
    if device is None:
        params = list(denoiser.parameters()) if isinstance(denoiser, torch.nn.Module) else []
        device = params[0].device if params else torch.device("cpu")
    use_sc = self_condition and getattr(denoiser, "self_condition", True)

    if x_init is not None:
        if tuple(x_init.shape) != tuple(shape):
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {tuple(shape)}")
        x = x_init.to(device=device, dtype=torch.float32)
    else:
        x = torch.randn(tuple(shape), generator=generator, device=device)
    batch = x.shape[0]
    x0 = torch.zeros_like(x)

    for k, (t_now, t_next) in enumerate(tqdm(pairs, disable=not progress, desc=f"{sampler} sampling")):
        t = torch.full((batch,), t_now, device=device)
        sc = x0 if use_sc else None
        pred = denoiser(x, t, sc, cond)
        if guidance > 0:
            pred = (1.0 + guidance) * pred - guidance * denoiser(x, t, sc, None)
        x0 = pred.clamp(-b, b)

        # Coefficients in float64: near t = 0 and t = 1 they are differences of numbers close to 1.
        g_now, g_next = _gamma(sched, t_now), _gamma(sched, t_next)
        s_now = math.sqrt(1.0 - g_now)
        if sampler == "ddim":
            # x_next = √γ_next·x0 + √(1−γ_next)·ε̂, with ε̂ = (x − √γ_now·x0)/√(1−γ_now).
            c_eps = math.sqrt(1.0 - g_next) / s_now
            x = c_eps * x + (math.sqrt(g_next) - c_eps * math.sqrt(g_now)) * x0
        else:
            alpha = min(max(g_now / g_next, 0.0), 1.0)
            # μ = (x − (1−α)/√(1−γ_now)·ε̂)/√α, expanded in x and x0.
            c = (1.0 - alpha) / (1.0 - g_now)
            mean = ((1.0 - c) * x + c * math.sqrt(g_now) * x0) / math.sqrt(alpha)
            var = 1.0 - alpha
            if ddpm_variance == "small":
                var *= (1.0 - g_next) / (1.0 - g_now)
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
            x = mean + math.sqrt(var) * noise
        if callback is not None:
            callback(StepInfo(step=k, t_now=t_now, t_next=t_next, x=x, x0=x0))
    return x0
