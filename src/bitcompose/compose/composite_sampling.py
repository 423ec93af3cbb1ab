"""The generic sampler of the composition experiments (classes, objects, prompts, guidance): a composite by
reverse diffusion, or by reverse steps plus MCMC with the step following each level's noise.

``reverse`` is ancestral reverse diffusion with the composed score. An MCMC kernel (``ula``, ``mala``, ``uhmc``,
``hmc``) is the paper's image driver: the reverse step followed by ``K`` kernel steps at every level of the
noisier part of the grid (``min_level``, a fraction of it: the paper's CLEVR code runs MCMC on the noisier half),
with the step ``c·σ_t`` (:func:`~bitcompose.compose.kernels.noise_scaled_kernel`); with ``resample_ess`` instead
pure annealing from noise with SMC resampling (energies needed) and the final step to the data. Score-only
models get Metropolis corrections by the trapezoid rule.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bitcompose.compose.drivers import annealed_mcmc, reverse_diffusion
from bitcompose.compose.kernels import noise_scaled_kernel
from bitcompose.compose.options import MCMCOptions
from bitcompose.core.grid import LevelGrid
from bitcompose.core.model import DiffusionModel
from bitcompose.core.names import MCMC_SAMPLERS

__all__ = ["MCMCSettings", "SAMPLERS", "check_request", "sample_composite"]

SAMPLERS = MCMC_SAMPLERS


@dataclass(frozen=True)
class MCMCSettings:
    """How the MCMC samplers of :func:`sample_composite` run (the reverse sampler ignores it).

    Attributes:
        steps_per_level: kernel steps after each reverse step.
        step: the kernel's step relative to the level's noise ``σ_t`` (leapfrog ``ε``; Langevin ``√η``).
        min_level: MCMC only at the levels ``≥ ⌊min_level·L⌋`` of the model's ``L`` levels: a fraction of the
            grid in ``[0, 1]`` (0.5, the paper's CLEVR code: the noisier half).
        resample_ess: SMC instead: anneal from noise with resampling below this ESS fraction (energies only).
    """

    steps_per_level: int = 1
    step: float = 0.2
    min_level: float = 0.5
    resample_ess: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_level <= 1.0:
            raise ValueError(f"min_level must be a fraction of the grid in [0, 1], got {self.min_level}")

    def options(self, sampler: str, grid: LevelGrid) -> MCMCOptions:
        """The driver's options for the MCMC ``sampler`` on ``grid``: reverse steps plus noise-scaled kernel steps
        on the noisier levels, or (``resample_ess``) annealing from noise with SMC and the final step."""
        smc = self.resample_ess is not None
        return MCMCOptions(
            noise_scaled_kernel(sampler, grid, self.step),
            steps_per_level=self.steps_per_level,
            driver="anneal" if smc else "reverse",
            min_level=0.0 if smc else self.min_level,
            resample_ess=self.resample_ess,
            final_step=smc,
        )


def check_request(samplers: Sequence[str], param: str, mcmc: MCMCSettings) -> None:
    """Refuse, before any model is loaded or trained, samplers and settings that cannot run with ``param``."""
    for s in samplers:
        if s not in SAMPLERS:
            raise ValueError(f"unknown sampler {s!r}; choose from {', '.join(SAMPLERS)}")
    if mcmc.resample_ess is not None and param != "energy":
        raise ValueError("SMC resampling needs energies: use an energy-parameterised model (--param energy)")


def sample_composite(
    model: DiffusionModel,
    shape: tuple[int, ...],
    sampler: str,
    mcmc: MCMCSettings,
    *,
    generator: torch.Generator,
    resample_groups: Tensor | None = None,
    progress: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """Samples ``[n, *dims]`` of a composite on its grid (``model.grid()``) and the report ``{nfe, seconds,
    acceptance, rejected_nonfinite, resampled}``.

    Args:
        model: the composite.
        shape: ``[n, *dims]``.
        sampler: ``reverse`` or an MCMC kernel (``ula``, ``mala``, ``uhmc``, ``hmc``; see the module docstring).
        mcmc: the MCMC settings.
        generator: the source of all noise.
        resample_groups: SMC only, and needed there: integer ``[n]``, the target of each sample (equal values for
            samples with the same conditions; zeros when every sample has the same target). A particle is
            resampled only among its group, so it never lands in a slot that asks for another condition.
        progress: a progress bar.
    """
    smc = mcmc.resample_ess is not None and sampler != "reverse"
    if smc and resample_groups is None:
        raise ValueError(
            "SMC needs each sample's condition (resample_groups) to resample only within a target"
        )
    start = time.perf_counter()
    if sampler == "reverse":
        res = reverse_diffusion(model, shape, generator=generator, progress=progress)
    else:
        grid = model.grid()
        groups = resample_groups if smc else None
        res = annealed_mcmc(
            model,
            shape,
            grid,
            mcmc.options(sampler, grid),
            resample_groups=groups,
            generator=generator,
            progress=progress,
        )
    acc = None
    if res.acceptance is not None and bool(torch.isfinite(res.acceptance).any()):
        acc = float(res.acceptance[torch.isfinite(res.acceptance)].mean())
    info = {
        "nfe": res.nfe,
        "seconds": round(time.perf_counter() - start, 2),
        "acceptance": acc,
        "rejected_nonfinite": res.rejected_nonfinite,
        "resampled": res.resampled,
    }
    return res.samples, info
