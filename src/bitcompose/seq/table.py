"""The molecules experiment (``docs/results/molecules.md``): Bit Diffusion and the absorbing-state baseline on
MOSES, against MOSES's published table, beside the floor of real molecules.

:class:`MoleculesTable` is an experiment of the harness (:func:`bitcompose.experiments.runner.run_experiment`):
``prepare`` trains (or loads from the cache) both models of a preset on the same tokens and budget; every cell is
``n`` molecules sampled at one (model, sampler, steps) and scored by
:func:`~bitcompose.seq.molecules.molecule_metrics`, the floor cell scores ``n`` MOSES training molecules, and the
bound cells give each model's likelihood bound on ``n`` MOSES test molecules (nats per molecule: the same units
for both models).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bitcompose.experiments.cache import cache_key
from bitcompose.experiments.runner import CellResult, Page, Run, run_experiment
from bitcompose.seq.config import DEFAULT_PRESET, SeqRunConfig, preset
from bitcompose.seq.data import MOSES, MOSES_FINGERPRINT, load_sequences
from bitcompose.seq.model import load_seq_model
from bitcompose.seq.molecules import molecule_metrics
from bitcompose.seq.train import LOG_FILE, train_or_load

__all__ = ["MoleculeCell", "MoleculesTable", "PUBLISHED", "SAMPLING", "run_molecules"]

#: MOSES's published Valid and FCD/Test (molecularsets/moses README, 30,000 samples per model) — the peer table.
PUBLISHED: dict[str, tuple[float, float]] = {
    "CharRNN": (0.975, 0.073),
    "VAE": (0.977, 0.099),
    "JTN-VAE": (1.0, 0.395),
    "NGram": (0.238, 5.507),
    "HMM": (0.076, 24.47),
}

#: (model, sampler, steps) of the sampling cells: the bits model at several samplers and step counts, the
#: absorbing-state baseline at equal network evaluations.
SAMPLING: tuple[tuple[str, str, int], ...] = (
    ("bits", "ddim", 20),
    ("bits", "ddim", 50),
    ("bits", "ddim", 100),
    ("bits", "ddpm", 100),
    ("bits", "dpmpp2m", 20),
    ("masked", "ancestral", 20),
    ("masked", "ancestral", 50),
    ("masked", "ancestral", 100),
)


class MoleculeCell(NamedTuple):
    """One cell: samples of a model (``kind="sample"``), the floor, or a model's bound on test molecules."""

    kind: str
    model: str = ""
    sampler: str = ""
    steps: int = 0

    @property
    def name(self) -> str:
        """The file stem (``bits-ddim-100``, ``floor``, ``bound-masked``)."""
        if self.kind == "sample":
            return f"{self.model}-{self.sampler}-{self.steps}"
        return "floor" if self.kind == "floor" else f"bound-{self.model}"


