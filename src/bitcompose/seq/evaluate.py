"""Scores of a set of generated sequences, each beside the same score of real sequences (the floor).

- Molecules (reference ``"moses"``): :func:`bitcompose.seq.molecules.molecule_metrics`; the floor is as many
  molecules drawn (seeded) from MOSES's training set — MOSES's own "Train" row.
- Text (reference a file): the fraction of distinct sequences, novelty (not a line of the reference file), and
  distinct-n (distinct word n-grams over all n-grams, n = 1, 2, 3; words split at whitespace); the floor is the
  reference file's held-out lines (as many as there are samples, at most all of them). Distinct-n rewards
  diversity only: a model emitting random words beats real text at it, so read it beside novelty and the bound.
- With a model: its likelihood bound on the given sequences (nats per sequence and bits per token), the
  yardstick that cannot be gamed by diversity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from bitcompose.seq.data import MOSES, load_sequences

__all__ = ["distinct_ngrams", "text_metrics", "evaluate_sequences"]


def distinct_ngrams(sequences: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all word n-grams of ``sequences`` (NaN when there is none)."""
    grams = [tuple(w[i : i + n]) for s in sequences for w in [s.split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def text_metrics(sequences: Sequence[str], reference: set[str]) -> dict[str, float]:
    """Distinct fraction, novelty against ``reference`` and distinct-1/2/3 of text sequences."""
    kept = [s for s in sequences if s]
    out: dict[str, float] = {"n": float(len(sequences)), "empty": 1.0 - len(kept) / len(sequences)}
    out["unique"] = len(set(kept)) / len(kept) if kept else math.nan
    out["novelty"] = len(set(kept) - reference) / len(set(kept)) if kept else math.nan
    for n in (1, 2, 3):
        out[f"distinct-{n}"] = distinct_ngrams(kept, n)
    return out


def _bound(model: Any, sequences: Sequence[str], seed: int) -> dict[str, float]:
    from bitcompose.diffusion.likelihood import bits_per_dim

    kept = [s for s in sequences if s]
    if len(kept) < 2:
        raise ValueError("the likelihood bound needs at least two non-empty sequences")
    nats = torch.cat([
        model.nll(kept[i : i + 256], generator=torch.Generator().manual_seed(seed + i)) for i in range(0, len(kept), 256)
    ])  # fmt: skip
    tokens = sum(model.tokenizer.lengths(kept)) + sum(
        1 for s in kept if len(model.tokenizer.ids(s)) < model.net_config.max_len
    )  # the end token is predicted too
    mean = float(nats.mean())
    return {
        "nll_nats": mean,
        "nll_nats_se": float(nats.std() / math.sqrt(nats.numel())),
        "bits_per_token": mean * len(kept) / (tokens * math.log(2)),
        "bits_per_position": bits_per_dim(nats, model.net_config.max_len)[0],
    }


def evaluate_sequences(
    sequences: Sequence[str],
    *,
    reference: str = MOSES,
    model: Any = None,
    seed: int = 0,
    floor_n: int | None = None,
) -> dict[str, Any]:
    """The scores of ``sequences`` and, under ``"floor"``, the same scores of real sequences.

    Args:
        sequences: the generated sequences (empty strings count as failures).
        reference: ``"moses"`` or the path of a text file of real sequences.
        model: a :class:`~bitcompose.seq.model.SeqModel`: adds its bound on ``sequences``.
        seed: seed of the floor's draw and of the bound's noise.
        floor_n: size of the MOSES floor (default: as many as ``sequences``).
    """
    if len(sequences) == 0:
        raise ValueError("no sequences to evaluate")
    row: dict[str, Any] = {"reference": reference}
    if reference == MOSES:
        from bitcompose.seq.molecules import molecule_metrics

        train = load_sequences(MOSES).train
        k = min(floor_n or len(sequences), len(train))
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:k].tolist()
        row.update(molecule_metrics(sequences))
        row["floor"] = {"what": f"{k} MOSES training molecules", **molecule_metrics([train[i] for i in pick])}
    else:
        data = load_sequences(reference)
        row.update(text_metrics(sequences, set(data.train)))
        held = data.test[: len(sequences)]
        row["floor"] = {
            "what": f"{len(held)} held-out lines of {data.name}",
            **text_metrics(held, set(data.train)),
        }
    if model is not None:
        row.update(_bound(model, sequences, seed))
    return row
