"""Matplotlib figures with axes, labels and legends (the ``plots`` extra): labelled sample grids and line plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from bitcompose.figures.grids import make_grid

__all__ = ["labelled_rows", "line_plot", "pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (a one-line error when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ValueError("figures need matplotlib: pip install 'bitcompose[plots]'") from exc
    return plt


def save_figure(plt: Any, fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def labelled_rows(
    rows: Sequence[tuple[str, Tensor]], path: str | Path, num_values: int, *, title: str | None = None
) -> Path:
    """A PNG with one row of integer images ``[n, C, H, W]`` per entry, each labelled on the left.

    Args:
        rows: ``(label, images)`` pairs; every row has the same image size.
        path: the ``.png`` file (parent folders are created).
        num_values: pixel values K of the images.
        title: an optional figure title.
    """
    plt = pyplot()
    n = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(0.55 * n + 2.5, 0.75 * len(rows) + 0.6), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows, strict=True):
        grid = make_grid(images, nrow=n, num_values=num_values, padding=1, pad_value=128)
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(plt, fig, path)


def line_plot(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    errors: Mapping[str, Sequence[float | None]] | None = None,
    logx: bool = False,
) -> Path:
    """A line plot of several series over ``x`` (with optional error bars), axes labelled, legend shown."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, ys in series.items():
        y = np.array([np.nan if v is None else v for v in ys], dtype=float)
        err = None
        if errors is not None and name in errors:
            err = np.array([np.nan if v is None else v for v in errors[name]], dtype=float)
        ax.errorbar(list(x), y, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(x), [f"{v:g}" for v in x])  # the measured points, in plain numbers
        ax.minorticks_off()
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(plt, fig, path)
