"""Building blocks of the paper-style U-Net: residual block with FiLM, self-attention, down/up-sampling.

They follow the official Bit Diffusion ``TransUNet`` (pix2seq ``architectures/transunet.py``): GroupNorm
everywhere, a FiLM ``(1 + scale)·h + shift`` from the noise-level embedding, residual sums scaled by
1/√2, and near-zero initialisation of the last convolution of each residual branch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttentionBlock", "Downsample", "ResBlock", "Upsample", "near_zero_init_"]

#: Variance scale of the "near-zero" initialisation (the official code uses VarianceScaling(1e-10)).
#: The weights are tiny but not exactly zero, so gradients reach every layer from the first step.
NEAR_ZERO_SCALE = 1e-10

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def near_zero_init_(layer: nn.Conv2d | nn.Linear, scale: float = NEAR_ZERO_SCALE) -> None:
    """Initialise ``layer`` in place with N(0, scale/fan_in) weights and zero bias."""
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, mean=0.0, std=math.sqrt(scale / fan_in))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ResBlock(nn.Module):
    """GN → SiLU → conv3×3 → GN → FiLM → SiLU → dropout → conv3×3, plus a (1×1 conv) skip, sum / √2.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        emb_dim: width of the noise-level embedding.
        num_groups: GroupNorm groups (must divide both channel counts).
        dropout: dropout probability before the second convolution.
    """

    def __init__(
        self, in_channels: int, out_channels: int, emb_dim: int, num_groups: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        near_zero_init_(self.conv2)
        self.skip: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x``: ``[B, in, H, W]``; ``emb``: ``[B, emb_dim]``. Returns ``[B, out, H, W]``."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return (h + self.skip(x)) * _INV_SQRT2


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention over the H·W positions, residual scaled by 1/√2.

    Args:
        channels: feature channels.
        per_head_dim: target width of one head; ``max(1, channels // per_head_dim)`` heads are used.
        num_groups: GroupNorm groups.
    """

    def __init__(self, channels: int, per_head_dim: int, num_groups: int) -> None:
        super().__init__()
        self.num_heads = max(1, channels // per_head_dim)
        if channels % self.num_heads:
            raise ValueError(
                f"attention with {channels} channels and per_head_dim={per_head_dim} gives {self.num_heads} "
                "heads, which do not divide the channels"
            )
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[B, C, H, W]``; returns the same shape.

        The 1×1 convolutions are applied as matrix products on the ``[B, H·W, C]`` tokens, so that q, k and v
        come out with a contiguous head dimension (what the fused attention kernels need).
        """
        b, c, hgt, wid = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, L, C]
        qkv = F.linear(tokens, self.qkv.weight.flatten(1), self.qkv.bias)  # [B, L, 3C]
        # [B, L, 3, heads, d] -> three tensors [B, heads, L, d]
        q, k, v = (
            qkv.reshape(b, hgt * wid, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        )
        if x.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
            # at least fp32 on the CPU: its fused bf16 attention (backward) is slower than fp32
            with torch.autocast("cpu", enabled=False):
                out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, hgt * wid, c)
        out = F.linear(out, self.proj.weight.flatten(1), self.proj.bias)  # [B, L, C]
        return (x + out.transpose(1, 2).reshape(b, c, hgt, wid)) * _INV_SQRT2


class Downsample(nn.Module):
    """Stride-2 3×3 convolution: ``[B, C, H, W] -> [B, C, H/2, W/2]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling then a 3×3 convolution: ``[B, C, H, W] -> [B, C, 2H, 2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
