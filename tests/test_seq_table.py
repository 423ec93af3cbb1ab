"""The molecules experiment end to end on two tiny models (slow: it scores ten cells with MOSES's metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("rdkit")
pytest.importorskip("fcd_torch")


@pytest.mark.slow
def test_molecules_table_writes_its_page_and_resumes(tmp_path: Path) -> None:
    from bitcompose.seq.data import moses_file
    from bitcompose.seq.table import run_molecules

    try:
        moses_file("test_stats.npz")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    out, cache = tmp_path / "molecules", tmp_path / "cache"
    kwargs = dict(
        preset_name="tiny", n=6, cache=cache, command="test", progress=False, steps=5, num_train=500
    )
    run, page = run_molecules(out, **kwargs)  # type: ignore[arg-type]
    assert (out / "molecules.md").is_file() and (out / "molecules.json").is_file()
    assert len(run.computed) == 11 and "| **floor**: MOSES train |" in page.markdown
    assert json.loads((out / "molecules.json").read_text())["cells"]["floor"]["valid"] == 1.0
    again, _ = run_molecules(out, **kwargs)  # type: ignore[arg-type]
    assert again.computed == []
    with pytest.raises(ValueError, match="other settings"):
        run_molecules(out, **{**kwargs, "n": 7})  # type: ignore[arg-type]
