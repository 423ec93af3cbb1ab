"""Non-causal Transformer denoisers of token sequences: analog bits (Bit Diffusion) and absorbing-state one-hots.

The network is the captioning decoder of :mod:`bitcompose.nets.caption` without the image (paper §3.1; the
same construction as the text models of CoBit and of the masked-diffusion libraries): every position is embedded
from its input code (``Linear(C_in → d)``), plus a learned position embedding and the noise-level embedding
(sinusoidal of ``1000·γ`` → MLP), optionally plus a learned class embedding (one extra "null" row for label
dropout and classifier-free guidance), then ``depth`` pre-norm Transformer layers with full self-attention over
the ``L`` positions, and a head with ``V`` logits per position.

- :class:`SeqBitsNet` (``model="bits"``): input ``[B, L, nb]`` analog bits (``[B, L, 2·nb]`` with the
  self-conditioning estimate), output the x0 estimate ``[B, L, nb]``: the softmax over the ``V`` logits → expected
  analog code under the codec's code table (the softmax-factorised head of the paper's pixel models). It is the
  ``net(x_in, gamma, cond)`` that :class:`bitcompose.BitDenoiser` expects with ``channel_dim=-1``.
- :class:`SeqMaskedNet` (``model="masked"``): input one-hot codes ``[B, V, L]`` (masked positions all zeros, the
  layout :mod:`bitcompose.diffusion.masked` uses: channels second), output ``V`` logits ``[B, V, L]``; it is the
  ``net`` of :class:`bitcompose.diffusion.masked.MaskedDenoiser`.
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
    "SEQ_MODELS",
    "SeqNetConfig",
    "SeqBitsNet",
    "SeqMaskedNet",
    "SeqPoolNet",
    "seq_net_config",
    "build_seq_net",
]

#: The two kinds of sequence model.
SEQ_MODELS = ("bits", "masked")


@dataclass(frozen=True)
class SeqNetConfig(Config):
    """Sizes of a sequence denoiser.

    Attributes:
        vocab_size: ``V``, token ids (the end token included).
        max_len: ``L``, positions.
        model: ``"bits"`` (analog bits) or ``"masked"`` (absorbing-state one-hots).
        dim, depth, heads, mlp_ratio, dropout: the Transformer's width, layers, heads, MLP width / ``d``, dropout.
        encoding, bit_scale: the :class:`~bitcompose.core.bits.BitCodec` of the ids (``"bits"`` only; the masked
            model always reads one-hot codes of scale ``bit_scale``).
        self_condition: whether the bits input carries the self-conditioning estimate (``"bits"`` only).
        num_classes: class labels for conditioning (0 = unconditional); label ``−1`` is the null class.
    """

    vocab_size: int
    max_len: int
    model: str = "bits"
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    encoding: str = "binary"
    bit_scale: float = 1.0
    self_condition: bool = True
    num_classes: int = 0
    codec: BitCodec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.model not in SEQ_MODELS:
            raise ValueError(f"model must be one of {SEQ_MODELS}, got {self.model!r}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.dim % 2 or self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be even and divisible by heads={self.heads}")
        if self.depth < 1 or self.num_classes < 0:
            raise ValueError("depth must be >= 1 and num_classes >= 0")
        encoding = self.encoding if self.model == "bits" else "onehot"
        object.__setattr__(self, "codec", BitCodec(self.vocab_size, encoding, self.bit_scale))

    @property
    def in_channels(self) -> int:
        """Input channels per position: ``nb`` (``2·nb`` with self-conditioning) or ``V`` (masked)."""
        if self.model == "masked":
            return self.vocab_size
        return self.codec.num_bits * (2 if self.self_condition else 1)


def seq_net_config(name: str, vocab_size: int, max_len: int, **overrides: Any) -> SeqNetConfig:
    """Named sizes: ``"tiny"`` (tests), ``"small"`` (the CPU presets), ``"base"`` (a GPU size, 12 × 768).

    Args:
        name: size name.
        vocab_size, max_len: the data's ``V`` and ``L``.
        **overrides: any other :class:`SeqNetConfig` field.
    """
    sizes: dict[str, dict[str, Any]] = {
        "tiny": dict(dim=32, depth=1, heads=2, mlp_ratio=2),
        "small": dict(dim=128, depth=4, heads=4),
        "medium": dict(dim=256, depth=6, heads=8),
        "base": dict(dim=768, depth=12, heads=12),
    }
    if name not in sizes:
        raise ValueError(f"unknown sequence net size {name!r}; expected one of {', '.join(sizes)}")
    return SeqNetConfig(vocab_size=vocab_size, max_len=max_len, **{**sizes[name], **overrides})


class _SeqTransformer(nn.Module):
    """Codes ``[B, L, C_in]`` + noise level ``[B]`` (+ labels ``[B]``) → logits ``[B, L, V]``."""

    def __init__(self, config: SeqNetConfig, out_features: int | None = None) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.in_proj = nn.Linear(config.in_channels, d)
        self.pos = nn.Parameter(torch.randn(1, config.max_len, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
        self.class_embedding = nn.Embedding(config.num_classes + 1, d) if config.num_classes else None
        layer = nn.TransformerEncoderLayer(
            d,
            config.heads,
            config.mlp_ratio * d,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size if out_features is None else out_features)

    def _class_rows(self, cond: Any, batch: int) -> Tensor | None:
        cfg = self.config
        if self.class_embedding is None:
            if cond is not None:
                raise ValueError("this sequence model is unconditional (num_classes=0) but labels were given")
            return None
        if cond is None:
            return torch.full((batch,), cfg.num_classes, dtype=torch.long, device=self.pos.device)
        if not isinstance(cond, Tensor) or cond.is_floating_point() or cond.shape != (batch,):
            raise ValueError(
                f"labels must be an integer tensor [B]=[{batch}], got {getattr(cond, 'shape', cond)}"
            )
        if bool(((cond < -1) | (cond >= cfg.num_classes)).any()):
            raise ValueError(f"labels must lie in [-1, {cfg.num_classes - 1}] (-1 = no label)")
        return torch.where(cond < 0, torch.full_like(cond, cfg.num_classes), cond)

    def forward(self, codes: Tensor, gamma: Tensor, cond: Any = None) -> Tensor:
        return self.head(self.encode(codes, gamma, cond))

    def encode(self, codes: Tensor, gamma: Tensor, cond: Any = None) -> Tensor:
        """The normalised features ``[B, L, d]`` of the last layer."""
        cfg = self.config
        if codes.ndim != 3 or codes.shape[1:] != (cfg.max_len, cfg.in_channels):
            raise ValueError(
                f"input must have shape [B, {cfg.max_len}, {cfg.in_channels}], got {tuple(codes.shape)}"
            )
        if gamma.shape != (codes.shape[0],):
            raise ValueError(f"gamma must have shape [B]=[{codes.shape[0]}], got {tuple(gamma.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(gamma * 1000.0, cfg.dim).to(codes.dtype))
        rows = self._class_rows(cond, codes.shape[0])
        if rows is not None:
            assert self.class_embedding is not None
            emb = emb + self.class_embedding(rows)
        h = self.in_proj(codes) + self.pos + emb[:, None, :]
        return self.out_norm(self.layers(h))


class SeqBitsNet(_SeqTransformer):
    """The Bit Diffusion denoiser of sequences: ``forward(x_in [B, L, C_in], gamma [B], labels)`` → x0 estimate
    ``[B, L, nb]`` (the expected analog code of the softmax over ``V``, inside ``[−b, b]``)."""

    def __init__(self, config: SeqNetConfig) -> None:
        if config.model != "bits":
            raise ValueError("SeqBitsNet needs a config with model='bits'")
        super().__init__(config)
        self.register_buffer("code_table", config.codec.code_table(), persistent=False)

    def forward_with_logits(self, x_in: Tensor, gamma: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
        """``(x0 estimate [B, L, nb], vocabulary logits [B, L, V])``."""
        logits = super().forward(x_in, gamma, cond)
        table: Tensor = self.code_table  # type: ignore[assignment]
        return F.softmax(logits.float(), dim=-1) @ table.to(logits.device), logits

    def forward(self, x_in: Tensor, gamma: Tensor, cond: Any = None) -> Tensor:
        """The x0 estimate ``[B, L, nb]``."""
        return self.forward_with_logits(x_in, gamma, cond)[0]


class SeqMaskedNet(_SeqTransformer):
    """The absorbing-state denoiser of sequences: ``forward(codes [B, V, L], gamma [B], labels)`` → logits
    ``[B, V, L]`` (channels second, as :mod:`bitcompose.diffusion.masked` lays codes out)."""

    def __init__(self, config: SeqNetConfig) -> None:
        if config.model != "masked":
            raise ValueError("SeqMaskedNet needs a config with model='masked'")
        super().__init__(config)

    def forward(self, codes: Tensor, gamma: Tensor, cond: Any = None) -> Tensor:
        """Logits ``[B, V, L]`` of the partly masked one-hot codes ``[B, V, L]``."""
        return super().forward(codes.transpose(1, 2), gamma, cond).transpose(1, 2)


class SeqPoolNet(_SeqTransformer):
    """A noise-conditioned predictor of whole sequences: ``forward(x_t [B, L, nb], gamma [B])`` → ``out_features``
    logits ``[B, out_features]`` of the mean of the last layer's features over the positions (the property
    predictor of classifier guidance; ``config.self_condition`` must be false: it reads ``x_t`` alone)."""

    def __init__(self, config: SeqNetConfig, out_features: int) -> None:
        if config.model != "bits" or config.self_condition or config.num_classes:
            raise ValueError("SeqPoolNet needs an unconditional bits config without self-conditioning")
        super().__init__(config, out_features)

    def forward(self, codes: Tensor, gamma: Tensor, cond: Any = None) -> Tensor:
        """Logits ``[B, out_features]``."""
        return self.head(self.encode(codes, gamma, cond).mean(dim=1))


def build_seq_net(config: SeqNetConfig) -> SeqBitsNet | SeqMaskedNet:
    """A fresh network of ``config.model``."""
    return SeqBitsNet(config) if config.model == "bits" else SeqMaskedNet(config)
