"""Tests of the benchmark's markdown table, headline checks and Pillow figure (no training involved)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from bitcompose.cli import main
from bitcompose.toy2d.report import markdown_table, render_figure
from bitcompose.toy2d.table import summary_checks


def _row(task: str, param: str, sampler: str, ll: float | None, insup: float | None) -> dict[str, object]:
    applicable = ll is not None
    return {
        "task": task,
        "param": param,
        "sampler": sampler,
        "applicable": applicable,
        "log_likelihood": ll,
        "oracle_log_likelihood": 3.4767,
        "perfect_log_likelihood": 3.9,
        "perfect_log_likelihood_level0": 3.41,
        "log_likelihood_level0": None if sampler == "reverse" or not applicable else 3.2,
        "w2_floor": 0.05,
        "mmd_floor": 0.001,
        "w2": 0.1 if applicable else None,
        "mmd": 0.002 if applicable else None,
        "in_support": insup,
        "acceptance": 0.9 if sampler == "hmc" else None,
        "nfe": 3101 if applicable else None,
        "seconds": 12.0,
    }


def test_markdown_table_and_checks() -> None:
    rows = [
        _row("product", "energy", "reverse", 2.5, 0.9),
        _row("product", "energy", "hmc", 3.3, 0.99),
        _row("mixture", "score", "hmc", None, None),
        _row("mixture", "energy", "hmc", 0.1, 0.97),
    ]
    table = markdown_table(rows)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(rows)
    # headline W2 and MMD² beside their exact-vs-exact floors; LL beside a perfect sampler's, before/after the final step
    assert (
        "| product | energy | hmc | 0.100 (0.050) | 0.0020 (0.0010) | 3.300 (3.900) | 3.200 (3.410) |"
        in table
    )
    assert "| product | energy | reverse | 0.100 (0.050) | 0.0020 (0.0010) | 2.500 (3.900) | – |" in table
    assert "| mixture | score | hmc | n/a (0.050) |" in table
    checks = summary_checks(rows)
    assert any("gap +0.800" in c for c in checks)
    assert any(c.startswith("mixture: best in-support fraction 0.970") for c in checks)


def test_render_figure_writes_a_png(tmp_path: Path) -> None:
    cells = [
        (_row("negation", "energy", "reverse", -1.0, 0.8), torch.rand(50, 2) * 2 - 1),
        (_row("negation", "energy", "hmc", -0.5, 0.9), torch.tensor([[0.5, 0.5], [float("nan"), 0.0]])),
        (_row("mixture", "score", "hmc", None, None), None),
    ]
    out = render_figure(cells, tmp_path / "fig.png", panel=60, exact_samples=20)
    img = Image.open(out)
    width, height = img.size
    assert abs(width / height - 3 / 2) < 0.05  # exact + 2 samplers in columns; 2 rows (task, param)


def test_cli_table_subset_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["toy2d", "--table", "--samplers", "euler"]) == 2
    err = capsys.readouterr().err
    assert "--samplers takes a comma-separated subset" in err and err.count("\n") == 1


def test_cells_round_trip(tmp_path: Path) -> None:
    from bitcompose.toy2d.table import load_cells, save_cells

    x = torch.randn(5, 2)
    cells = [
        (_row("negation", "energy", "hmc", -0.5, 0.9), x),
        (_row("mixture", "score", "hmc", None, None), None),
    ]
    save_cells(cells, tmp_path)
    back = load_cells(tmp_path)
    assert [m for m, _ in back] == [m for m, _ in cells]
    assert back[0][1] is not None and torch.equal(back[0][1], x) and back[1][1] is None
