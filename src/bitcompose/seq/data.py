"""Sequence data: MOSES by name, or any text file of sequences (one per line), split into train and held-out test.

MOSES (Polykovskiy et al. 2020) is read from the files the ``molsets`` wheel ships in ``moses/dataset/data/``
(``train.csv.gz``: 1,584,663 SMILES, ``test.csv.gz``: 176,074, ``test_scaffolds.csv.gz``, and the precomputed
statistics of the test sets, ``*_stats.npz``). The package itself is never imported: it needs
``pomegranate==0.12.0`` and an older RDKit and pandas; ``make install`` installs the wheel with ``--no-deps`` only
for these files, and :func:`moses_file` finds them with ``importlib`` without running the package.

A text file: one sequence per line, surrounding whitespace stripped, blank lines skipped; the held-out split is a
seeded 10 % of the lines (at least one), the rest is the training split. Its fingerprint (SHA-256 of the bytes)
names the data in the model cache.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["MOSES", "SequenceData", "data_fingerprint", "load_sequences", "moses_file", "read_lines"]

#: The name of the MOSES benchmark as a data source.
MOSES = "moses"
#: The fingerprint of MOSES's data (the molsets release whose files are read).
MOSES_FINGERPRINT = "moses-0.3.1"
#: MOSES's files, by split.
_MOSES_FILES = {"train": "train.csv.gz", "test": "test.csv.gz", "test_scaffolds": "test_scaffolds.csv.gz"}


@dataclass(frozen=True)
class SequenceData:
    """Sequences of one source, split.

    Attributes:
        name: ``"moses"`` or the file's name.
        train: training sequences (all of them; a run takes its first ``num_train``).
        test: held-out sequences.
        fingerprint: what identifies the data in the cache (``"moses-0.3.1"`` or the file's SHA-256).
    """

    name: str
    train: list[str]
    test: list[str]
    fingerprint: str


def moses_file(name: str) -> Path:
    """The path of a file of MOSES's data folder (``train.csv.gz``, ``test_stats.npz``, ...).

    Raises:
        FileNotFoundError: the ``molsets`` wheel is not installed (``make install`` installs it).
    """
    spec = importlib.util.find_spec("moses")
    roots = [] if spec is None or spec.submodule_search_locations is None else spec.submodule_search_locations
    for root in roots:
        path = Path(root) / "dataset" / "data" / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"MOSES data file {name} not found: install the molsets wheel for its data "
        "(.venv/bin/pip install --no-deps molsets==0.3.1, which make install does)"
    )


def _moses_split(split: str) -> list[str]:
    with gzip.open(moses_file(_MOSES_FILES[split]), "rt", newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows)
        col = header.index("SMILES")
        return [row[col] for row in rows]


def read_lines(path: str | Path, *, allow_blank: bool = False) -> list[str]:
    """The sequences of a text file: one per line, stripped, blank lines skipped.

    Args:
        path: the file.
        allow_blank: keep blank lines as empty sequences (a file of samples, where an empty sample is one).

    Raises:
        FileNotFoundError: no such file. ValueError: a folder, not UTF-8 text, or no sequence in it.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give a text file with one sequence per line")
    if not p.is_file():
        raise FileNotFoundError(f"sequence file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [line.strip() for line in io.StringIO(text)]
    out = lines if allow_blank else [line for line in lines if line]
    if not any(out):
        raise ValueError(f"{p} holds no sequence (it is empty or blank)")
    return out


def load_sequences(source: str, *, seed: int = 0) -> SequenceData:
    """Sequences by name (``"moses"``) or from a text file, split into train and held-out test.

    Args:
        source: ``"moses"`` or a path.
        seed: seed of a text file's split (MOSES has its own).
    """
    if source == MOSES:
        return SequenceData(MOSES, _moses_split("train"), _moses_split("test"), MOSES_FINGERPRINT)
    path = Path(source).expanduser()
    lines = read_lines(path)
    if len(lines) < 2:
        raise ValueError(f"{path} holds one sequence; a training and a held-out split need at least two")
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, len(lines) // 10)
    test = [lines[i] for i in sorted(order[:n_test])]
    train = [lines[i] for i in sorted(order[n_test:])]
    return SequenceData(path.name, train, test, data_fingerprint(source, seed=seed))


def data_fingerprint(source: str, *, seed: int = 0) -> str:
    """What names the data of ``source`` in the cache: MOSES's release, or a file's SHA-256 and split seed."""
    if source == MOSES:
        return MOSES_FINGERPRINT
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"sequence file not found: {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"file-{digest}-split{seed}"
