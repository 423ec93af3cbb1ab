"""bitcompose: Bit Diffusion (analog bits) and composable energy-based diffusion with annealed MCMC, on one core."""

# First, before torch loads: OpenMP waits passively when the machine is already busy (bitcompose._threads).
import bitcompose._threads  # noqa: F401  (isort: skip)

from bitcompose.compose import (
    HMC,
    MALA,
    UHMC,
    ULA,
    CFGConjunction,
    ClassifierGuidance,
    EnergyModel,
    EpsModel,
    GaussianModel,
    MCMCOptions,
    Mixture,
    Negation,
    Product,
    StepSize,
    annealed_mcmc,
    eps_loss,
    reverse_diffusion,
)
from bitcompose.core import (
    BitCodec,
    CosineSchedule,
    DiffusionModel,
    DiscreteSchedule,
    Level,
    LevelGrid,
    Prediction,
    SampleResult,
    StepInfo,
    TimeGrid,
)
from bitcompose.diffusion import (
    BitDenoiser,
    DenoiserModel,
    LossDraws,
    LossOutput,
    SamplingOptions,
    as_model,
    bits_per_dim,
    cfg_model,
    diffusion_loss,
    nll_bound,
    sample,
    sample_model,
    time_pairs,
)
from bitcompose.nets.unet import UNet, UNetConfig, unet_config

__version__ = "0.2.0"

#: The result type of every sampler, under its former name.
MCMCResult = SampleResult

__all__ = [
    # core
    "BitCodec",
    "CosineSchedule",
    "DiscreteSchedule",
    "DiffusionModel",
    "Level",
    "LevelGrid",
    "Prediction",
    "SampleResult",
    "StepInfo",
    "TimeGrid",
    # Bit Diffusion
    "BitDenoiser",
    "DenoiserModel",
    "LossDraws",
    "LossOutput",
    "UNet",
    "UNetConfig",
    "as_model",
    "cfg_model",
    "SamplingOptions",
    "unet_config",
    "diffusion_loss",
    "nll_bound",
    "bits_per_dim",
    "sample",
    "sample_model",
    "time_pairs",
    # composition
    "EnergyModel",
    "EpsModel",
    "GaussianModel",
    "eps_loss",
    "Product",
    "Mixture",
    "Negation",
    "ClassifierGuidance",
    "CFGConjunction",
    "annealed_mcmc",
    "reverse_diffusion",
    "HMC",
    "MALA",
    "MCMCOptions",
    "UHMC",
    "ULA",
    "MCMCResult",
    "StepSize",
    "__version__",
]
