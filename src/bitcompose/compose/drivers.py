"""Samplers of (composed) models on their annealing grid: reverse diffusion and annealed MCMC.

Both walk the levels of a time grid (:mod:`bitcompose.core.grid`: ``model.grid()`` unless another is given; a
plain :class:`~bitcompose.core.grid.TimeGrid` becomes levels of the model's schedule) from the noisiest level
down, with the sampling vocabulary of :mod:`bitcompose.core.sampling`; :func:`annealed_mcmc` takes its settings
as one :class:`~bitcompose.compose.options.MCMCOptions`.

* :func:`reverse_diffusion`: ancestral DDPM steps with the model's (composed) score, ``σ² = β`` (Ho et al.
  2020): ``x_{i−1} = (x_i + β_i·s(x_i, t_i))/√(1 − β_i) + √β_i·z``, noise-free from level 0 to the data. For a
  composite this is "reverse diffusion with summed scores", which is biased for products.
* :func:`annealed_mcmc` (Du et al. 2023, Algorithm 1): the levels ``q̃_t ∝ exp(−E(x, t))`` form an annealing
  path and an MCMC kernel (:mod:`bitcompose.compose.kernels`) leaves each level invariant.
  ``driver="anneal"``: start from ``N(0, I)`` and run ``steps_per_level`` kernel steps at every level.
  ``driver="reverse"``: optionally ``K`` steps at the top level, then for every level an ancestral step down
  followed by ``K`` kernel steps at the level it landed on, for levels ``≥ ⌊min_level·L⌋`` (``min_level`` a
  fraction of the grid).
  ``resample_ess`` adds sequential-Monte-Carlo resampling between levels (:mod:`bitcompose.compose.smc`);
  ``resample_groups`` confines it to the slots of each group, for batches whose slots have different targets
  (a condition bound to each slot: a particle must not move into a slot that asks for another target).

Models with a data range (``x0_clip``, e.g. analog bits in ``[−b, b]``) take their ancestral steps with the
clipped x0 estimate (ε re-derived from it, as Bit Diffusion's samplers do), so the last step returns the clipped
estimate. Self-conditioned models read the previous clipped x0 estimate, bound with ``model.with_self_cond``:
from each ancestral step, and (``driver="anneal"``) from one extra evaluation at the start of every level; it is
held fixed while the kernel runs at a level, so the kernel's target is one well-defined density.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import torch
from torch import Tensor

from bitcompose.compose.kernels import Kernel, KernelState
from bitcompose.compose.options import DRIVERS, MCMCOptions
from bitcompose.compose.smc import (
    check_groups,
    effective_sample_size,
    resample_within_groups,
    systematic_resample,
)
from bitcompose.core.grid import Level, LevelGrid, TimeGrid
from bitcompose.core.model import DiffusionModel, Prediction, check_model
from bitcompose.core.sampling import (
    Callback,
    SampleResult,
    StepInfo,
    keep_finite,
    progress_bar,
    resolve_generator,
)
from bitcompose.core.tensors import randn_like_from

__all__ = ["ddpm_step", "reverse_diffusion", "annealed_mcmc", "initial_noise", "DRIVERS", "MCMCOptions"]


def _clip(model: DiffusionModel, x0: Tensor) -> Tensor:
    b = model.x0_clip
    return x0 if b is None else x0.clamp(-b, b)


def ddpm_step(
    model: DiffusionModel,
    x: Tensor,
    level: Level,
    *,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor | None]:
    """One ancestral step from ``level`` to the level below (to the data from level 0); out of place.

    Args:
        model: a model or composite.
        x: ``[B, *dims]`` at ``level``.
        level: the level (its time and per-step ``β``).
        generator: source of the noise.

    Returns:
        ``(x at the level below [B, *dims], the clipped x0 estimate or None)``; the estimate is computed only for
        models with ``x0_clip`` or self-conditioning (the others take the score directly).
    """
    beta = level.beta
    x0: Tensor | None = None
    if model.x0_clip is None and not model.self_conditioned:
        score = model.score(x, level.t)
    else:
        pred = model.predict(x, level.t)
        x0 = _clip(model, pred.x0)
        score = Prediction("x0", x0, x, pred.alpha, pred.sigma).score
    mean = (x + beta * score) / math.sqrt(1.0 - beta)
    if level.index == 0:  # to the data: the posterior mean, which is the (clipped) x0 estimate itself
        return (mean if x0 is None else x0), x0
    return mean + math.sqrt(beta) * randn_like_from(x, generator), x0


def initial_noise(
    x_or_shape: Tensor | tuple[int, ...] | list[int] | torch.Size,
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


def _levels(model: DiffusionModel, grid: TimeGrid | None) -> LevelGrid:
    """The levels a driver walks: ``model.grid()``, a given level grid, or a time grid on the model's schedule."""
    return model.grid() if grid is None else grid.levels(model.schedule)


