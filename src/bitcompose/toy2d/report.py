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
from PIL import Image, ImageDraw
from torch import Tensor

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
    """A markdown table with one line per (task, param, sampler) metrics dict (as :func:`run_cell` returns)."""
    head = (
        "| task | param | sampler | LL ↑ | oracle LL | W2 ↓ | MMD² ↓ | in support ↑ | acceptance | NFE | train steps "
        "| seconds |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        steps = "–" if r.get("train_steps") is None else r["train_steps"]
        if not r.get("applicable", True):
            lines.append(
                f"| {r['task']} | {r['param']} | {r['sampler']} | n/a | {format_value(r['oracle_log_likelihood'])} "
                f"| n/a | n/a | n/a | n/a | n/a | {steps} | – |"
            )
            continue
        lines.append(
            f"| {r['task']} | {r['param']} | {r['sampler']} | {format_value(r['log_likelihood'])} "
            f"| {format_value(r['oracle_log_likelihood'])} | {format_value(r['w2'])} | {format_value(r['mmd'], 4)} "
            f"| {format_value(r['in_support'])} | {format_value(r['acceptance'])} | {r['nfe']} | {steps} "
            f"| {r['seconds']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def _to_pixels(x: Tensor, size: int) -> Tensor:
    return ((x + PLOT_EXTENT) / (2 * PLOT_EXTENT) * size).floor()


def _panel(density: Tensor, samples: Tensor | None, size: int, title: str) -> Image.Image:
    d = density.double()
    d = (d / d.max()).sqrt() if float(d.max()) > 0 else d  # square root: faint tails stay visible
    gray = (255 - 150 * d).clamp(0, 255).to(torch.uint8).numpy()
    img = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.NEAREST).convert("RGB")
    draw = ImageDraw.Draw(img)
    if samples is not None:
        finite = samples[torch.isfinite(samples).all(1)]
        px = _to_pixels(finite, size)
        for u, v in px.tolist():
            col, row = int(u), size - 1 - int(v)
            if 0 <= col < size and 0 <= row < size:
                draw.rectangle((col - 1, row - 1, col, row), fill=(200, 20, 20))
    else:
        draw.line((0, 0, size, size), fill=(160, 160, 160))
        draw.line((0, size, size, 0), fill=(160, 160, 160))
    draw.rectangle((0, 0, size - 1, size - 1), outline=(0, 0, 0))
    draw.text((4, 3), title, fill=(0, 0, 160))
    return img


def render_figure(
    cells: Sequence[tuple[dict[str, Any], Tensor | None]],
    path: str | Path,
    *,
    panel: int = 180,
    exact_samples: int = 500,
) -> Path:
    """Write the scatter-plot grid as a PNG.

    Args:
        cells: ``(metrics, samples [n, 2] or None)`` for every cell; rows are formed per (task, param) in order
            of first appearance, columns per sampler.
        path: output file.
        panel: panel size in pixels.
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
    label_w, head_h = 110, 18
    width = label_w + panel * (len(samplers) + 1)
    height = head_h + panel * len(rows)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, name in enumerate(["exact target", *samplers]):
        draw.text((label_w + j * panel + 4, 3), name, fill=(0, 0, 0))
    by_key = {(m["task"], m["param"], m["sampler"]): (m, s) for m, s in cells}
    grids: dict[str, Tensor] = {}
    for i, (task, param) in enumerate(rows):
        target = TASKS[task].target
        if task not in grids:
            grids[task] = target.density_grid(-PLOT_EXTENT, PLOT_EXTENT, panel)
        top = head_h + i * panel
        draw.text((4, top + panel // 2 - 6), f"{task}\n{param}", fill=(0, 0, 0))
        exact = target.sample(exact_samples, torch.Generator().manual_seed(0))
        canvas.paste(_panel(grids[task], exact, panel, "exact"), (label_w, top))
        for j, sampler in enumerate(samplers, start=1):
            m, s = by_key.get((task, param, sampler), ({}, None))
            ll = m.get("log_likelihood")
            title = "n/a" if s is None else f"LL {ll:.2f}" if ll is not None else "LL -inf"
            canvas.paste(_panel(grids[task], s, panel, title), (label_w + j * panel, top))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
