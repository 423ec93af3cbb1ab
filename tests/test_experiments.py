"""The experiment harness: the one model cache and the one runner (resume, settings check, meta, page)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from bitcompose.experiments.cache import COMPLETE, cache_key, cached, entry_path
from bitcompose.experiments.runner import CellResult, Page, Run, read_cell, run_experiment, stored_cell


def test_the_key_is_canonical_and_covers_spec_and_data() -> None:
    assert cache_key({"a": 1, "b": [1, 2]}, "d") == cache_key({"b": [1, 2], "a": 1}, "d")
    keys = {cache_key({"a": 1}), cache_key({"a": 2}), cache_key({"a": 1}, "d"), cache_key({"a": 1}, "e")}
    assert len(keys) == 4 and all(len(k) == 16 for k in keys)


def test_an_entry_is_trained_once_and_marked_complete(tmp_path: Path) -> None:
    calls: list[Path] = []

    def train(folder: Path) -> dict[str, Any]:
        calls.append(folder)
        (folder / "weights.txt").write_text("w")
        return {"seconds": 1.5}

    first = cached("models", "a b/c", {"steps": 3}, train, data="fp", cache=tmp_path)
    assert first.fresh and first.record == {"seconds": 1.5} and len(calls) == 1
    assert first.path.parent == tmp_path / "models" and first.path.name.startswith("a_b_c-")
    assert json.loads((first.path / COMPLETE).read_text())["spec"] == {"steps": 3}
    again = cached("models", "a b/c", {"steps": 3}, train, data="fp", cache=tmp_path)
    assert not again.fresh and again.path == first.path and again.record == first.record and len(calls) == 1
    other = cached("models", "a b/c", {"steps": 4}, train, data="fp", cache=tmp_path)
    assert other.path != first.path and len(calls) == 2
    assert entry_path("models", "a b/c", {"steps": 3}, "fp", tmp_path) == first.path


def test_an_interrupted_entry_is_not_complete_and_resumes_in_its_folder(tmp_path: Path) -> None:
    def crash(folder: Path) -> dict[str, Any]:
        (folder / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached("m", "x", {"s": 1}, crash, cache=tmp_path)
    seen: list[str] = []

    def resume(folder: Path) -> dict[str, Any]:
        seen.append((folder / "partial.txt").read_text())
        return {}

    entry = cached("m", "x", {"s": 1}, resume, cache=tmp_path)
    assert entry.fresh and seen == ["half"] and (entry.path / COMPLETE).is_file()


def test_a_corrupt_marker_is_a_clear_error(tmp_path: Path) -> None:
    folder = entry_path("m", "x", {"s": 1}, cache=tmp_path)
    folder.mkdir(parents=True)
    (folder / COMPLETE).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt.*delete the folder"):
        cached("m", "x", {"s": 1}, lambda f: {}, cache=tmp_path)


def test_stored_cell_keeps_dotted_names_apart(tmp_path: Path) -> None:
    a = stored_cell(tmp_path / "w0.5-reverse-score", lambda: CellResult({"cell": "a"}, {"x": torch.zeros(1)}))
    b = stored_cell(tmp_path / "w0.5-hmc-score", lambda: CellResult({"cell": "b"}, {"x": torch.ones(1)}))
    assert a.report == {"cell": "a"} and b.report == {"cell": "b"}  # once, "w0.5-…" both became "w0.json"
    again = stored_cell(tmp_path / "w0.5-hmc-score", lambda: pytest.fail("recomputed"))
    assert again.report == {"cell": "b"} and torch.equal(again.tensors["x"], torch.ones(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "w0.5-hmc-score.json", "w0.5-hmc-score.pt", "w0.5-reverse-score.json", "w0.5-reverse-score.pt",
    ]  # fmt: skip


def test_a_cell_stored_in_an_earlier_layout_is_computed_again(tmp_path: Path) -> None:
    torch.save([torch.zeros(1)], tmp_path / "c.pt")  # tensors as a bare list, as the prompt rows once were
    (tmp_path / "c.json").write_text('{"cell": "old"}')
    assert read_cell(tmp_path / "c") is None
    assert stored_cell(tmp_path / "c", lambda: CellResult({"cell": "new"})).report == {"cell": "new"}


@dataclass(frozen=True)
class _Cell:
    name: str


@dataclass
class _Toy:
    n: int = 3
    name: str = "toy"
    ran: list[str] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        return {"n": self.n}

    def prepare(self, log: Any) -> dict[str, Any]:
        return {"model": "m1"}

    def cells(self) -> list[_Cell]:
        return [_Cell("c1"), _Cell("c2.5")]

    def run_cell(self, cell: _Cell) -> CellResult:
        self.ran.append(cell.name)
        return CellResult(
            {"cell": cell.name, "seconds": 30.0}, {"x": torch.full((self.n,), float(len(self.ran)))}
        )

    def describe(self, report: dict[str, Any]) -> str:
        return f"done {report['cell']}"

    def render(self, out: Path, run: Run) -> Page:
        total = sum(float(t["x"].sum()) for t in run.tensors.values())
        return Page(f"# toy\n{len(run.rows)} cells, sum {total:g}, computed {run.computed}\n")


def test_the_runner_resumes_records_and_writes_the_page(tmp_path: Path) -> None:
    lines: list[str] = []
    toy = _Toy()
    run, page = run_experiment(toy, tmp_path, command="toy --table", log=lines.append)
    assert toy.ran == ["c1", "c2.5"] and run.computed == ["c1", "c2.5"]
    assert lines == ["c1: done c1", "c2.5: done c2.5"]
    data = json.loads((tmp_path / "toy.json").read_text())
    assert data["cells"] == run.rows and data["meta"]["command"] == "toy --table"
    assert data["meta"]["n"] == 3 and data["meta"]["model"] == "m1" and data["meta"]["cells_minutes"] == 1.0
    assert {"date", "machine", "machine_line", "wall_minutes", "train_minutes"} <= set(data["meta"])
    assert (tmp_path / "toy.md").read_text() == "# toy\n2 cells, sum 9, computed ['c1', 'c2.5']\n"
    fresh = _Toy()
    rerun, _ = run_experiment(fresh, tmp_path, command="toy --table", log=lines.append)
    assert fresh.ran == [] and rerun.computed == [] and rerun.rows == run.rows


def test_the_runner_refuses_cells_of_other_settings(tmp_path: Path) -> None:
    run_experiment(_Toy(n=3), tmp_path, command="toy", log=lambda s: None)
    with pytest.raises(ValueError, match=r"other settings \(n: 3 → 5\)"):
        run_experiment(_Toy(n=5), tmp_path, command="toy", log=lambda s: None)
    assert json.loads((tmp_path / "experiment.json").read_text()) == {"toy": {"n": 3}}


def test_a_table_records_its_models_so_a_changed_recipe_is_not_reused() -> None:
    from bitcompose.guidance.models import model_key
    from bitcompose.guidance.table import GuidanceExperiment, GuidancePlan

    plan = GuidancePlan(dataset="digits", energy_samplers=())
    settings = GuidanceExperiment(plan).settings()
    assert settings["models"] == {"score": model_key("digits", "score")}
    assert model_key("digits", "score") != model_key(
        "digits", "score", steps=5
    )  # another recipe, another key
    assert model_key("digits", "score") != model_key("digits", "energy")


@dataclass
class _Part(_Toy):
    models: dict[str, str] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        return {"n": self.n, "models": self.models}


def test_parts_with_other_models_share_a_folder_but_a_changed_model_is_refused(tmp_path: Path) -> None:
    quiet = {"command": "toy", "log": lambda s: None}
    run_experiment(_Part(models={"a": "k1"}), tmp_path, **quiet)  # type: ignore[arg-type]
    run_experiment(_Part(models={"b": "k2"}), tmp_path, **quiet)  # type: ignore[arg-type]
    stored = json.loads((tmp_path / "experiment.json").read_text())["toy"]
    assert stored == {"n": 3, "models": {"a": "k1", "b": "k2"}}
    with pytest.raises(ValueError, match="model a: k1 → k9"):
        run_experiment(_Part(models={"a": "k9"}), tmp_path, **quiet)  # type: ignore[arg-type]


def test_a_page_shows_an_earlier_run_beside_this_one(tmp_path: Path) -> None:
    from bitcompose.experiments.compare import beside_previous, read_previous

    before = [{"cell": "a", "acc": 0.5, "acc_se": 0.02, "nfe": 100}, {"cell": "gone", "acc": 0.1, "nfe": 1}]
    now = [{"cell": "a", "acc": 0.75, "acc_se": 0.01, "nfe": 100}, {"cell": "new", "acc": 0.9, "nfe": 300}]
    table = beside_previous(before, now, lambda r: r["cell"], ("acc", "nfe")).splitlines()
    assert table[0] == "| cell | acc before | acc now | nfe before | nfe now |"
    assert table[2:] == [
        "| a | 0.500 ± 0.020 | 0.750 ± 0.010 | 100 | 100 |",
        "| new | – | 0.900 | – | 300 |",
        "| gone | 0.100 | – | 1 | – |",
    ]
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"meta": {"command": "x"}, "cells": before}))
    assert read_previous(page) == (before, {"command": "x"})
    for text, message in (("{", "not a JSON"), ('{"rows": []}', "no 'cells'")):
        page.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_previous(page)
    with pytest.raises(ValueError, match="no such file"):
        read_previous(tmp_path / "missing.json")


def test_the_guidance_table_refuses_a_bad_previous_page_before_any_work(tmp_path: Path, capsys: Any) -> None:
    from bitcompose.cli import main

    args = ["compose", "guidance", "--table", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c")]
    assert main([*args, "--previous", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["compose", "guidance", "--previous", str(tmp_path / "x.json")]) == 2
    assert "goes with --table" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "out").exists()
