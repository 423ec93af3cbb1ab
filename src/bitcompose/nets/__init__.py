"""Networks: the paper-style U-Net for Bit Diffusion (and, elsewhere in this package, other denoisers)."""

from __future__ import annotations

from bitcompose.nets.unet import UNet, UNetConfig, count_parameters, unet_config

__all__ = ["UNet", "UNetConfig", "count_parameters", "unet_config"]
