"""The paper-style U-Net of Bit Diffusion (the official ``TransUNet`` without transformer blocks).

Layout (pix2seq ``architectures/transunet.py``, described in Chen, Zhang & Hinton 2023 §3.1; our own code):

* conv_in 3×3;
* down path: per stage ``num_res_blocks`` residual blocks (each followed by self-attention when the stage's
  resolution is in ``attn_resolutions``), then a stride-2 3×3 conv, except after the last stage;
* no middle block;
* up path: per stage ``num_res_blocks + 1`` residual blocks, each taking a skip (the outputs of conv_in, of
  every down-path block and of every downsample, consumed in reverse order) concatenated on channels;
  nearest upsample + 3×3 conv between stages;
* output GroupNorm → SiLU → conv3×3 with near-zero initialisation, so the initial output is ≈ 0.

The network is conditioned on the noise level γ(t) (not t) and, optionally, on a class label
(see :mod:`bitcompose.nets.embeddings`). Its signature ``net(x_in, gamma, cond)`` is the one ``BitDenoiser``
expects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.nets.blocks import AttentionBlock, Downsample, ResBlock, Upsample, near_zero_init_
from bitcompose.nets.embeddings import NoiseLevelEmbedding
from bitcompose.nets.unet_config import UNetConfig, unet_config

__all__ = ["UNet", "UNetConfig", "count_parameters", "unet_config"]


def count_parameters(module: nn.Module) -> int:
    """Total number of parameters (trainable or not) of ``module``; works on the ``meta`` device."""
    return sum(p.numel() for p in module.parameters())


class _Stage(nn.Module):
    """Residual blocks, each optionally followed by attention (applied pair by pair)."""

    def __init__(self, blocks: list[ResBlock], attns: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)


class UNet(nn.Module):
    """Paper-style U-Net predicting analog bits.

    Args:
        config: the architecture.
        code_table: float tensor ``[K, nb]`` of the codes (``BitCodec.code_table()``); required for, and only
            accepted with, ``output_head="softmax"``, where ``K = softmax_num_values`` and
            ``nb = data_channels / softmax_groups``.

    Example:
        >>> net = UNet(unet_config("tiny"))
        >>> out = net(torch.zeros(2, 10, 8, 8), torch.rand(2), None)   # -> [2, 5, 8, 8]
    """

    def __init__(self, config: UNetConfig, code_table: Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.code_table: Tensor | None
        if config.output_head == "softmax":
            expected = (config.softmax_num_values, config.bits_per_group)
            if code_table is None:
                raise ValueError(
                    "output_head='softmax' needs code_table=codec.code_table() of shape "
                    f"[K, nb]={list(expected)}"
                )
            if tuple(code_table.shape) != expected or not code_table.dtype.is_floating_point:
                raise ValueError(
                    f"code_table must be a float tensor of shape [K, nb]={list(expected)}, got "
                    f"{tuple(code_table.shape)} ({code_table.dtype})"
                )
            self.register_buffer("code_table", code_table.detach().clone().float())
        else:
            if code_table is not None:
                raise ValueError("code_table is only used with output_head='softmax'")
            self.code_table = None

        ch0 = config.base_channels
        groups = config.num_groups
        self.embedding = NoiseLevelEmbedding(ch0, config.num_classes, config.time_scaling)
        emb_dim = self.embedding.out_dim
        self.conv_in = nn.Conv2d(config.in_channels, ch0, 3, padding=1)

        def attention(channels: int, res: int) -> nn.Module:
            if res in config.attn_resolutions:
                return AttentionBlock(channels, config.per_head_dim, groups)
            return nn.Identity()

        # Down path.
        skip_channels = [ch0]
        ch = ch0
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for stage, (mult, res) in enumerate(zip(config.channel_mults, config.resolutions, strict=True)):
            blocks, attns = [], []
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(ch, ch0 * mult, emb_dim, groups, config.dropout))
                ch = ch0 * mult
                attns.append(attention(ch, res))
                skip_channels.append(ch)
            self.down.append(_Stage(blocks, attns))
            if stage < config.num_stages - 1:
                self.downsample.append(Downsample(ch))
                skip_channels.append(ch)

        # Up path (stages from the lowest resolution up).
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for stage in reversed(range(config.num_stages)):
            mult, res = config.channel_mults[stage], config.resolutions[stage]
            blocks, attns = [], []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock(ch + skip_channels.pop(), ch0 * mult, emb_dim, groups, config.dropout))
                ch = ch0 * mult
                attns.append(attention(ch, res))
            self.up.append(_Stage(blocks, attns))
            if stage > 0:
                self.upsample.append(Upsample(ch))
        assert not skip_channels, "every skip connection must be consumed"

        self.norm_out = nn.GroupNorm(groups, ch)
        self.conv_out = nn.Conv2d(ch, config.head_channels, 3, padding=1)
        near_zero_init_(self.conv_out)

    def _check_inputs(self, x_in: Tensor, gamma: Tensor) -> Tensor:
        cfg = self.config
        expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if x_in.dim() != 4 or tuple(x_in.shape[1:]) != expected:
            sc = " (self_condition=True: x_t and the estimate concatenated)" if cfg.self_condition else ""
            raise ValueError(
                f"UNet expects x_in of shape [B, {', '.join(map(str, expected))}]{sc}, got "
                f"{tuple(x_in.shape)}"
            )
        batch = x_in.shape[0]
        if gamma.dim() == 0:
            gamma = gamma.expand(batch)
        if gamma.shape != (batch,):
            raise ValueError(
                f"gamma must have shape [B]=[{batch}] (or be a scalar), got {tuple(gamma.shape)}"
            )
        return gamma.to(device=x_in.device, dtype=torch.float32)

    def logits(self, x_in: Tensor, gamma: Tensor, cond: Tensor | None = None) -> Tensor:
        """Raw output of the last convolution.

        Args:
            x_in: ``[B, in_channels, H, W]``.
            gamma: ``[B]`` noise levels γ(t) (a scalar is broadcast).
            cond: integer labels ``[B]`` (``-1`` = null class) or None.

        Returns:
            ``[B, data_channels, H, W]`` for the linear head (the prediction itself), or
            ``[B, softmax_groups·K, H, W]`` logits for the softmax head (group g in channels
            ``g·K … g·K+K−1``).
        """
        gamma = self._check_inputs(x_in, gamma)
        emb = self.embedding(gamma, cond)
        h = self.conv_in(x_in)
        skips = [h]
        for stage, down in enumerate(self.down):
            assert isinstance(down, _Stage)
            for block, attn in zip(down.blocks, down.attns, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
            if stage < len(self.downsample):
                h = self.downsample[stage](h)
                skips.append(h)
        for i, up in enumerate(self.up):
            assert isinstance(up, _Stage)
            for block, attn in zip(up.blocks, up.attns, strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def forward(self, x_in: Tensor, gamma: Tensor, cond: Tensor | None = None) -> Tensor:
        """Predict the analog bits.

        Args:
            x_in: ``[B, in_channels, H, W]``: x_t, followed by the self-conditioning estimate when
                ``config.self_condition``.
            gamma: ``[B]`` noise levels γ(t) in [0, 1].
            cond: integer labels ``[B]`` (``-1`` = null class) or None (all null); must be None when
                ``num_classes == 0``.

        Returns:
            ``[B, data_channels, H, W]``. With the softmax head it is ``softmax(logits) @ code_table`` per
            group (group g in channels ``g·nb … g·nb+nb−1``, the layout of ``BitCodec.encode_images``), hence
            within the code table's range.
        """
        out = self.logits(x_in, gamma, cond)
        if self.code_table is None:
            return out
        cfg = self.config
        b, _, hgt, wid = out.shape
        probs = out.reshape(b, cfg.softmax_groups, cfg.softmax_num_values, hgt, wid).softmax(dim=2)
        bits = torch.einsum("bgkhw,kn->bgnhw", probs, self.code_table.to(probs.dtype))
        return bits.reshape(b, cfg.data_channels, hgt, wid)
