"""Captioning networks for Bit Diffusion: a small CNN image encoder and a non-causal Transformer bit decoder.

The paper (Chen, Zhang & Hinton 2023, §3.1 "image captioning") pairs a Pix2Seq image encoder with a randomly
initialised 6-layer, 512-wide Transformer decoder. For Bit Diffusion the decoder uses **full (non-causal)
self-attention** over the ``L`` caption positions; each position is embedded from its analog bits ``x_t``
concatenated with the self-conditioning estimate (``Linear(2·nb → d)``), plus a learned position embedding and the
noise-level embedding (sinusoidal of ``1000·γ`` → MLP, as the official ``ScalarEmbedding``), and cross-attends to
the image tokens. The output is the x0 estimate of the bits, either from a linear layer or from a
**softmax-factorised vocabulary head** (softmax over the ``V`` token ids → expected analog code under the codec's
code table; paper §3.1 for pixels, SCD-Net for tokens).

:class:`CaptionDiffusionNet` has the ``net(x_in, gamma, cond)`` signature that :class:`bitcompose.BitDenoiser`
expects with ``channel_dim=-1``; ``cond`` is either images ``[B, 3, H, W]`` or features from :meth:`encode`
``[B, N, d]`` (so a sampler can encode the images once and reuse the features at every step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.core.bits import BitCodec
from bitcompose.core.config import Config
from bitcompose.nets.embeddings import sinusoidal_embedding

__all__ = [
    "CaptionNetConfig",
    "ImageEncoder",
    "DecoderLayer",
    "CaptionDiffusionNet",
    "caption_net_config",
]

OUTPUT_HEADS = ("linear", "softmax")


@dataclass(frozen=True)
class CaptionNetConfig(Config):
    """Sizes of the image encoder and of the caption decoder (shared by the diffusion and the AR model).

    Attributes:
        vocab_size: tokenizer vocabulary size ``V`` (the codec's alphabet).
        max_len: caption length ``L`` in tokens (padded).
        image_size: square image side (divisible by ``2**len(encoder_channels)``).
        image_channels: image channels (3 for RGB).
        encoder_channels: CNN widths; each stage halves the resolution (32 → 8 with two stages).
        dim: Transformer width ``d``.
        depth: number of decoder layers.
        heads: attention heads (must divide ``dim``).
        mlp_ratio: MLP hidden width / ``d``.
        dropout: dropout in the decoder (attention and MLP).
        encoding: BitCodec encoding of token ids (diffusion only).
        bit_scale: analog bit scale ``b`` (diffusion only).
        self_condition: whether the diffusion input carries the self-conditioning bits (``2·nb`` inputs).
        output_head: ``"linear"`` (``d → nb``) or ``"softmax"`` (softmax over ``V`` ids → expected code).
    """

    vocab_size: int
    max_len: int
    image_size: int = 32
    image_channels: int = 3
    encoder_channels: tuple[int, ...] = (32, 64)
    dim: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    encoding: str = "binary"
    bit_scale: float = 1.0
    self_condition: bool = True
    output_head: str = "softmax"
    codec: BitCodec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.dim % self.heads:
            raise ValueError(f"heads={self.heads} must divide dim={self.dim}")
        if self.dim % 2:
            raise ValueError(f"dim must be even, got {self.dim}")
        if not self.encoder_channels:
            raise ValueError("encoder_channels must name at least one stage")
        if self.image_size % (2 ** len(self.encoder_channels)):
            raise ValueError(
                f"image_size={self.image_size} is not divisible by 2**{len(self.encoder_channels)} "
                f"(one halving per encoder stage)"
            )
        if self.output_head not in OUTPUT_HEADS:
            raise ValueError(f"output_head must be one of {OUTPUT_HEADS}, got {self.output_head!r}")
        object.__setattr__(self, "encoder_channels", tuple(int(c) for c in self.encoder_channels))
        object.__setattr__(self, "codec", BitCodec(self.vocab_size, self.encoding, self.bit_scale))

    @property
    def num_bits(self) -> int:
        """Analog bits per token (``⌈log2 V⌉`` for binary/gray/random codes)."""
        return self.codec.num_bits

    @property
    def grid(self) -> int:
        """Side of the image-token grid (``image_size / 2**stages``)."""
        return self.image_size // 2 ** len(self.encoder_channels)


def caption_net_config(name: str, vocab_size: int, max_len: int, **overrides: Any) -> CaptionNetConfig:
    """Named sizes: ``"tiny"`` (tests), ``"small"`` (CPU presets), ``"paper"`` (6 layers × 512, paper §3.1).

    Args:
        name: size name.
        vocab_size: tokenizer vocabulary size.
        max_len: caption length in tokens.
        **overrides: any other :class:`CaptionNetConfig` field.
    """
    sizes: dict[str, dict[str, Any]] = {
        "tiny": dict(encoder_channels=(8, 16), dim=32, depth=1, heads=2, mlp_ratio=2),
        "small": dict(encoder_channels=(16, 32), dim=128, depth=3, heads=4),
        "medium": dict(encoder_channels=(32, 64), dim=192, depth=4, heads=4),
        "paper": dict(encoder_channels=(64, 128, 256), dim=512, depth=6, heads=8),
    }
    if name not in sizes:
        raise ValueError(f"unknown caption net size {name!r}; expected one of {', '.join(sizes)}")
    kw = {**sizes[name], **overrides}
    return CaptionNetConfig(vocab_size=vocab_size, max_len=max_len, **kw)


class _ConvBlock(nn.Module):
    """GN → SiLU → conv3×3 → GN → SiLU → conv3×3 with an identity skip (``[B, C, H, W]`` → same)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        groups = 8 if channels % 8 == 0 else 1
        self.body = nn.Sequential(
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ImageEncoder(nn.Module):
    """Small CNN: images ``[B, C, H, W]`` (values in about [−1, 1]) → image tokens ``[B, g·g, d]``.

    A 3×3 stem, then per stage a stride-2 convolution followed by a residual conv block (computing at the lower
    resolutions keeps it cheap on a CPU), a 1×1 projection to ``d``; a learned position embedding is added to the ``g × g`` grid of tokens (``g = H / 2**stages``), then LayerNorm.
    """

    def __init__(self, config: CaptionNetConfig) -> None:
        super().__init__()
        chans = config.encoder_channels
        layers: list[nn.Module] = [nn.Conv2d(config.image_channels, chans[0], 3, padding=1)]
        prev = chans[0]
        for c in chans:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), _ConvBlock(c)]
            prev = c
        layers += [nn.GroupNorm(8 if prev % 8 == 0 else 1, prev), nn.SiLU(), nn.Conv2d(prev, config.dim, 1)]
        self.cnn = nn.Sequential(*layers)
        self.pos = nn.Parameter(torch.randn(1, config.grid * config.grid, config.dim) * 0.02)
        self.norm = nn.LayerNorm(config.dim)
        self.image_size = config.image_size
        self.image_channels = config.image_channels

    def forward(self, images: Tensor) -> Tensor:
        """``images``: float ``[B, C, H, W]``. Returns float ``[B, g·g, d]``."""
        if images.ndim != 4 or images.shape[1:] != (self.image_channels, self.image_size, self.image_size):
            raise ValueError(
                f"images must have shape [B, {self.image_channels}, {self.image_size}, {self.image_size}], "
                f"got {tuple(images.shape)}"
            )
        h = self.cnn(images.float())
        h = h.flatten(2).transpose(1, 2)
        return self.norm(h + self.pos)


