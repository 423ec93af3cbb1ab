"""The one runner of experiments: cells into a folder, resumably, then the page.

An experiment (:class:`Experiment`) says what its settings are, prepares its models and evaluators, lists its
cells, runs one cell into a :class:`CellResult` (its report and tensors) and renders its page. :func:`run_experiment` owns the rest: every
finished cell is written at once to ``<out>/cells/<name>.json`` (its tensors to ``.pt``), so an interrupted table
resumes where it stopped; ``<out>/experiment.json`` records the settings the cells were computed with, and a run
with other settings into the same folder is refused (stale cells are never reused); the meta (command, date,
machine, wall time) is the same for every experiment; ``<out>/<name>.json`` and ``<name>.md`` are written
atomically.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import torch

from bitcompose.core.machine import machine_info, machine_line

__all__ = [
    "Cell",
    "CellResult",
    "Experiment",
    "Page",
    "Run",
    "check_settings",
    "read_cell",
    "run_experiment",
    "stored_cell",
    "utc_now",
    "write_cell",
    "write_text",
]

Log = Callable[[str], None]
SETTINGS = "experiment.json"


class Cell(Protocol):
    """A cell: anything with a file-safe ``name``."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class CellResult:
    """What one cell of any experiment gives: its report and the tensors stored beside it.

    Attributes:
        report: JSON-able: a dict (``seconds`` its own compute time, and the metrics), or a list of dicts for a
            cell of several rows (the objects experiment's prompt rows).
        tensors: by name, e.g. ``images`` ``long [n, C, H, W]``, ``labels`` ``long [n]``, ``samples`` ``[n, 2]``
            (a list of tensors where a cell has several rows); empty when there is nothing to keep.
    """

    report: Any
    tensors: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """What a run of an experiment produced.

    Attributes:
        rows: the cells' reports (JSON-able; a dict, or a list of dicts for a cell of several rows), in order.
        tensors: each cell's stored tensors, by cell name.
        computed: the names of the cells computed by this run (the others were read back).
        meta: the run's record: command, settings, what ``prepare`` returned, machine, date, minutes.
    """

    rows: list[Any]
    tensors: dict[str, dict[str, Any]]
    computed: list[str]
    meta: dict[str, Any]


@dataclass
class Page:
    """A rendered page: its markdown and the JSON written beside it (default: the meta and the rows)."""

    markdown: str
    data: dict[str, Any] = field(default_factory=dict)


class Experiment(Protocol):
    """One experiment on the harness (objects, guidance, the Bit Diffusion study, ...)."""

    #: The file stem of the page and its JSON (``<out>/<name>.md``, ``<out>/<name>.json``).
    name: str

    def settings(self) -> dict[str, Any]:
        """What every cell depends on beyond its name (n, seed, ...): stored, and checked on resumption."""
        ...

    def prepare(self, log: Log) -> dict[str, Any]:
        """Train or load the models and evaluators; returns the entries they add to the meta (skipped, when
        every cell is stored, for an experiment whose optional ``stored_meta(out)`` gives them from ``out``)."""
        ...

    def cells(self) -> Sequence[Cell]:
        """Every cell, in running order."""
        ...

    def run_cell(self, cell: Any) -> CellResult:
        """One cell's report and tensors."""
        ...

    def describe(self, report: Any) -> str:
        """One log line for a finished cell."""
        ...

    def render(self, out: Path, run: Run) -> Page:
        """Write the figures into ``out`` and return the page."""
        ...


def utc_now() -> str:
    """The date stamp of every result (``2026-12-02 05:30 UTC``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file (never a half-written page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _cell_files(path: Path) -> tuple[Path, Path]:
    # suffixes appended, not swapped: a stem such as ``w0.5-hmc`` holds a dot
    return path.with_name(path.name + ".pt"), path.with_name(path.name + ".json")


def read_cell(path: Path) -> CellResult | None:
    """The cell stored at ``path.pt``/``path.json``, or ``None`` when it is not stored (or stored in an earlier
    layout, whose tensors were not a dict: it is computed again)."""
    tensor_path, report_path = _cell_files(path)
    if report_path.is_file() and tensor_path.is_file():
        tensors = torch.load(tensor_path, weights_only=True)
        if isinstance(tensors, dict):
            return CellResult(json.loads(report_path.read_text()), tensors)
    return None


def write_cell(path: Path, result: CellResult) -> None:
    """Store a cell at ``path.pt``/``path.json``, each atomically (the report last: it marks the cell done)."""
    tensor_path, report_path = _cell_files(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tensor_path.with_name(f".{tensor_path.name}.{os.getpid()}.tmp")
    torch.save(result.tensors, tmp)
    os.replace(tmp, tensor_path)
    write_text(report_path, json.dumps(result.report, indent=2) + "\n")


def stored_cell(path: Path, run: Callable[[], CellResult]) -> CellResult:
    """The cell stored at ``path.pt``/``path.json``, or computed by ``run`` and stored there first."""
    stored = read_cell(path)
    if stored is not None:
        return stored
    result = run()
    write_cell(path, result)
    return result


def _seconds(report: Any) -> float:
    """A cell's own compute time (summed over the rows of a cell of several)."""
    if isinstance(report, list):
        return sum(_seconds(r) for r in report)
    return float(report.get("seconds", 0.0))


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def check_settings(out: Path, name: str, settings: dict[str, Any]) -> None:
    """Refuse ``out`` when it holds cells of ``name`` computed with other settings; record them otherwise.

    ``settings["models"]``, when given, maps each model a run uses to its cache key: a model seen before must have
    the same key, a new one is added (parts of an experiment that use other models share a folder)."""
    path = out / SETTINGS
    wanted = _canonical(settings)
    stored = json.loads(path.read_text()) if path.is_file() else {}
    old = stored.get(name)
    if old is None:
        write_text(path, json.dumps({**stored, name: wanted}, indent=2) + "\n")
        return
    old_models, new_models = old.get("models", {}), wanted.get("models", {})
    changed = [
        f"{k}: {old.get(k)!r} → {wanted.get(k)!r}"
        for k in sorted({*old, *wanted} - {"models"})
        if old.get(k) != wanted.get(k)
    ]
    changed += [
        f"model {m}: {old_models[m]} → {key}"
        for m, key in new_models.items()
        if old_models.get(m, key) != key
    ]
    if changed:
        raise ValueError(
            f"{out} holds {name} cells computed with other settings ({', '.join(changed)}); choose another output "
            f"folder, or delete {out / 'cells'} to recompute them"
        )
    if set(new_models) - set(old_models):
        merged = {**old, "models": {**old_models, **new_models}}
        write_text(path, json.dumps({**stored, name: merged}, indent=2) + "\n")


