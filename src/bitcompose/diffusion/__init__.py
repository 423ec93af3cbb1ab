"""Bit Diffusion: the denoiser over analog bits, its training loss, ``as_model`` and the DDIM/DDPM samplers."""

from bitcompose.diffusion.as_model import DenoiserModel, as_model, cfg_model
from bitcompose.diffusion.denoiser import PREDICTIONS, BitDenoiser
from bitcompose.diffusion.loss import LossDraws, LossOutput, diffusion_loss
from bitcompose.diffusion.options import SamplingOptions
from bitcompose.diffusion.samplers import SAMPLERS, sample, sample_model, time_pairs

__all__ = [
    "PREDICTIONS",
    "SAMPLERS",
    "BitDenoiser",
    "DenoiserModel",
    "LossDraws",
    "LossOutput",
    "SamplingOptions",
    "as_model",
    "cfg_model",
    "diffusion_loss",
    "sample",
    "sample_model",
    "time_pairs",
]
