"""Figures of the objects experiment (matplotlib, the ``plots`` extra): samples with the requested cells marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from bitcompose.data.objects import CELL, GRID, NUM_VALUES
from bitcompose.figures.plots import pyplot, save_figure

__all__ = ["marked_samples"]


def _rgb(image: Tensor) -> Tensor:
    """``long [3, H, W]`` values 0–3 → ``uint8 [H, W, 3]``."""
    return (image * (255 // (NUM_VALUES - 1))).clamp(0, 255).byte().permute(1, 2, 0)


def marked_samples(
    rows: Sequence[tuple[str, Tensor, Tensor, Tensor]], path: str | Path, *, title: str | None = None
) -> Path:
    """One row of samples per entry with each requested cell outlined (white) and each sample's frame green
    when the evaluator found every requested object, red otherwise.

    Args:
        rows: ``(label, images long [n, 3, 16, 16], cells long [n, k], success bool [n])``.
        path: the ``.png`` file.
        title: an optional figure title.
    """
    plt = pyplot()
    from matplotlib.patches import Rectangle

    ncols = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(0.9 * ncols + 1.6, 0.95 * len(rows) + 0.5), squeeze=False
    )
    for r, (label, images, cells, success) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            ax.imshow(_rgb(images[c]).numpy(), interpolation="nearest")
            for cell in cells[c].tolist():
                row, col = divmod(int(cell), GRID)
                ax.add_patch(
                    Rectangle(
                        (col * CELL - 0.5, row * CELL - 0.5),
                        CELL,
                        CELL,
                        fill=False,
                        edgecolor="white",
                        lw=0.8,
                    )
                )
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if bool(success[c]) else "tab:red")
                spine.set_linewidth(2.0)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(plt, fig, path)
