"""Tokenisers of sequence data: characters, SMILES (atoms, bonds, ring closures, bracket atoms as tokens) and
SentencePiece for text, each with one end token so that sequences of any length up to ``L`` share one array.

A sequence becomes ``L`` ids: its tokens, then :data:`END` (id 0) up to ``L`` — the end token is also the padding,
so a sequence of ``L`` tokens exactly has no end token and decoding stops at the first ``END`` or after ``L``.
Ids name the vocabulary's tokens in order; the vocabulary is built from the training sequences (sorted, so the same
data give the same ids) and written as JSON next to a run's checkpoint.

Encoding never fixes input silently: a token outside the vocabulary, a sequence longer than ``L``, a SMILES with
characters the regex does not cover, or an empty sequence is a ``ValueError`` that names the line.

The SMILES regex follows the atom-level tokenisation of Schwaller et al. 2019 ("Molecular Transformer"): a bracket
atom ``[nH+]`` is one token, two-letter organic atoms ``Cl``/``Br`` are one token, ``%NN`` is a two-digit ring
closure.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["END", "END_TOKEN", "KINDS", "SeqTokenizer", "smiles_tokens", "build_tokenizer"]

#: The id of the end (and padding) token.
END = 0
END_TOKEN = "<end>"
#: Tokeniser kinds.
KINDS = ("smiles", "chars", "sentencepiece")

_SMILES = re.compile(r"\[[^\[\]]+\]|Br|Cl|%\d{2}|[BCNOSPFIbcnosp]|[()=#\-+\\/:~@?>*$.]|\d")


def smiles_tokens(smiles: str) -> list[str]:
    """A SMILES string → its tokens (``"".join`` of them is the string).

    Raises:
        ValueError: a character no token covers (e.g. an unmatched ``[``, a space, a lower-case ``l``).
    """
    tokens = _SMILES.findall(smiles)
    if "".join(tokens) != smiles:
        pos = 0
        for tok in tokens:
            if smiles.startswith(tok, pos):
                pos += len(tok)
            else:
                break
        raise ValueError(f"cannot tokenise the SMILES {smiles!r}: no token at position {pos}")
    return tokens


@dataclass(frozen=True)
class SeqTokenizer:
    """A tokeniser with its vocabulary: sequences ↔ ids ``long [B, L]``.

    Attributes:
        kind: ``"smiles"``, ``"chars"`` or ``"sentencepiece"``.
        tokens: the vocabulary, ``tokens[0]`` = :data:`END_TOKEN` (for SentencePiece: its pieces, id 0 its
            padding id, used as the end token).
        sp_model: the serialised SentencePiece model (``"sentencepiece"`` only).
    """

    kind: str
    tokens: tuple[str, ...]
    sp_model: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown tokeniser {self.kind!r}; expected one of {', '.join(KINDS)}")
        if len(self.tokens) < 2 or self.tokens[0] != END_TOKEN and self.kind != "sentencepiece":
            raise ValueError(f"a vocabulary needs {END_TOKEN!r} first and at least one token")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("the vocabulary repeats a token")
        if (self.kind == "sentencepiece") != (self.sp_model is not None):
            raise ValueError("sp_model is given exactly for the sentencepiece tokeniser")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @property
    def vocab_size(self) -> int:
        """Number of ids ``V`` (the end token included)."""
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """One sequence → its tokens (ids for SentencePiece are looked up by :meth:`ids`)."""
        if self.kind == "smiles":
            return smiles_tokens(text)
        if self.kind == "chars":
            return list(text)
        return [self.tokens[i] for i in self._sp().encode(text)]

    def ids(self, text: str) -> list[int]:
        """One sequence → its ids (no end token).

        Raises:
            ValueError: an empty sequence, or a token the vocabulary does not have.
        """
        if not isinstance(text, str):
            raise ValueError(f"a sequence must be a string, got {type(text).__name__}")
        if not text:
            raise ValueError("empty sequence")
        if self.kind == "sentencepiece":
            out = [int(i) for i in self._sp().encode(text)]
            if 1 in out:  # SentencePiece's unknown id
                raise ValueError(f"{text[:60]!r} has a piece the vocabulary does not have")
            return out
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        pieces = self.split(text)
        unknown = [p for p in pieces if p not in index or p == END_TOKEN]
        if unknown:
            raise ValueError(
                f"unknown token {unknown[0]!r} in {text[:60]!r} (not in the training vocabulary)"
            )
        return [index[p] for p in pieces]

    def encode(self, texts: Sequence[str], length: int) -> Tensor:
        """Sequences → ids ``long [B, length]`` (tokens, then :data:`END` up to ``length``).

        Raises:
            ValueError: naming the first bad sequence (its index): empty, unknown token, or longer than ``length``.
        """
        if isinstance(texts, str):
            raise ValueError("encode expects a sequence of strings, got a single string")
        out = torch.full((len(texts), length), END, dtype=torch.long)
        for b, text in enumerate(texts):
            try:
                ids = self.ids(text)
            except ValueError as exc:
                raise ValueError(f"sequence {b + 1}: {exc}") from None
            if len(ids) > length:
                raise ValueError(
                    f"sequence {b + 1} has {len(ids)} tokens, more than the model's length {length}"
                )
            out[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Tensor) -> list[str]:
        """Ids ``long [B, L]`` → ``B`` strings, each stopping at its first :data:`END`."""
        if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.is_floating_point():
            raise ValueError(f"decode expects an integer tensor [B, L], got {getattr(ids, 'shape', ids)!r}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size - 1}]")
        texts = []
        for row in ids.tolist():
            kept = row[: row.index(END)] if END in row else row
            if self.kind == "sentencepiece":
                texts.append(str(self._sp().decode(kept)))
            else:
                texts.append("".join(self.tokens[i] for i in kept))
        return texts

    def lengths(self, texts: Iterable[str]) -> list[int]:
        """Tokens of each sequence (to choose ``L``: the longest, plus one for the end token)."""
        return [len(self.ids(t)) for t in texts]

    def _sp(self):  # type: ignore[no-untyped-def]
        from bitcompose.text.tokenizer import CaptionTokenizer

        cached = self.__dict__.get("_sp_tok")
        if cached is None:
            assert self.sp_model is not None
            cached = CaptionTokenizer(self.sp_model)._sp
            object.__setattr__(self, "_sp_tok", cached)
        return cached

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form (:meth:`from_dict` reads it)."""
        d: dict[str, object] = {"kind": self.kind, "tokens": list(self.tokens)}
        if self.sp_model is not None:
            d["sp_model"] = base64.b64encode(self.sp_model).decode()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> SeqTokenizer:
        """Inverse of :meth:`to_dict` (a ``ValueError`` for anything else)."""
        try:
            kind, tokens = str(d["kind"]), tuple(str(t) for t in d["tokens"])  # type: ignore[attr-defined]
            sp = d.get("sp_model")
            return cls(kind, tokens, None if sp is None else base64.b64decode(str(sp)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a tokeniser: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write the tokeniser as JSON (atomically); returns the path."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | Path) -> SeqTokenizer:
        """Read a tokeniser written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"tokeniser file not found: {p}")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p} is not a tokeniser file: {exc}") from None


def build_tokenizer(texts: Sequence[str], kind: str = "smiles", *, vocab_size: int = 256) -> SeqTokenizer:
    """The tokeniser of ``kind`` whose vocabulary is every token of ``texts`` (sorted; SentencePiece: a unigram
    model of at most ``vocab_size`` pieces trained on them).

    Raises:
        ValueError: no sequences, an empty one (naming its line), or one the tokeniser cannot split.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tokeniser {kind!r}; expected one of {', '.join(KINDS)}")
    if not texts:
        raise ValueError("no sequences to build a vocabulary from")
    for i, t in enumerate(texts):
        if not t:
            raise ValueError(f"sequence {i + 1} is empty")
    if kind == "sentencepiece":
        from bitcompose.text.tokenizer import train_tokenizer

        sp = train_tokenizer(texts, vocab_size=vocab_size, model_type="unigram")
        pieces = tuple(sp.piece(i) for i in range(sp.vocab_size))
        return SeqTokenizer(kind, pieces, sp.to_bytes())
    seen: set[str] = set()
    for i, t in enumerate(texts):
        try:
            seen.update(smiles_tokens(t) if kind == "smiles" else t)
        except ValueError as exc:
            raise ValueError(f"sequence {i + 1}: {exc}") from None
    return SeqTokenizer(kind, (END_TOKEN, *sorted(seen)))
