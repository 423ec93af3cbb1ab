"""The one ``--table`` path of the command line: an experiment of the harness run into ``--out``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bitcompose.cli.types import json_line

if TYPE_CHECKING:
    from bitcompose.experiments.runner import Experiment, Run

__all__ = ["command_line", "run_table"]


def command_line() -> str:
    """The command as the user typed it (``bitcompose …``, quoted), for the page's record."""
    return "bitcompose " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_table(experiment: Experiment, out: Path, *, json: bool, workers: int = 1) -> Run:
    """Run (or resume) ``experiment`` into ``out`` (progress on stderr); print its rows as one JSON list
    (``json``) or the page's path."""
    from bitcompose.experiments.runner import run_experiment

    try:
        run, _ = run_experiment(
            experiment, out, command=command_line(), workers=workers, log=lambda m: print(m, file=sys.stderr)
        )
    except KeyboardInterrupt as exc:
        said = str(exc) or "interrupted"
        raise KeyboardInterrupt(
            f"{said}; the finished cells are kept in {out / 'cells'} and the same command resumes the table"
        ) from None
    rows: Any = run.rows
    print(
        json_line(rows) if json else f"{out / (experiment.name + '.md')}\n{out / (experiment.name + '.json')}"
    )
    return run