def _one_thread() -> None:
    torch.set_num_threads(1)


def _compute(experiment: Experiment, cell: Any) -> CellResult:
    return experiment.run_cell(cell)


def _run_cells(
    experiment: Experiment, out: Path, workers: int, log: Log
) -> tuple[list[Any], dict[str, dict[str, Any]], list[str]]:
    """Every cell's result: read back, or computed (in ``workers`` processes when > 1) and stored."""
    cells = list(experiment.cells())
    results: dict[str, CellResult] = {}
    pending = []
    for cell in cells:
        stored = read_cell(out / "cells" / cell.name)
        if stored is None:
            pending.append(cell)
        else:
            results[cell.name] = stored
            log(f"{cell.name}: {experiment.describe(stored.report)} (stored)")
    cost = getattr(experiment, "cost", None)
    if cost is not None:
        pending.sort(key=lambda c: -cost(c))  # the longest first: the pool finishes sooner

    def done(cell: Any, result: CellResult) -> None:
        write_cell(out / "cells" / cell.name, result)
        results[cell.name] = result
        log(f"{cell.name}: {experiment.describe(result.report)}")

    if workers > 1 and len(pending) > 1:
        context = mp.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            futures = [(c, pool.submit(_compute, experiment, c)) for c in pending]
            for cell, future in futures:
                done(cell, future.result())
    else:
        for cell in pending:
            done(cell, experiment.run_cell(cell))
    rows = [results[c.name].report for c in cells]
    return rows, {c.name: results[c.name].tensors for c in cells}, [c.name for c in pending]


def _stored_meta(experiment: Experiment, out: Path, log: Log) -> dict[str, Any] | None:
    """What ``prepare`` would return, from the experiment's own record in ``out``, when every cell is stored
    there and the experiment can say it (its optional ``stored_meta(out)``): a page re-rendered from stored cells
    then trains and loads nothing (on a fresh machine, an empty cache)."""
    reuse = getattr(experiment, "stored_meta", None)
    if reuse is None:
        return None
    for cell in experiment.cells():
        tensor_path, report_path = _cell_files(out / "cells" / cell.name)
        if not (tensor_path.is_file() and report_path.is_file()):
            return None
    meta = reuse(out)
    if meta is not None:
        log(f"every cell is stored in {out / 'cells'}: no model is trained or loaded")
    return meta


def run_experiment(
    experiment: Experiment, out: str | Path, *, command: str, workers: int = 1, log: Log = print
) -> tuple[Run, Page]:
    """Run (or resume) ``experiment`` into ``out``, then write its page, JSON and figures there.

    Args:
        experiment: the experiment (picklable when ``workers > 1``).
        out: the results folder (cells in ``out/cells``).
        command: the command line that reproduces the run (recorded in the meta).
        workers: cells computed at once, each in a single-threaded process (1: in this process).
        log: where progress lines go.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    start = time.perf_counter()
    settings = experiment.settings()
    check_settings(out, experiment.name, settings)
    prepared = _stored_meta(experiment, out, log)
    if prepared is None:
        prepared = experiment.prepare(log)
    train_minutes = (time.perf_counter() - start) / 60
    rows, tensors, computed = _run_cells(experiment, out, workers, log)
    meta = {
        "command": command,
        **settings,
        **prepared,
        "machine": machine_info(),
        "machine_line": machine_line(),
        "date": utc_now(),
        "wall_minutes": (time.perf_counter() - start) / 60,
        "cells_minutes": sum(_seconds(r) for r in rows) / 60,
        "train_minutes": train_minutes,
    }
    run = Run(rows, tensors, computed, meta)
    page = experiment.render(out, run)
    data = page.data or {"meta": meta, "cells": rows}
    write_text(out / f"{experiment.name}.json", json.dumps(data, indent=2, default=str) + "\n")
    write_text(out / f"{experiment.name}.md", page.markdown)
    return run, page
