"""Running the study: a grid's cells into a folder, resumably, and the page rendered from every cell there.

Every finished cell is written to ``<out>/cells/<name>.json`` (its samples to ``.pt``) at once, so an interrupted
grid resumes where it stopped, and grids run in parts accumulate in one folder: ``<out>/parts.json`` records each
part (grid, date, machine, wall time), and ``bit_study.md``, ``bit_study.json`` and the figures are rendered from
all the cells present.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bitcompose.core.machine import machine_info, machine_line
from bitcompose.images.cache import train_seconds
from bitcompose.metrics.image_scores import fid_floor
from bitcompose.study.cells import TRAIN_STEPS, evaluator, level_scores, load_or_train, study_cell, study_data
from bitcompose.study.grid import grid
from bitcompose.study.page import figures, page
from bitcompose.training.cache import cached_result

__all__ = ["load_rows", "render", "run_study"]

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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) ``grid_name`` on ``dataset`` into ``out``, then render the page from all cells there.

    ``inception`` adds the Inception FID to the cells computed now (the ``fid`` extra; cells already in ``out``
    keep what they have).

    Returns:
        ``{"meta": …, "cells": [this grid's reports]}``.
    """
    g = grid(grid_name)
    out = Path(out)
    steps = TRAIN_STEPS[dataset] if train_steps is None else train_steps
    start = time.perf_counter()
    trained: dict[str, dict[str, Any]] = {}
    for model in g.models:
        loaded = load_or_train(model, dataset, steps=steps, cache=cache, progress=progress)
        trained[model.name] = {"steps": loaded.step, "train_seconds": train_seconds(loaded.path, loaded.step)}
        log(f"model {model.name}: step {loaded.step}")
    judge = evaluator(dataset, cache, progress)
    train_minutes = (time.perf_counter() - start) / 60
    rows, computed = [], []
    for cell in g.cells:

        def run(cell: Any = cell) -> Any:
            computed.append(cell.name)
            res = study_cell(
                cell,
                dataset,
                n=n,
                seed=seed,
                train_steps=steps,
                cache=cache,
                progress=progress,
                inception=inception,
            )
            # the samples as uint8 (every study data set has at most 256 levels): 8× smaller files
            return {"images": res.images.to(torch.uint8), "labels": res.labels}, res.report

        _, report = cached_result(out / "cells" / cell.name, run)
        rows.append(report)
        log(
            f"{cell.name}: classifier FID {report['classifier_fid']:.2f} ± {report['classifier_fid_se']:.2f} "
            f"(floor {report['classifier_fid_floor']:.2f}), accuracy {report['class_accuracy']:.3f}, "
            f"NFE {report['nfe']} ({report['seconds']:.0f} s)"
        )
    data = study_data(dataset)
    part = {
        "grid": grid_name,
        "dataset": dataset,
        "command": command or f"bitcompose study --dataset {dataset} --grid {grid_name} --out {out}",
        "cells": len(rows),
        "trained": trained,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine_line": machine_line(),
        "wall_minutes": (time.perf_counter() - start) / 60,
        "train_minutes": train_minutes,
        "cells_minutes": sum(r["seconds"] for r in rows) / 60,
    }
    parts_path = out / PARTS
    parts = json.loads(parts_path.read_text()) if parts_path.is_file() else []
    old = next((p for p in parts if (p["grid"], p["dataset"]) == (grid_name, dataset)), None)
    if old is not None and not computed:
        part = old  # a re-render: the record of the run that computed the cells stays
    elif old is not None:  # a resumed part: its times add up
        for key in ("wall_minutes", "train_minutes"):
            part[key] += old[key]
        part["sessions"] = old.get("sessions", 1) + 1
    parts = [p for p in parts if (p["grid"], p["dataset"]) != (grid_name, dataset)] + [part]
    parts_path.write_text(json.dumps(parts, indent=2) + "\n")
    meta = {
        "dataset": dataset,
        "data_name": data.name,
        "num_values": data.num_values,
        "image_shape": list(data.image_shape),
        "seed": seed,
        "n": n,
        "train_steps": steps,
        "evaluator": judge.info,
        "floor_full": fid_floor(judge, data),
        "machine": machine_info(),
        "parts": parts,
    }
    render(out, meta)
    return {"meta": meta, "cells": rows}


def render(out: Path, meta: dict[str, Any]) -> None:
    """Write ``bit_study.md``, ``bit_study.json`` and the figures of every cell in ``out/cells``."""
    rows = [r for r in load_rows(out) if r["dataset"] == meta["dataset"]]
    figures(out, rows, meta)
    (out / JSON).write_text(json.dumps({"meta": meta, "cells": rows}, indent=2, default=str) + "\n")
    (out / PAGE).write_text(page(rows, meta))
