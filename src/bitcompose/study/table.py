"""Running the study: a grid's cells into a folder, resumably, and the page rendered from every cell there.

Every finished cell is written to ``<out>/cells/<name>.json`` (its samples to ``.pt``) at once, so an interrupted
grid resumes where it stopped, and grids run in parts accumulate in one folder: ``<out>/parts.json`` records each
part (grid, date, machine, wall time), and ``bit_study.md``, ``bit_study.json`` and the figures are rendered from
all the cells present.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bitcompose.experiments.image_models import dataset_record, training_record
from bitcompose.experiments.runner import CellResult, Page, Run, run_experiment, write_text
from bitcompose.study.cells import (
    TRAIN_STEPS,
    evaluator,
    level_scores,
    load_or_train,
    model_key,
    real_floor,
    study_cell,
    study_data,
)
from bitcompose.study.grid import Grid, StudyCell, grid
from bitcompose.study.page import figures, page

__all__ = ["StudyExperiment", "load_rows", "run_study"]

PAGE, JSON, PARTS = "bit_study.md", "bit_study.json", "parts.json"


def load_rows(out: Path) -> list[dict[str, Any]]:
    """Every cell report in ``out/cells`` (sorted by name); reports written before the grey-level distance
    existed get it from their stored samples (and are rewritten)."""
    rows = []
    for path in sorted((out / "cells").glob("*.json")):
        row = json.loads(path.read_text())
        samples = path.with_name(path.name[: -len(".json")] + ".pt")
        if "level_tv" not in row and samples.is_file():
            images = torch.load(samples, weights_only=True)["images"][: row["floor_n"]].long()
            row |= level_scores(row["dataset"], images)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(row, indent=2) + "\n")
            tmp.replace(path)
        rows.append(row)
    return rows


def _part_key(part: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """A part of the study is a grid on a data set, or the cells of some of its models (``--models``)."""
    return part["grid"], part["dataset"], tuple(part.get("models", ()))


@dataclass
class StudyExperiment:
    """One grid of the study on the harness (:func:`~bitcompose.experiments.runner.run_experiment`)."""

    grid_name: str
    dataset: str
    n: int = 500
    seed: int = 0
    train_steps: int | None = None
    cache: str | Path | None = None
    progress: bool = True
    inception: bool = False
    models: tuple[str, ...] | None = None
    name: str = "bit_study"

    @property
    def grid(self) -> Grid:
        """The grid's cells (only those of ``models`` when given)."""
        return grid(self.grid_name, self.models)

    @property
    def steps(self) -> int:
        """Training steps of every model."""
        return TRAIN_STEPS[self.dataset] if self.train_steps is None else self.train_steps

    def settings(self) -> dict[str, Any]:
        """The data set, n, seed and training steps every cell of every part shares, and the cache key of each
        model of this grid (a changed recipe is another model: its old cells are not reused)."""
        models = {m.name: model_key(m, self.dataset, self.steps) for m in self.grid.models}
        return {
            "dataset": self.dataset,
            "seed": self.seed,
            "n": self.n,
            "train_steps": self.steps,
            "models": models,
        }

    def prepare(self, log: Callable[[str], None]) -> dict[str, Any]:
        """Train or load the grid's models and the evaluator."""
        trained: dict[str, dict[str, Any]] = {}
        for model in self.grid.models:
            loaded = load_or_train(
                model, self.dataset, steps=self.steps, cache=self.cache, progress=self.progress
            )
            trained[model.name] = training_record(loaded)
            log(f"model {model.name}: step {loaded.step}")
        judge = evaluator(self.dataset, self.cache, self.progress)
        data = study_data(self.dataset)
        return {
            **dataset_record(data),
            "trained": trained,
            "evaluator": judge.info,
            "floor_full": real_floor(judge, self.dataset),
        }

    def stored_meta(self, out: Path) -> dict[str, Any] | None:
        """``prepare``'s entries as the run that computed this part's cells recorded them (``None`` when the
        folder holds no record of this part: then ``prepare`` runs)."""
        parts_path, page_path = out / PARTS, out / f"{self.name}.json"
        if not (parts_path.is_file() and page_path.is_file()):
            return None
        key = self._part_key
        part = next((p for p in json.loads(parts_path.read_text()) if _part_key(p) == key), None)
        meta = json.loads(page_path.read_text()).get("meta", {})
        names = ("data_name", "num_values", "image_shape", "evaluator", "floor_full")
        if part is None or meta.get("dataset") != self.dataset or any(k not in meta for k in names):
            return None
        return {**{k: meta[k] for k in names}, "trained": part["trained"]}

    @property
    def _part_key(self) -> tuple[str, str, tuple[str, ...]]:
        return self.grid_name, self.dataset, tuple(self.models or ())

    def cells(self) -> list[StudyCell]:
        """The grid's cells."""
        return list(self.grid.cells)

    def run_cell(self, cell: StudyCell) -> CellResult:
        """One cell's samples (uint8: every study data set has at most 256 levels, 8× smaller files) and report."""
        res = study_cell(
            cell, self.dataset, n=self.n, seed=self.seed, train_steps=self.steps, cache=self.cache,
            progress=self.progress, inception=self.inception,
        )  # fmt: skip
        return CellResult(res.report, {**res.tensors, "images": res.tensors["images"].to(torch.uint8)})

    def describe(self, report: dict[str, Any]) -> str:
        """FID, accuracy and NFE of a finished cell."""
        return (
            f"classifier FID {report['classifier_fid']:.2f} ± {report['classifier_fid_se']:.2f} "
            f"(floor {report['classifier_fid_floor']:.2f}), accuracy {report['class_accuracy']:.3f}, "
            f"NFE {report['nfe']} ({report['seconds']:.0f} s)"
        )

    def render(self, out: Path, run: Run) -> Page:
        """Record this part in ``parts.json``, then render the page from every cell of the data set in ``out``."""
        meta = {**run.meta, "parts": self._record_part(out, run)}
        rows = [r for r in load_rows(out) if r["dataset"] == self.dataset]
        drawn = figures(out, rows, meta)
        return Page(page(rows, meta, drawn), {"meta": meta, "cells": rows})

    def _record_part(self, out: Path, run: Run) -> list[dict[str, Any]]:
        m = run.meta
        part = {
            "grid": self.grid_name,
            "dataset": self.dataset,
            "command": m["command"],
            "cells": len(run.rows),
            **({"models": list(self.models)} if self.models else {}),
            "trained": m["trained"],
            "date": m["date"],
            "machine_line": m["machine_line"],
            "wall_minutes": m["wall_minutes"],
            "train_minutes": m["train_minutes"],
            "cells_minutes": m["cells_minutes"],
        }
        parts_path = out / PARTS
        parts = json.loads(parts_path.read_text()) if parts_path.is_file() else []
        key = self._part_key
        old = next((p for p in parts if _part_key(p) == key), None)
        if old is not None and not run.computed:
            part = old  # a re-render: the record of the run that computed the cells stays
        elif old is not None:  # a resumed part: its times add up
            for k in ("wall_minutes", "train_minutes"):
                part[k] += old[k]
            part["sessions"] = old.get("sessions", 1) + 1
        parts = [p for p in parts if _part_key(p) != key] + [part]
        write_text(parts_path, json.dumps(parts, indent=2) + "\n")
        return parts


def run_study(
    grid_name: str,
    dataset: str,
    out: str | Path,
    *,
    n: int = 500,
    seed: int = 0,
    train_steps: int | None = None,
    cache: str | Path | None = None,
    command: str | None = None,
    progress: bool = True,
    inception: bool = False,
    models: tuple[str, ...] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) ``grid_name`` on ``dataset`` into ``out``, then render the page from all cells there.

    ``inception`` adds the Inception FID to the cells computed now (the ``fid`` extra; cells already in ``out``
    keep what they have); ``models`` runs only the cells of those models of the grid.

    Returns:
        ``{"meta": …, "cells": [this grid's reports]}``.
    """
    experiment = StudyExperiment(grid_name, dataset, n, seed, train_steps, cache, progress, inception, models)
    default = f"bitcompose study --dataset {dataset} --grid {grid_name} --out {out}"
    if models:
        default += f" --models {','.join(models)}"
    run, page_ = run_experiment(experiment, out, command=command or default, log=log)
    return {"meta": page_.data["meta"], "cells": run.rows}
