"""Where trained models are cached (``$BITCOMPOSE_CACHE/<kind>``, else ``~/.cache/bitcompose/<kind>``), and results
that are computed once and kept (the resumable cells of an experiment's table)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_dir", "cached_result"]


def cache_dir(kind: str, root: str | Path | None = None) -> Path:
    """The cache folder of one kind of model (``toy2d``, ``captions``, ``classifiers``, ...).

    Args:
        kind: the sub-folder.
        root: an explicit folder to use as is (returned unchanged).
    """
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("BITCOMPOSE_CACHE") or "~/.cache/bitcompose"
    return Path(base).expanduser() / kind


def cached_result(path: Path, run: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any]:
    """``(tensors, report)`` from ``path.json``/``.pt``, or computed by ``run`` and stored there first."""
    # suffixes appended, not swapped: a stem such as ``w0.5-hmc`` holds a dot
    report_path, tensor_path = path.with_name(path.name + ".json"), path.with_name(path.name + ".pt")
    if report_path.is_file() and tensor_path.is_file():
        return torch.load(tensor_path, weights_only=True), json.loads(report_path.read_text())
    tensors, report = run()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_tensors, tmp_report = (
        tensor_path.with_name(tensor_path.name + ".tmp"),
        report_path.with_name(report_path.name + ".tmp"),
    )
    torch.save(tensors, tmp_tensors)
    tmp_tensors.replace(tensor_path)
    tmp_report.write_text(json.dumps(report, indent=2) + "\n")
    tmp_report.replace(report_path)
    return tensors, report
