"""Composition of diffusion models read as energy-based models (Du et al. 2023): parameterisations on DDPM
levels, operators, MCMC kernels, annealed drivers and SMC resampling."""

from bitcompose.compose.ddpm_models import EnergyModel, EpsModel, eps_loss
from bitcompose.compose.drivers import annealed_mcmc, ddpm_step, reverse_diffusion
from bitcompose.compose.gaussian import GaussianModel
from bitcompose.compose.kernels import (
    HMC,
    KERNELS,
    MALA,
    UHMC,
    ULA,
    Kernel,
    KernelInfo,
    KernelState,
    StepSize,
    make_kernel,
)
from bitcompose.compose.operators import CFGConjunction, ClassifierGuidance, Mixture, Negation, Product
from bitcompose.compose.options import MCMCOptions
from bitcompose.compose.smc import effective_sample_size, resample_within_groups, systematic_resample

__all__ = [
    "CFGConjunction",
    "ClassifierGuidance",
    "EnergyModel",
    "EpsModel",
    "GaussianModel",
    "HMC",
    "KERNELS",
    "Kernel",
    "KernelInfo",
    "KernelState",
    "MALA",
    "MCMCOptions",
    "Mixture",
    "Negation",
    "Product",
    "StepSize",
    "UHMC",
    "ULA",
    "annealed_mcmc",
    "ddpm_step",
    "effective_sample_size",
    "eps_loss",
    "make_kernel",
    "resample_within_groups",
    "reverse_diffusion",
    "systematic_resample",
]
