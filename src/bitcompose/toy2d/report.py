"""Markdown table and scatter-plot figure of the 2-D composition benchmark (Pillow only, no matplotlib).

The figure has one row per (task, parameterisation) and one panel per sampler (plus the exact target on the left):
the exact target density is drawn as a grayscale image (darker = denser) over ``[−1.2, 1.2]²`` and the samples as
red dots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bitcompose.figures.plots import pyplot
from bitcompose.toy2d.tasks import TASKS

__all__ = ["format_value", "markdown_table", "render_figure", "PLOT_EXTENT"]

PLOT_EXTENT = 1.2


def format_value(v: Any, digits: int = 3) -> str:
    """A metric for tables: ``n/a`` for None, ``–`` for NaN, 3 decimals (scientific below 1e-3)."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if abs(v) < 1e-3 and v != 0:
            return f"{v:.1e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table with one line per (task, param, sampler) metrics dict (as :func:`run_cell` returns).

    The headline columns are W2 and MMD² against exact samples beside their exact-vs-exact floors; the
    log-likelihood is shown beside what a perfect sampler scores under the same protocol (see
    :func:`~bitcompose.toy2d.run.run_cell`), and, for annealed samplers, before the final step.
    """
    head = (
        "| task | param | sampler | W2 ↓ (floor) | MMD² ↓ (floor) | LL (perfect) | LL level 0 (perfect) "
        "| in support ↑ | acceptance | NFE | train steps | seconds |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        steps = "–" if r.get("train_steps") is None else r["train_steps"]
        w2f, mmdf = format_value(r.get("w2_floor")), format_value(r.get("mmd_floor"), 4)
        perfect, perfect0 = (
            format_value(r.get("perfect_log_likelihood")),
            format_value(r.get("perfect_log_likelihood_level0")),
        )
        if not r.get("applicable", True):
            lines.append(
                f"| {r['task']} | {r['param']} | {r['sampler']} | n/a ({w2f}) | n/a ({mmdf}) | n/a ({perfect}) "
                f"| n/a ({perfect0}) | n/a | n/a | n/a | {steps} | – |"
            )
            continue
        ll0 = r.get("log_likelihood_level0")
        level0 = "–" if ll0 is None else f"{format_value(ll0)} ({perfect0})"
        lines.append(
            f"| {r['task']} | {r['param']} | {r['sampler']} | {format_value(r['w2'])} ({w2f}) "
            f"| {format_value(r['mmd'], 4)} ({mmdf}) | {format_value(r['log_likelihood'])} ({perfect}) | {level0} "
            f"| {format_value(r['in_support'])} | {format_value(r['acceptance'])} | {r['nfe']} | {steps} "
            f"| {r['seconds']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def render_figure(
    cells: Sequence[tuple[dict[str, Any], Tensor | None]],
    path: str | Path,
    *,
    panel: int = 180,
    exact_samples: int = 500,
) -> Path:
    """Write the scatter-plot grid as a PNG (matplotlib): one row per (task, param), one column per sampler after
    the exact target; each panel shows the target's density (grey) and the samples (red), axes in data units.

    Args:
        cells: ``(metrics, samples [n, 2] or None)`` for every cell; rows are formed per (task, param) in order
            of first appearance, columns per sampler.
        path: output file.
        panel: resolution of the density image in each panel.
        exact_samples: number of exact target samples drawn in the first column.

    Returns:
        The path written.
    """
    rows: list[tuple[str, str]] = []
    samplers: list[str] = []
    for m, _ in cells:
        if (m["task"], m["param"]) not in rows:
            rows.append((m["task"], m["param"]))
        if m["sampler"] not in samplers:
            samplers.append(m["sampler"])
    plt = pyplot()
    ncol = len(samplers) + 1
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.3 * ncol, 2.3 * len(rows)), squeeze=False)
    by_key = {(m["task"], m["param"], m["sampler"]): (m, s) for m, s in cells}
    grids: dict[str, Tensor] = {}
    extent = (-PLOT_EXTENT, PLOT_EXTENT, -PLOT_EXTENT, PLOT_EXTENT)
    for i, (task, param) in enumerate(rows):
        target = TASKS[task].target
        if task not in grids:
            d = target.density_grid(-PLOT_EXTENT, PLOT_EXTENT, panel).double()
            grids[task] = (d / d.max()).sqrt() if float(d.max()) > 0 else d  # faint tails stay visible
        exact = target.sample(exact_samples, torch.Generator().manual_seed(0))
        panels: list[tuple[str, Tensor | None]] = [("exact target", exact)]
        for sampler in samplers:
            m, samples = by_key.get((task, param, sampler), ({}, None))
            ll = m.get("log_likelihood")
            panels.append((sampler if samples is None else f"{sampler}: LL {format_value(ll, 2)}", samples))
        for j, (title, samples) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(grids[task].numpy(), origin="lower", extent=extent, cmap="Greys", vmin=0, vmax=1.5)
            if samples is None:
                ax.text(0, 0, "n/a", ha="center", va="center")
            else:
                pts = samples[torch.isfinite(samples).all(1)].numpy()
                ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c="tab:red", alpha=0.6, linewidths=0)
            ax.set_xlim(-PLOT_EXTENT, PLOT_EXTENT)
            ax.set_ylim(-PLOT_EXTENT, PLOT_EXTENT)
            ax.set_title(title, fontsize=8)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(f"{task} / {param}\ny", fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel("x", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
