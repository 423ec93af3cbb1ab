"""Tokenizer glue for the captioning runs (the tokenizer itself is :mod:`bitcompose.text.tokenizer`)."""

from __future__ import annotations

from pathlib import Path

from bitcompose.text.tokenizer import CaptionTokenizer
from bitcompose.text.tokenizer import train_tokenizer as _train_spm

__all__ = ["train_tokenizer", "load_tokenizer"]


def train_tokenizer(
    captions: list[list[str]], vocab_size: int, path: str | Path, model_type: str = "word"
) -> CaptionTokenizer:
    """Train a SentencePiece tokenizer on every reference caption and write it to ``path``.

    Args:
        captions: ``N`` lists of reference captions.
        vocab_size: upper bound on the number of ids (specials included).
        path: where the ``.model`` file goes.
        model_type: SentencePiece model type (``"word"`` suits the synthetic scenes: one id per word).
    """
    flat = [c for caps in captions for c in caps]
    return _train_spm(flat, vocab_size=vocab_size, model_type=model_type, path=path)


def load_tokenizer(path: str | Path) -> CaptionTokenizer:
    """Load a tokenizer written by :func:`train_tokenizer` (``FileNotFoundError`` when missing)."""
    return CaptionTokenizer.from_file(path)
