"""Samplers.

* Bit Diffusion: :func:`sample` (DDIM / DDPM with asymmetric time intervals and self-conditioning).
* Composition: :func:`reverse_diffusion` (ancestral DDPM on a composed score, the baseline) and
  :func:`annealed_mcmc` with the kernels :class:`ULA`, :class:`MALA`, :class:`UHMC`, :class:`HMC` (optionally
  with SMC resampling between levels: :func:`effective_sample_size`, :func:`systematic_resample`).
"""

from bitcompose.sampling.annealed import annealed_mcmc
from bitcompose.sampling.ddpm import ddpm_step, reverse_diffusion
from bitcompose.sampling.mcmc import (
    HMC,
    MALA,
    UHMC,
    ULA,
    KernelInfo,
    KernelState,
    MCMCResult,
    StepSize,
    make_kernel,
)
from bitcompose.sampling.reverse import SAMPLERS, StepInfo, sample, time_pairs
from bitcompose.sampling.smc import effective_sample_size, systematic_resample

__all__ = [
    "sample",
    "time_pairs",
    "StepInfo",
    "SAMPLERS",
    "annealed_mcmc",
    "reverse_diffusion",
    "ddpm_step",
    "HMC",
    "MALA",
    "UHMC",
    "ULA",
    "KernelInfo",
    "KernelState",
    "MCMCResult",
    "StepSize",
    "make_kernel",
    "effective_sample_size",
    "systematic_resample",
]
