"""bitcompose: Bit Diffusion (analog bits) and composable energy-based diffusion with annealed MCMC."""

from bitcompose.bits import BitCodec
from bitcompose.denoiser import BitDenoiser, LossOutput, diffusion_loss
from bitcompose.nets.unet import UNet, UNetConfig, unet_config
from bitcompose.sampling.reverse import sample, time_pairs
from bitcompose.schedules import CosineSchedule, DiscreteSchedule

__version__ = "0.1.0"

__all__ = [
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
    "__version__",
]
