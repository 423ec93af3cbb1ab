"""The training log of a finished run, ``train_log.json``: its configuration, the logged losses, the wall-clock and
CPU time, the precision, the machine and the parameter count (one writer for every application's run folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from bitcompose.core.machine import machine_info
from bitcompose.training.loop import METRICS_FILE, Trainer

__all__ = ["LOG_FILE", "write_train_log"]

LOG_FILE = "train_log.json"


def write_train_log(run_dir: Path, config: dict[str, Any], trainer: Trainer, net: nn.Module) -> Path:
    """Write ``run_dir/train_log.json`` from the run's ``config`` (its ``run``, ``net`` and optional ``parent``
    entries), its ``metrics.jsonl`` and the trainer; returns the path."""
    metrics = run_dir / METRICS_FILE
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    losses = [[r["step"], r["loss"], round(r["elapsed_s"], 1)] for r in map(json.loads, lines)]
    log = {
        "run": config["run"],
        "net": config["net"],
        "steps": trainer.step,
        "precision": trainer.precision,
        "train_seconds": round(trainer.seconds, 1),
        "train_cpu_seconds": round(trainer.cpu_seconds, 1),
        **config.get("parent", {}),
        "losses": losses,
        "machine": machine_info(),
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    path = run_dir / LOG_FILE
    path.write_text(json.dumps(log, indent=2) + "\n")
    return path
