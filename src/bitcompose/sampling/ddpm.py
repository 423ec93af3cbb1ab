"""Ancestral DDPM sampling with a (composed) score: the baseline that composition with MCMC improves on.

With the model protocol of :mod:`bitcompose.energy`, the ancestral step from level ``t`` to ``t − 1``
(``σ² = β_t``, Ho et al. 2020) reads, with ``ε̂ = −σ_t·s(x, t)``:

``x_{t−1} = (x_t − β_t/σ_t·ε̂)/√(1−β_t) + √β_t·z = (x_t + β_t·s(x_t, t))/√(1−β_t) + √β_t·z``

(``z = 0`` on the last step ``t = 0``, which lands on the data). For a composite of several models this is
"reverse diffusion with summed scores" (Composable Diffusion), which is biased for products (note §2.2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bitcompose.energy import LevelModel
from bitcompose.sampling.mcmc import MCMCResult

__all__ = ["ddpm_step", "reverse_diffusion", "initial_noise"]


def ddpm_step(model: LevelModel, x: Tensor, t: int, *, generator: torch.Generator) -> Tensor:
    """One ancestral step from level ``t`` to ``t − 1`` (to the data when ``t = 0``); out of place.

    Args:
        model: a model or composite (needs only ``score``).
        x: ``[B, *dims]`` at level ``t``.
        t: integer level.
        generator: source of the noise ``z``.

    Returns:
        ``[B, *dims]`` at level ``t − 1``.
    """
    beta = float(model.schedule.beta(t))
    mean = (x + beta * model.score(x, t)) / math.sqrt(1.0 - beta)
    if t == 0:
        return mean
    z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return mean + math.sqrt(beta) * z


def initial_noise(
    x_or_shape: Tensor | tuple[int, ...] | list[int],
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """A tensor given as-is (cloned), or ``N(0, I)`` of the given shape drawn from ``generator``."""
    if isinstance(x_or_shape, Tensor):
        return x_or_shape.detach().clone()
    shape = tuple(int(s) for s in x_or_shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ValueError(f"shape must be [B, *dims] with positive sizes, got {shape}")
    z = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return z.to(device) if device is not None else z


def reverse_diffusion(
    model: LevelModel,
    x_or_shape: Tensor | tuple[int, ...] | list[int],
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> MCMCResult:
    """Ancestral DDPM sampling over all ``T`` levels with the model's (composed) score.

    Args:
        model: a model or composite.
        x_or_shape: the start ``x_{T−1}`` ``[B, *dims]``, or a shape to draw it from ``N(0, I)``.
        generator: source of all noise (a fresh randomly seeded one if ``None``).
        progress: show a tqdm bar.
        dtype, device: of the drawn start (ignored when a tensor is given).

    Returns:
        :class:`MCMCResult` with the samples at the data level, acceptance all NaN, ``nfe = T``.
    """
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    x = initial_noise(x_or_shape, generator=generator, dtype=dtype, device=device)
    T = model.schedule.num_steps
    with torch.no_grad():
        for t in tqdm(range(T - 1, -1, -1), disable=not progress, desc="reverse diffusion"):
            x = ddpm_step(model, x, t, generator=generator)
    acc = torch.full((T,), float("nan"), dtype=torch.float64)
    return MCMCResult(samples=x, acceptance=acc, nfe=T, rejected_nonfinite=0)
