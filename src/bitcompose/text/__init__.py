"""Text for Bit Diffusion captioning: a SentencePiece tokenizer and the captions ↔ analog bits glue."""

from __future__ import annotations

from bitcompose.text.token_bits import DecodedCaptions, TokenBits
from bitcompose.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CaptionTokenizer, train_tokenizer

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "UNK_ID",
    "CaptionTokenizer",
    "DecodedCaptions",
    "TokenBits",
    "train_tokenizer",
]
