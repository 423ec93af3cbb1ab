"""Caption tokenizer: a SentencePiece model with fixed special ids, trained deterministically.

Bit Diffusion §3.1 tokenises MS-COCO captions with a 32K SentencePiece vocabulary and codes each token id in
⌈log2 32K⌉ = 15 analog bits. Here the vocabulary is trained on the training captions (small for the synthetic
scenes: ``model_type="word"`` gives one token per word, 38 ids for :mod:`bitcompose.data.scenes`; use ``"bpe"`` or
``"unigram"`` with a few thousand pieces for MS-COCO).

Special ids (fixed, independent of the corpus): ``pad_id = 0``, ``unk_id = 1``, ``bos_id = 2``, ``eos_id = 3``.
Text is normalised by the model itself (``nmt_nfkc_cf``: NFKC + case folding, whitespace collapsed), so
``decode(encode(t))`` returns the lowercased, whitespace-normalised ``t``.

Training is deterministic: the sentences are fed in the given order from memory (``sentence_iterator``, no
sampling of the input: ``input_sentence_size=0``), with ``num_threads=1``; the same captions give a byte-identical
model. The model lives in a ``.model`` file (the serialised SentencePiece proto) or in memory as bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["PAD_ID", "UNK_ID", "BOS_ID", "EOS_ID", "CaptionTokenizer", "train_tokenizer"]

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3

_MODEL_TYPES = ("unigram", "bpe", "word", "char")


def _spm():  # type: ignore[no-untyped-def]
    try:
        import sentencepiece
    except ImportError as e:  # pragma: no cover - sentencepiece is an optional extra
        raise ImportError("the caption tokenizer needs sentencepiece: pip install 'bitcompose[text]'") from e
    return sentencepiece


class CaptionTokenizer:
    """A trained SentencePiece model with encode/decode helpers for fixed-length caption batches.

    Build it with :func:`train_tokenizer`, :meth:`from_file` or :meth:`from_bytes`.

    Attributes:
        vocab_size: number of token ids ``V`` (ids are ``0 … V−1``; specials included).
        pad_id, unk_id, bos_id, eos_id: the special ids (0, 1, 2, 3).
    """

    def __init__(self, model_proto: bytes) -> None:
        if not isinstance(model_proto, (bytes, bytearray)) or len(model_proto) == 0:
            raise ValueError("CaptionTokenizer expects the non-empty bytes of a SentencePiece model")
        spm = _spm()
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError on a corrupt proto
            raise ValueError(f"not a valid SentencePiece model: {e}") from e
        ids = {
            "pad": self._sp.pad_id(),
            "unk": self._sp.unk_id(),
            "bos": self._sp.bos_id(),
            "eos": self._sp.eos_id(),
        }
        expected = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}
        if ids != expected:
            raise ValueError(
                f"SentencePiece model has special ids {ids}; bitcompose needs {expected} (train it with "
                "bitcompose.text.train_tokenizer)"
            )
        self.vocab_size: int = int(self._sp.get_piece_size())
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    # ------------------------------------------------------------------ persistence

    @classmethod
    def from_bytes(cls, model_proto: bytes) -> CaptionTokenizer:
        """Load from the serialised model (what :meth:`to_bytes` returns)."""
        return cls(model_proto)

    @classmethod
    def from_file(cls, path: str | Path) -> CaptionTokenizer:
        """Load a ``.model`` file written by :meth:`save` (or by SentencePiece with the same special ids)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer model file not found: {p}")
        return cls(p.read_bytes())

    def to_bytes(self) -> bytes:
        """The serialised SentencePiece model."""
        return self._proto

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (conventionally ``*.model``); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(self._proto)
        tmp.replace(p)
        return p

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CaptionTokenizer) and other._proto == self._proto

    def __hash__(self) -> int:
        return hash(self._proto)

    def __repr__(self) -> str:
        return f"CaptionTokenizer(vocab_size={self.vocab_size})"

    # ------------------------------------------------------------------ single captions

    def piece(self, token_id: int) -> str:
        """The piece string of one id (e.g. ``"▁circle"``; specials ``"<pad>"``, ``"<unk>"``, ``"<s>"``, ``"</s>"``)."""
        self._check_ids([token_id])
        return str(self._sp.id_to_piece(int(token_id)))

    def encode(self, text: str) -> list[int]:
        """Text → token ids (no BOS/EOS). Unknown words map to ``unk_id``."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a string, got {type(text).__name__}")
        return [int(i) for i in self._sp.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids → text, stopping at the first EOS or PAD; BOS is skipped.

        Raises:
            ValueError: if an id is outside ``[0, vocab_size)``.
        """
        ids = [int(i) for i in ids]
        self._check_ids(ids)
        kept: list[int] = []
        for i in ids:
            if i in (self.eos_id, self.pad_id):
                break
            if i != self.bos_id:
                kept.append(i)
        return str(self._sp.decode(kept))

    def _check_ids(self, ids: Sequence[int]) -> None:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size - 1}], got {bad[:5]}")

    # ------------------------------------------------------------------ batches

    def encode_batch(self, texts: Sequence[str], length: int) -> Tensor:
        """Captions → fixed-length ids: long ``[B, length]``.

        Each row holds the caption's ids truncated to ``length − 1``, then ``eos_id``, then ``pad_id`` up to
        ``length``; so every row contains exactly one EOS.
        """
        if isinstance(texts, str):
            raise ValueError("encode_batch expects a sequence of strings, got a single string")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        out = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        for b, text in enumerate(texts):
            ids = self.encode(text)[: length - 1] + [self.eos_id]
            out[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode_batch(self, ids: Tensor) -> list[str]:
        """Ids long ``[B, L]`` → ``B`` strings (each stops at its first EOS/PAD)."""
        if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.is_floating_point():
            raise ValueError(
                f"decode_batch expects an integer tensor [B, L], got {getattr(ids, 'shape', ids)!r}"
            )
        return [self.decode(row) for row in ids.tolist()]

    def num_tokens(self, texts: Sequence[str]) -> list[int]:
        """Number of tokens of each caption, EOS excluded (to choose ``length``: ``max + 1`` avoids truncation)."""
        return [len(self.encode(t)) for t in texts]


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 64,
    model_type: str = "word",
    path: str | Path | None = None,
    character_coverage: float = 1.0,
    hard_vocab_limit: bool = False,
) -> CaptionTokenizer:
    """Train a SentencePiece model on ``texts`` (deterministic: same texts in the same order → same model).

    Args:
        texts: training captions (e.g. ``SceneSet.all_captions()``).
        vocab_size: number of ids including the 4 specials. With ``hard_vocab_limit=False`` (default) this is an
            upper bound: a small corpus may give fewer (the word model of the scenes has 38 ids). Keep it
            ``<= 2**k`` to use ``k`` bits per token.
        model_type: ``"word"`` (one id per whitespace-separated word; best for the synthetic scenes),
            ``"bpe"``, ``"unigram"`` or ``"char"``.
        path: if given, the model is also written there (``.model``).
        character_coverage: fraction of characters covered (1.0 for small alphabets; 0.9995 for large corpora).
        hard_vocab_limit: require exactly ``vocab_size`` ids (SentencePiece errors if the corpus is too small).

    Returns:
        The trained :class:`CaptionTokenizer`.
    """
    if model_type not in _MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; expected one of {', '.join(_MODEL_TYPES)}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 5:
        raise ValueError(f"vocab_size must be an integer >= 5 (4 special ids + 1), got {vocab_size!r}")
    sentences = [t for t in texts]
    if not sentences or not all(isinstance(t, str) for t in sentences):
        raise ValueError("train_tokenizer needs a non-empty sequence of strings")
    if not any(t.strip() for t in sentences):
        raise ValueError("train_tokenizer: all training texts are empty")
    spm = _spm()
    buf = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=buf,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            hard_vocab_limit=hard_vocab_limit,
            character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc_cf",
            minloglevel=2,
        )
    except RuntimeError as e:
        raise ValueError(f"SentencePiece training failed: {e}") from e
    tok = CaptionTokenizer(buf.getvalue())
    if path is not None:
        tok.save(path)
    return tok
