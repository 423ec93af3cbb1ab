"""bitcompose: Bit Diffusion (analog bits) and composable energy-based diffusion with annealed MCMC."""

from bitcompose.bits import BitCodec
from bitcompose.compose import CFGConjunction, ClassifierGuidance, Mixture, Negation, Product
from bitcompose.denoiser import BitDenoiser, LossOutput, diffusion_loss
from bitcompose.energy import EnergyModel, EpsModel, GaussianModel, eps_loss
from bitcompose.nets.unet import UNet, UNetConfig, unet_config
from bitcompose.sampling.annealed import annealed_mcmc
from bitcompose.sampling.ddpm import reverse_diffusion
from bitcompose.sampling.mcmc import HMC, MALA, UHMC, ULA, MCMCResult, StepSize
from bitcompose.sampling.reverse import sample, time_pairs
from bitcompose.schedules import CosineSchedule, DiscreteSchedule

__version__ = "0.1.0"

__all__ = [
    # Bit Diffusion
    "BitCodec",
    "BitDenoiser",
    "CosineSchedule",
    "DiscreteSchedule",
    "LossOutput",
    "UNet",
    "UNetConfig",
    "unet_config",
    "diffusion_loss",
    "sample",
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
    "UHMC",
    "ULA",
    "MCMCResult",
    "StepSize",
    "__version__",
]
