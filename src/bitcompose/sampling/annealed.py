"""Annealed MCMC drivers for composed diffusion models (Du et al. 2023, Algorithm 1 "Annealed MCMC").

The levels ``q̃_t ∝ exp(−E(x, t))``, ``t = T−1..0``, of a (composed) model form an annealing path; the drivers
run an MCMC kernel (:mod:`bitcompose.sampling.mcmc`) that leaves each level invariant:

* ``driver="anneal"`` (variant A, the released 2D notebook): start from ``N(0, I)`` and run ``steps_per_level``
  kernel steps at every level ``t = T−1, …, 0``. The samples are those of level 0 (noise ``σ_0``, e.g. 0.025 for
  the T = 100 cosine schedule), as in the notebook.
* ``driver="reverse"`` (variant B, the released PyTorch/tapestry code, corrected): optionally ``K`` steps at level
  ``T−1``; then for ``t = T−1, …, 0`` an ancestral DDPM step with the composed score from level ``t`` to
  ``t − 1``, followed by ``K`` kernel steps **at level ``t − 1``** (the released code used level ``t`` there: a
  bug), only for levels ``≥ mcmc_min_t`` (the released code's "MCMC for t > 50" of 100 is ``mcmc_min_t=50``).
  The last ancestral step lands on the data.

``resample_ess`` (``driver="anneal"``, energies needed) adds sequential-Monte-Carlo resampling between levels
(:mod:`bitcompose.sampling.smc`): particles carry the annealed-importance weights ``E(x, t+1) − E(x, t)`` and are
resampled when the effective sample size falls below ``resample_ess·B`` (and once at the end), which restores
the share of each mode that pure annealing loses when the modes separate. This is an extension, not the
paper's sampler; it costs 2 energy evaluations (forward passes) per level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import is_dataclass, replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bitcompose.energy import LevelModel
from bitcompose.sampling.ddpm import ddpm_step, initial_noise
from bitcompose.sampling.mcmc import Kernel, KernelState, MCMCResult, StepSizeLike, make_kernel
from bitcompose.sampling.smc import effective_sample_size, systematic_resample

__all__ = ["annealed_mcmc"]


def annealed_mcmc(
    model: LevelModel,
    x_or_shape: Tensor | tuple[int, ...] | list[int],
    *,
    kernel: Kernel | str,
    steps_per_level: int = 10,
    step_size: StepSizeLike | None = None,
    driver: str = "anneal",
    mcmc_min_t: int = 0,
    carry_momentum: bool = True,
    resample_ess: float | None = None,
    init: str = "noise",
    generator: torch.Generator | None = None,
    progress: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> MCMCResult:
    """Sample a (composed) model by annealed MCMC.

    Args:
        model: model or composite (protocol of :mod:`bitcompose.energy`); Metropolis kernels with
            ``energy_diff="exact"`` need ``has_energy``.
        x_or_shape: the start ``[B, *dims]`` (used as given), or a shape to draw ``N(0, I)`` from.
        kernel: a kernel object (``ULA``, ``MALA``, ``UHMC``, ``HMC``) or its name (default options).
        steps_per_level: ``K`` kernel steps per level (notebook: 10).
        step_size: if given, replaces the kernel's ``step_size`` (float, ``StepSize`` or callable ``t -> η``).
        driver: ``"anneal"`` (variant A) or ``"reverse"`` (variant B); see the module docstring.
        mcmc_min_t: lowest level at which MCMC runs (``"reverse"`` only; levels below get only DDPM steps).
        carry_momentum: keep the U-HMC/HMC momentum across levels (notebook) instead of redrawing it per level
            (released PyTorch code).
        resample_ess: ``None`` (the paper's samplers) or a fraction in ``(0, 1]``: resample the particles by
            their annealed-importance weights whenever the effective sample size is below ``resample_ess·B``
            (``driver="anneal"`` only; needs ``model.has_energy``).
        init: ``"noise"`` (``N(0, I)``; the only start distribution for now) when a shape is given.
        generator: source of all randomness (a fresh randomly seeded one if ``None``).
        progress: tqdm bar over levels.
        callback: called after each level with ``{"t", "x", "acceptance", "nfe"}`` (``x`` at level ``t``).
        dtype, device: of the drawn start.

    Returns:
        :class:`~bitcompose.sampling.mcmc.MCMCResult` (acceptance per level, NaN for kernels without Metropolis
        and for levels without MCMC).
    """
    if driver not in ("anneal", "reverse"):
        raise ValueError(f"driver must be 'anneal' or 'reverse', got {driver!r}")
    if init != "noise":
        raise ValueError(f"init must be 'noise', got {init!r}")
    if steps_per_level < 0:
        raise ValueError(f"steps_per_level must be >= 0, got {steps_per_level}")
    T = model.schedule.num_steps
    if not 0 <= mcmc_min_t <= T:
        raise ValueError(f"mcmc_min_t must lie in [0, {T}], got {mcmc_min_t}")
    if resample_ess is not None:
        if not 0 < resample_ess <= 1:
            raise ValueError(f"resample_ess must lie in (0, 1], got {resample_ess}")
        if driver != "anneal":
            raise ValueError("resample_ess needs driver='anneal'")
        if not model.has_energy:
            raise ValueError(
                "resample_ess needs a model with energies (importance weights); this one is score-only"
            )
    if isinstance(kernel, str):
        kernel = make_kernel(kernel)
    if step_size is not None:
        if not is_dataclass(kernel) or not hasattr(kernel, "step_size"):
            raise ValueError(f"step_size= needs a kernel with a step_size field, got {type(kernel).__name__}")
        kernel = replace(kernel, step_size=step_size)  # type: ignore[type-var]
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    x = initial_noise(x_or_shape, generator=generator, dtype=dtype, device=device)
    acceptance = torch.full((T,), float("nan"), dtype=torch.float64)
    totals = {"nfe": 0, "rejected": 0, "resampled": 0}
    state = KernelState()
    log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)

    def resample(x: Tensor, state: KernelState, log_w: Tensor) -> tuple[Tensor, KernelState, Tensor]:
        idx = systematic_resample(log_w, generator)
        mom = None if state.momentum is None else state.momentum[idx]
        totals["resampled"] += 1
        return x[idx], KernelState(momentum=mom), torch.zeros_like(log_w)

    def run_level(x: Tensor, t: int, state: KernelState) -> tuple[Tensor, KernelState]:
        if not carry_momentum:
            state = replace(state, momentum=None)
        acc_sum, acc_n = 0.0, 0
        for _ in range(steps_per_level):
            x, state, info = kernel.step(model, x, t, state, generator=generator)
            totals["nfe"] += info.nfe
            totals["rejected"] += info.rejected_nonfinite
            if info.accepted is not None:
                acc_sum += float(info.accepted.double().sum())
                acc_n += int(info.accepted.numel())
        if acc_n > 0:
            acceptance[t] = acc_sum / acc_n
        if callback is not None:
            callback({"t": t, "x": x, "acceptance": float(acceptance[t]), "nfe": totals["nfe"]})
        return x, state

    with torch.no_grad():
        bar = tqdm(range(T - 1, -1, -1), disable=not progress, desc=f"annealed {type(kernel).__name__}")
        if driver == "anneal":
            for t in bar:
                if resample_ess is not None and t < T - 1:
                    log_w = log_w + (model.energy(x, t + 1) - model.energy(x, t)).double()
                    totals["nfe"] += 2
                    if effective_sample_size(log_w) < resample_ess * x.shape[0]:
                        x, state, log_w = resample(x, state, log_w)
                x, state = run_level(x, t, state)
            if resample_ess is not None and bool((log_w != 0).any()):
                x, state, log_w = resample(x, state, log_w)
        else:
            if T - 1 >= mcmc_min_t:
                x, state = run_level(x, T - 1, state)
            for t in bar:
                x = ddpm_step(model, x, t, generator=generator)
                totals["nfe"] += 1
                if t >= 1 and t - 1 >= mcmc_min_t:
                    x, state = run_level(x, t - 1, state)
    return MCMCResult(
        samples=x,
        acceptance=acceptance,
        nfe=totals["nfe"],
        rejected_nonfinite=totals["rejected"],
        resampled=totals["resampled"],
    )