class DecoderLayer(nn.Module):
    """Pre-norm Transformer decoder layer: self-attention (causal or not), cross-attention, MLP.

    Args:
        dim: width ``d``.
        heads: attention heads.
        mlp_ratio: MLP hidden width / ``d``.
        dropout: dropout probability.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: Tensor, memory: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x``: ``[B, L, d]``; ``memory``: ``[B, N, d]``; ``attn_mask``: bool ``[L, L]`` (True = blocked)."""
        h = self.norm1(x)
        x = x + self.self_attn(h, h, h, attn_mask=attn_mask, need_weights=False)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, memory, memory, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class CaptionDiffusionNet(nn.Module):
    """Image encoder + non-causal Transformer decoder over caption analog bits.

    ``forward(x_in, gamma, cond)`` → x0 estimate ``[B, L, nb]``, a valid ``net`` for
    ``BitDenoiser(net, channel_dim=-1, self_condition=config.self_condition)``.
    """

    def __init__(self, config: CaptionNetConfig) -> None:
        super().__init__()
        self.config = config
        nb = config.num_bits
        d = config.dim
        self.encoder = ImageEncoder(config)
        self.in_proj = nn.Linear(nb * (2 if config.self_condition else 1), d)
        self.pos = nn.Parameter(torch.randn(1, config.max_len, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
        self.layers = nn.ModuleList(
            DecoderLayer(d, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.out_norm = nn.LayerNorm(d)
        self.head: nn.Linear
        if config.output_head == "softmax":
            self.head = nn.Linear(d, config.vocab_size)
            self.register_buffer("code_table", config.codec.code_table(), persistent=False)
        else:
            self.head = nn.Linear(d, nb)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def encode(self, images: Tensor) -> Tensor:
        """Image tokens ``[B, N, d]`` from images ``[B, C, H, W]`` (pass them as ``cond`` to skip re-encoding)."""
        return self.encoder(images)

    def _memory(self, cond: Tensor | None, batch: int) -> Tensor:
        if cond is None:
            raise ValueError(
                "CaptionDiffusionNet needs cond: images [B, C, H, W] or image features [B, N, d]"
            )
        memory = self.encode(cond) if cond.ndim == 4 else cond
        if memory.ndim != 3 or memory.shape[0] != batch or memory.shape[2] != self.config.dim:
            raise ValueError(
                f"cond must be images [B, C, H, W] or features [B, N, {self.config.dim}] with B={batch}, "
                f"got {tuple(cond.shape)}"
            )
        return memory

    def logits(self, x_in: Tensor, gamma: Tensor, cond: Tensor | None) -> Tensor:
        """Pre-head hidden states mapped by the head: ``[B, L, V]`` (softmax head) or ``[B, L, nb]`` (linear)."""
        cfg = self.config
        expected = cfg.num_bits * (2 if cfg.self_condition else 1)
        if x_in.ndim != 3 or x_in.shape[1] != cfg.max_len or x_in.shape[2] != expected:
            raise ValueError(
                f"x_in must have shape [B, {cfg.max_len}, {expected}] (bits{' + self-cond bits' * cfg.self_condition}),"
                f" got {tuple(x_in.shape)}"
            )
        if gamma.shape != (x_in.shape[0],):
            raise ValueError(f"gamma must have shape [B]=[{x_in.shape[0]}], got {tuple(gamma.shape)}")
        memory = self._memory(cond, x_in.shape[0])
        temb = self.time_mlp(sinusoidal_embedding(gamma * 1000.0, cfg.dim).to(x_in.dtype))
        h = self.in_proj(x_in) + self.pos + temb[:, None, :]
        for layer in self.layers:
            h = layer(h, memory)
        return self.head(self.out_norm(h))

    def forward(self, x_in: Tensor, gamma: Tensor, cond: Tensor | None = None) -> Tensor:
        """x0 estimate of the caption bits.

        Args:
            x_in: float ``[B, L, 2·nb]`` (``x_t`` and self-cond estimate) or ``[B, L, nb]`` without self-cond.
            gamma: float ``[B]``, the noise level γ(t).
            cond: images ``[B, C, H, W]`` or image tokens ``[B, N, d]``.

        Returns:
            float ``[B, L, nb]``; with the softmax head it is the expected analog code, inside ``[−b, b]``.
        """
        return self.forward_with_logits(x_in, gamma, cond)[0]

    def forward_with_logits(
        self, x_in: Tensor, gamma: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x0 estimate [B, L, nb], head output)``: the head output is the vocabulary logits ``[B, L, V]`` of the
        softmax head (for an auxiliary cross-entropy, or an argmax read-out), or the x0 estimate itself."""
        out = self.logits(x_in, gamma, cond)
        if self.config.output_head == "softmax":
            table: Tensor = self.code_table  # type: ignore[assignment]
            return F.softmax(out.float(), dim=-1) @ table.to(out.device), out
        return out, out