def reverse_diffusion(
    model: DiffusionModel,
    x_or_shape: Tensor | tuple[int, ...] | list[int] | torch.Size,
    grid: TimeGrid | None = None,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SampleResult:
    """Ancestral DDPM sampling over every level of the grid with the model's (composed) score.

    Args:
        model: a model or composite.
        x_or_shape: the start ``[B, *dims]`` at the top level, or a shape to draw it from ``N(0, I)``.
        grid: the levels (default ``model.grid()``; a plain time grid is put on the model's schedule).
        generator: source of all noise (``None``: a fresh one seeded from the OS).
        progress: show a tqdm bar.
        callback: called with a :class:`~bitcompose.core.sampling.StepInfo` after every step.
        dtype, device: of the drawn start (ignored when a tensor is given).

    Returns:
        :class:`~bitcompose.core.sampling.SampleResult` with the samples at the data level and ``nfe = L``; a
        sample whose step is not finite stays where it was (counted in ``rejected_nonfinite``).
    """
    model = check_model(model, "reverse_diffusion")
    levels = _levels(model, grid)
    generator = resolve_generator(generator, device)
    x = initial_noise(x_or_shape, generator=generator, dtype=dtype, device=device)
    x0: Tensor | None = None
    times: list[float] = []
    rejected = 0
    with torch.no_grad():
        walk = progress_bar(
            levels.descending(), progress=progress, desc="reverse diffusion", total=len(levels)
        )
        for k, level in enumerate(walk):
            x_new, x0_new = ddpm_step(model.with_self_cond(x0), x, level, generator=generator)
            x, bad = keep_finite(x_new, x, level.t)
            rejected += bad
            if x0_new is not None:
                x0 = keep_finite(x0_new, torch.zeros_like(x0_new) if x0 is None else x0, level.t)[0]
            times.append(level.t)
            if callback is not None:
                callback(StepInfo(k, level.t, float(levels.next_times[level.index]), x, x0, k + 1))
    return SampleResult(samples=x, nfe=len(levels), rejected_nonfinite=rejected, times=times)


def annealed_mcmc(
    model: DiffusionModel,
    x_or_shape: Tensor | tuple[int, ...] | list[int] | torch.Size,
    grid: TimeGrid | None,
    options: MCMCOptions,
    *,
    resample_groups: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SampleResult:
    """Sample a (composed) model by annealed MCMC (see the module docstring).

    Args:
        model: model or composite; Metropolis kernels with ``energy_diff="exact"`` need ``has_energy``.
        x_or_shape: the start ``[B, *dims]`` (used as given), or a shape to draw ``N(0, I)`` from.
        grid: the levels (``None``: ``model.grid()``; a plain time grid is put on the model's schedule).
        options: kernel, steps per level, driver, ``min_level`` (a fraction of the grid), SMC and the final step
            (:class:`~bitcompose.compose.options.MCMCOptions`).
        resample_groups: ``None`` or an integer tensor ``[B]``: the target (condition) of each slot. The ESS
            check (``resample_ess·n_g`` for a group of ``n_g``) and the resampling then happen within each group,
            by the group's normalised weights: a particle is only ever replaced by one of its own group
            (:func:`~bitcompose.compose.smc.resample_within_groups`). Needs ``options.resample_ess``; without
            groups the whole batch is one population, so every slot must have the same target.
        generator: source of all randomness (``None``: a fresh one seeded from the OS).
        progress: tqdm bar over levels.
        callback: called after each level with a :class:`~bitcompose.core.sampling.StepInfo`.
        dtype, device: of the drawn start.

    Returns:
        :class:`~bitcompose.core.sampling.SampleResult` with ``acceptance`` per level (NaN for kernels without
        Metropolis and for levels without MCMC).
    """
    model = check_model(model, "annealed_mcmc")
    levels = _levels(model, grid)
    if options.resample_ess is not None and not model.has_energy:
        raise ValueError(
            "resample_ess needs a model with energies (importance weights); this one is score-only"
        )
    if resample_groups is not None and options.resample_ess is None:
        raise ValueError("resample_groups needs resample_ess (it groups the SMC resampling)")
    kern = options.resolved_kernel()
    generator = resolve_generator(generator, device)
    x = initial_noise(x_or_shape, generator=generator, dtype=dtype, device=device)
    run = _AnnealedRun(model, kern, options, generator, callback, len(levels), x)
    if resample_groups is not None:
        run.groups = check_groups(resample_groups, x.shape[0]).to(x.device)
    with torch.no_grad():
        walk = progress_bar(
            levels.descending(), progress=progress, desc=f"annealed {type(kern).__name__}", total=len(levels)
        )
        if options.driver == "anneal":
            _anneal(run, levels, walk, options)
        else:
            _reverse_then_mcmc(run, levels, walk, levels.level_index(options.min_level))
    return SampleResult(
        samples=run.x,
        nfe=run.nfe,
        acceptance=run.acceptance,
        rejected_nonfinite=run.rejected,
        resampled=run.resampled,
        times=run.times,
    )


def _anneal(run: _AnnealedRun, levels: LevelGrid, walk: Iterable[Level], options: MCMCOptions) -> None:
    """``driver="anneal"``: kernel steps at every level from the noisiest down (SMC reweighting between levels),
    then the last resampling and the optional final step to the data."""
    ess = options.resample_ess
    for level in walk:
        if ess is not None and level.index < len(levels) - 1:
            run.reweight(levels[level.index + 1], level, ess)
        run.refresh_self_cond(level)
        run.level(level, levels)
    if ess is not None and bool((run.log_w != 0).any()):
        run.resample(None)
    if options.final_step:
        run.ancestral(levels[0])


def _reverse_then_mcmc(run: _AnnealedRun, levels: LevelGrid, walk: Iterable[Level], lowest: int) -> None:
    """``driver="reverse"``: kernel steps at the top level, then per level an ancestral step down followed by
    kernel steps at the level it landed on, for the levels with index ``>= lowest``."""
    top = levels[len(levels) - 1]
    if top.index >= lowest:
        run.level(top, levels)
    for level in walk:
        run.ancestral(level)
        if level.index >= 1 and level.index - 1 >= lowest:
            run.level(levels[level.index - 1], levels)


class _AnnealedRun:
    """The state of one annealed-MCMC run: particles, kernel state, self-conditioning, weights and counters."""

    def __init__(
        self,
        model: DiffusionModel,
        kernel: Kernel,
        options: MCMCOptions,
        generator: torch.Generator,
        callback: Callback | None,
        n_levels: int,
        x: Tensor,
    ) -> None:
        self.model, self.kernel, self.k = model, kernel, options.steps_per_level
        self.carry_momentum, self.generator, self.callback = options.carry_momentum, generator, callback
        self.x = x
        self.state = KernelState()
        self.self_cond: Tensor | None = None
        self.log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        self.groups: Tensor | None = None  # the target of each slot (SMC resamples within a group)
        self.acceptance = torch.full((n_levels,), float("nan"), dtype=torch.float64)
        self.nfe = self.rejected = self.resampled = self.steps = 0
        self.times: list[float] = []

    def _target(self) -> DiffusionModel:
        return self.model.with_self_cond(self.self_cond)

    def ancestral(self, level: Level) -> None:
        """An ancestral step down from ``level`` (non-finite samples stay, counted); updates self-conditioning."""
        x_new, x0 = ddpm_step(self._target(), self.x, level, generator=self.generator)
        self.x, bad = keep_finite(x_new, self.x, level.t)
        self.rejected += bad
        if x0 is not None and self.model.self_conditioned:
            previous = torch.zeros_like(x0) if self.self_cond is None else self.self_cond
            self.self_cond = keep_finite(x0, previous, level.t)[0]
        self.nfe += 1

    def refresh_self_cond(self, level: Level) -> None:
        """Self-conditioned models: the clipped x0 estimate at this level (1 evaluation) becomes the state."""
        if self.model.self_conditioned:
            pred = self._target().predict(self.x, level.t)
            self.self_cond = _clip(self.model, pred.x0)
            self.nfe += 1

    def level(self, level: Level, levels: LevelGrid) -> None:
        """``K`` kernel steps at ``level``; records acceptance and reports to the callback."""
        if not self.carry_momentum:
            self.state = replace(self.state, momentum=None)
        target = self._target()
        acc_sum, acc_n, bad = 0.0, 0, 0
        for _ in range(self.k):
            self.x, self.state, info = self.kernel.step(
                target, self.x, level, self.state, generator=self.generator
            )
            self.nfe += info.nfe
            bad += info.rejected_nonfinite
            if info.accepted is not None:
                acc_sum += float(info.accepted.double().sum())
                acc_n += int(info.accepted.numel())
        self.rejected += bad
        if self.k and bad == self.k * self.x.shape[0]:
            raise ValueError(
                f"every MCMC proposal at t={level.t:.4g} was non-finite: the model returns NaN or inf there"
            )
        if acc_n > 0:
            self.acceptance[level.index] = acc_sum / acc_n
        self.times.append(level.t)
        if self.callback is not None:
            t_next = float(levels.next_times[level.index])
            acc = float(self.acceptance[level.index])
            self.callback(StepInfo(self.steps, level.t, t_next, self.x, self.self_cond, self.nfe, acc))
        self.steps += 1

    def reweight(self, above: Level, level: Level, resample_ess: float) -> None:
        """Annealed-importance weights for moving from ``above`` to ``level``; resample when the ESS is low."""
        target = self._target()
        self.log_w = self.log_w + (target.energy(self.x, above.t) - target.energy(self.x, level.t)).double()
        self.nfe += 2
        if self.groups is not None:
            self.resample(resample_ess)
        elif effective_sample_size(self.log_w) < resample_ess * self.x.shape[0]:
            self.resample(None)

    def resample(self, ess_fraction: float | None) -> None:
        """Systematic resampling of the particles (and their momentum and self-conditioning) by weight: of the
        whole batch, or (with groups) of each group whose ESS is below ``ess_fraction·n_g`` (``None``: of each
        group with weights)."""
        if self.groups is None:
            idx = systematic_resample(self.log_w, self.generator)
            self.log_w = torch.zeros_like(self.log_w)
        else:
            idx, done = resample_within_groups(
                self.log_w, self.groups, self.generator, ess_fraction=ess_fraction
            )
            if not bool(done.any()):
                return
            self.log_w = torch.where(done, torch.zeros_like(self.log_w), self.log_w)
        mom = None if self.state.momentum is None else self.state.momentum[idx]
        self.x = self.x[idx]
        self.self_cond = None if self.self_cond is None else self.self_cond[idx]
        self.state = KernelState(momentum=mom)
        self.resampled += 1
