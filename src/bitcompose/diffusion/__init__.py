"""Bit Diffusion: the denoiser over analog bits, its training loss, its likelihood bound, ``as_model`` and the
DDIM/DDPM samplers."""

from bitcompose.diffusion.as_model import DenoiserModel, as_model, cfg_model
from bitcompose.diffusion.denoiser import PREDICTIONS, BitDenoiser
from bitcompose.diffusion.likelihood import BoundTerms, bits_per_dim, bound_terms, nll_bound
from bitcompose.diffusion.loss import LossDraws, LossOutput, diffusion_loss
from bitcompose.diffusion.options import SamplingOptions
from bitcompose.diffusion.samplers import SAMPLERS, sample, sample_model, time_pairs

__all__ = [
    "PREDICTIONS",
    "SAMPLERS",
    "BitDenoiser",
    "BoundTerms",
    "DenoiserModel",
    "LossDraws",
    "LossOutput",
    "SamplingOptions",
    "as_model",
    "bits_per_dim",
    "bound_terms",
    "cfg_model",
    "diffusion_loss",
    "nll_bound",
    "sample",
    "sample_model",
    "time_pairs",
]
