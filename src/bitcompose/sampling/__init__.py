"""Samplers: reverse diffusion for Bit Diffusion (DDIM / DDPM with asymmetric time intervals)."""

from bitcompose.sampling.reverse import SAMPLERS, StepInfo, sample, time_pairs

__all__ = ["sample", "time_pairs", "StepInfo", "SAMPLERS"]
