"""A results page's numbers beside those of an earlier run of the same experiment (``--previous FILE``).

The earlier run is its ``<name>.json`` (the runner's page data: ``{"meta": ..., "cells": [...]}``). Cells are
matched by a key the experiment chooses (its settings that name a cell); a cell found in only one run is listed
with a dash on the other side, so a changed plan shows what was added and what was dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TableOptions", "beside_previous", "previous_section", "read_previous"]


def read_previous(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(cells, meta)`` of an earlier run's page JSON; ``ValueError`` (one line) when it is missing or not one."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--previous {p}: no such file (give the .json page of an earlier run)")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--previous {p}: not a JSON file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError(f"--previous {p}: not a results page's JSON (no 'cells' list)")
    return [c for c in data["cells"] if isinstance(c, dict)], data.get("meta", {})


def _value(row: dict[str, Any] | None, field: str, se: bool) -> str:
    if row is None or row.get(field) is None:
        return "–"
    value = row[field]
    if isinstance(value, int):
        return str(value)
    text = f"{value:.3f}"
    spread = row.get(f"{field}_se")
    return f"{text} ± {spread:.3f}" if se and spread is not None else text


def beside_previous(
    previous: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    key: Callable[[dict[str, Any]], str],
    fields: Sequence[str],
) -> str:
    """A markdown table: one row per cell key (this run's order, then the earlier run's other cells), and for each
    of ``fields`` the earlier value beside this run's (``± s.e.`` where the row has ``<field>_se``)."""
    before = {key(r): r for r in previous}
    now = {key(r): r for r in rows}
    keys = list(dict.fromkeys([*now, *before]))
    head = "| cell | " + " | ".join(f"{f} before | {f} now" for f in fields) + " |"
    rule = "|---|" + "---|---|" * len(fields)
    lines = [
        f"| {k} | "
        + " | ".join(f"{_value(before.get(k), f, True)} | {_value(now.get(k), f, True)}" for f in fields)
        + " |"
        for k in keys
    ]
    return "\n".join([head, rule, *lines])


def previous_section(
    before: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    source: str,
    meta: dict[str, Any],
    key: Callable[[dict[str, Any]], str],
    fields: Sequence[str],
    matched_by: str,
) -> str:
    """The page section "Beside the previous run": where the earlier run came from (``source``, its ``meta``), and
    :func:`beside_previous` of its cells and this run's (matched by ``key``, described as ``matched_by``)."""
    from bitcompose.experiments.image_models import trained_line

    trained = meta.get("trained")
    models = f" Its models: {trained_line(trained)}." if isinstance(trained, dict) else ""
    table = beside_previous(before, rows, key, fields)
    command = meta.get("command", "command not recorded")
    date, machine = meta.get("date", "date not recorded"), meta.get("machine_line", "machine not recorded")
    return f"""
## Beside the previous run

The earlier run is `{source}` (`{command}`; {date}; {machine}).{models} Cells are matched by {matched_by}; a
dash: the cell is not in that run. Where the models were retrained with another recipe (the energy models) a row
compares two models, not two runs of one.

{table}

"""


@dataclass(kw_only=True)
class TableOptions:
    """What a composition table takes beside its plan (keyword-only fields of the experiment dataclasses).

    Attributes:
        previous: an earlier run's page JSON, whose numbers the page shows beside this run's (checked at once).
        train_steps: training steps of every model (``None``: each parameterisation's default).
    """

    previous: str | Path | None = None
    train_steps: int | None = None

    def __post_init__(self) -> None:
        if self.previous is not None:
            read_previous(self.previous)  # refuse a bad file before any work

    def steps_of(self, param: str, defaults: Mapping[str, int]) -> int:
        """The training steps of the ``param`` model: ``train_steps``, else ``defaults[param]``."""
        return defaults[param] if self.train_steps is None else self.train_steps
