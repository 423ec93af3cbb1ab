"""Captions ↔ analog bits: tokenizer + :class:`~bitcompose.core.bits.BitCodec` + a fixed sequence length.

Bit Diffusion §3.1: a caption becomes ``L`` token ids (here: truncated to ``L − 1``, then EOS, then PAD), and each
id becomes ``⌈log2 V⌉`` analog bits, so a caption is a ``[L, nb]`` array in ``{−b, +b}``. Decoding thresholds the
bits, and a bit pattern that names no token (an id ``>= V`` when ``V`` is not a power of two) is clamped to
``V − 1`` by the codec and counted (the paper is silent; SCD-Net also clamps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor

from bitcompose.core.bits import BitCodec
from bitcompose.text.tokenizer import CaptionTokenizer

__all__ = ["DecodedCaptions", "TokenBits"]


class DecodedCaptions(NamedTuple):
    """Result of :meth:`TokenBits.decode`.

    Attributes:
        texts: ``B`` decoded captions (each stops at its first EOS/PAD).
        ids: long ``[B, L]`` token ids after clamping (all in ``[0, V)``).
        num_invalid: number of positions (all ``B·L``, also those after EOS) whose bit pattern was not a token.
        invalid: bool ``[B, L]`` mask of those positions.
    """

    texts: list[str]
    ids: Tensor
    num_invalid: int
    invalid: Tensor


@dataclass(frozen=True)
class TokenBits:
    """Captions ↔ analog bits ``float [B, L, num_bits]``.

    Args:
        tokenizer: a :class:`CaptionTokenizer` with ``V = tokenizer.vocab_size`` ids.
        codec: a :class:`BitCodec` with ``num_values == V`` (binary, gray or random; one-hot also works).
        length: ``L``, tokens per caption (EOS included).

    Example:
        >>> tb = TokenBits.create(tok, length=24, encoding="gray")  # doctest: +SKIP
        >>> bits = tb.encode(["a small red circle"])  # float [1, 24, 6] for V = 38
        >>> tb.decode(bits).texts  # ['a small red circle']
    """

    tokenizer: CaptionTokenizer
    codec: BitCodec
    length: int

    def __post_init__(self) -> None:
        if not isinstance(self.tokenizer, CaptionTokenizer):
            raise ValueError(f"tokenizer must be a CaptionTokenizer, got {type(self.tokenizer).__name__}")
        if not isinstance(self.codec, BitCodec):
            raise ValueError(f"codec must be a BitCodec, got {type(self.codec).__name__}")
        if self.codec.num_values != self.tokenizer.vocab_size:
            raise ValueError(
                f"codec.num_values ({self.codec.num_values}) must equal the tokenizer's vocab_size "
                f"({self.tokenizer.vocab_size})"
            )
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ValueError(f"length must be a positive integer, got {self.length!r}")

    @classmethod
    def create(
        cls, tokenizer: CaptionTokenizer, length: int, encoding: str = "binary", scale: float = 1.0
    ) -> TokenBits:
        """Build the codec for ``tokenizer.vocab_size`` values with the given encoding and bit scale."""
        return cls(
            tokenizer, BitCodec(num_values=tokenizer.vocab_size, encoding=encoding, scale=scale), length
        )

    @property
    def num_bits(self) -> int:
        """Analog bits per token (``⌈log2 V⌉``; ``V`` for one-hot)."""
        return self.codec.num_bits

    @property
    def shape(self) -> tuple[int, int]:
        """Per-caption shape ``(L, num_bits)`` (the sample shape is ``(B, L, num_bits)``)."""
        return (self.length, self.num_bits)

    def encode_ids(self, texts: Sequence[str]) -> Tensor:
        """Captions → ids long ``[B, L]`` (truncate to ``L − 1``, EOS, pad)."""
        return self.tokenizer.encode_batch(texts, self.length)

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Captions → analog bits float32 ``[B, L, num_bits]`` in ``{−scale, +scale}``."""
        return self.codec.encode_sequence(self.encode_ids(texts))

    def decode(self, bits: Tensor) -> DecodedCaptions:
        """Analog bits float ``[B, L, num_bits]`` (any reals; only the signs matter) → captions.

        Returns:
            :class:`DecodedCaptions` ``(texts, ids, num_invalid, invalid)``.
        """
        if isinstance(bits, Tensor) and bits.ndim == 3 and bits.shape[1] != self.length:
            raise ValueError(
                f"expected bits of shape [B, {self.length}, {self.num_bits}], got {tuple(bits.shape)}"
            )
        ids, invalid = self.codec.decode_sequence(bits, return_invalid=True)
        return DecodedCaptions(self.tokenizer.decode_batch(ids), ids, int(invalid.sum()), invalid)