@dataclass
class MoleculesTable:
    """The molecules experiment: ``n`` molecules per cell, sampling noise from ``seed``."""

    preset_name: str = DEFAULT_PRESET
    n: int = 1000
    seed: int = 0
    cache: str | Path | None = None
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str = "molecules"

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"n must be >= 2, got {self.n}")

    def _runs(self) -> dict[str, SeqRunConfig]:
        return {
            m: preset(self.preset_name, **{**self.overrides, "data": MOSES, "model": m})
            for m in ("bits", "masked")
        }

    def _dirs(self) -> dict[str, Path]:
        return {
            m: train_or_load(r, cache=self.cache, progress=self.progress) for m, r in self._runs().items()
        }

    def settings(self) -> dict[str, Any]:
        """The preset, ``n``, the seed and the two models' cache keys."""
        return {
            "preset": self.preset_name,
            "overrides": self.overrides,
            "n": self.n,
            "seed": self.seed,
            "models": {m: cache_key(r.cache_spec(MOSES_FINGERPRINT)) for m, r in self._runs().items()},
        }

    def prepare(self, log: Callable[[str], None]) -> dict[str, Any]:
        """Train or load both models; their training logs go into the meta."""
        dirs = self._dirs()
        train = {}
        for m, d in dirs.items():
            t = json.loads((d / LOG_FILE).read_text())
            train[m] = {k: t[k] for k in ("steps", "train_seconds", "parameters", "precision", "run", "net")}
            train[m]["final_loss"] = t["losses"][-1][1] if t["losses"] else None
            log(
                f"model {m}: {t['steps']} steps, {t['train_seconds'] / 60:.1f} min, {t['parameters']:,} parameters"
            )
        return {"runs": {m: str(d) for m, d in dirs.items()}, "train": train}

    def cells(self) -> list[MoleculeCell]:
        """The sampling cells, the floor, the two bounds."""
        cells = [MoleculeCell("sample", m, s, k) for m, s, k in SAMPLING]
        return [*cells, MoleculeCell("floor"), MoleculeCell("bound", "bits"), MoleculeCell("bound", "masked")]

    def run_cell(self, cell: MoleculeCell) -> CellResult:
        """One cell's report (metrics, seconds) and its samples' token ids."""
        start = time.perf_counter()
        if cell.kind == "floor":
            train = load_sequences(MOSES).train
            pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))[: self.n]
            report = {"model": "MOSES train (floor)", **molecule_metrics([train[i] for i in pick.tolist()])}
            return CellResult({**report, "seconds": time.perf_counter() - start})
        model = load_seq_model(self._dirs()[cell.model])
        if cell.kind == "bound":
            test = load_sequences(MOSES).test[: self.n]
            nats = model.nll(test, generator=torch.Generator().manual_seed(self.seed))
            tokens = sum(len(model.tokenizer.split(s)) + 1 for s in test)  # + the end token
            report = {
                "model": cell.model,
                "nll_nats": float(nats.mean()),
                "nll_nats_se": float(nats.std() / math.sqrt(nats.numel())),
                "bits_per_token": float(nats.sum()) / (tokens * math.log(2)),
                "n": len(test),
            }
            return CellResult({**report, "seconds": time.perf_counter() - start})
        gen = torch.Generator().manual_seed(self.seed)
        t_sample = time.perf_counter()
        ids, invalid = model.generate(
            self.n, steps=cell.steps, sampler="ddim" if cell.model == "masked" else cell.sampler,
            generator=gen, return_invalid=True,
        )  # fmt: skip
        sample_seconds = time.perf_counter() - t_sample
        texts = model.tokenizer.decode(ids)
        report = {
            "model": cell.model,
            "sampler": cell.sampler,
            "steps": cell.steps,
            "nfe": cell.steps,
            "sample_seconds": sample_seconds,
            "invalid_codes": float(invalid.float().mean()),
            **molecule_metrics(texts),
            "examples": texts[:100],
        }
        return CellResult({**report, "seconds": time.perf_counter() - start}, {"ids": ids})

    def describe(self, report: dict[str, Any]) -> str:
        """A finished cell in one line."""
        if "nll_nats" in report:
            return f"bound {report['nll_nats']:.1f} ± {report['nll_nats_se']:.1f} nats/molecule"
        return (
            f"valid {report['valid']:.3f}, unique@1k {report['unique@1k']:.3f}, FCD/Test {report['FCD/Test']:.2f} "
            f"({report['seconds']:.0f} s)"
        )

    def render(self, out: Path, run: Run) -> Page:
        """``molecules.md``, ``molecules.json`` and the grid of drawn molecules ``molecules.png``."""
        from bitcompose.seq.page import render_page

        return render_page(self, out, run)


def run_molecules(
    out: str | Path, *, preset_name: str = DEFAULT_PRESET, n: int = 1000, seed: int = 0,
    cache: str | Path | None = None, command: str, progress: bool = True, log: Callable[[str], None] = print,
    **overrides: Any,
) -> tuple[Run, Page]:  # fmt: skip
    """Run (or resume) the molecules experiment into ``out`` (``overrides``: fields of both models' preset)."""
    table = MoleculesTable(preset_name, n, seed, cache, progress, dict(overrides))
    return run_experiment(table, out, command=command, log=log)
