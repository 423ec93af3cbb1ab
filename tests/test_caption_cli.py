"""Tests of the captioning pipeline and of ``bitcompose caption``: caching, CLI output and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bitcompose.captioning import load_captioner, preset, train_captioner, train_or_load
from bitcompose.captioning.sweep import render_markdown, run_sweep, table3_rows
from bitcompose.captioning.train import optim_config, run_is_complete
from bitcompose.cli import main
from bitcompose.training.optim import learning_rate

KEYS = {"model", "steps", "td", "bleu4", "cider", "rouge_l"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step diffusion run of the tiny preset (weights untrained; enough for the plumbing)."""
    out = tmp_path_factory.mktemp("cap") / "run"
    return train_captioner(preset("scenes-tiny", steps=2, save_every=1), out, progress=False)


def test_run_folder_layout_and_loading(run_dir: Path) -> None:
    assert (run_dir / "tokenizer.model").is_file()
    assert (run_dir / "checkpoint" / "ema.safetensors").is_file()
    log = json.loads((run_dir / "train_log.json").read_text())
    assert log["steps"] == 2 and len(log["losses"]) == 1
    cap = load_captioner(run_dir)
    assert cap.kind == "diffusion" and cap.net_config.vocab_size == cap.tokenizer.vocab_size
    images = torch.zeros(2, 3, 32, 32)
    ids = cap.generate(images, steps=3, td=1.0, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, cap.run.max_len) and ids.dtype == torch.long
    assert run_is_complete(run_dir, preset("scenes-tiny", steps=2, save_every=1))
    assert not run_is_complete(run_dir, preset("scenes-tiny", steps=3))


def test_cache_reuses_finished_runs(tmp_path: Path) -> None:
    run = preset("scenes-tiny", steps=1, model="ar")
    first = train_or_load(run, cache=tmp_path, progress=False)
    stamp = (first / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    again = train_or_load(run, cache=tmp_path, progress=False)
    assert again == first and (again / "checkpoint" / "model.safetensors").stat().st_mtime_ns == stamp
    assert run.cache_spec() != preset("scenes-tiny", steps=1, model="ar", seed=1).cache_spec()
    assert run.cache_spec() == preset("scenes-tiny", steps=1, model="ar", log_every=7).cache_spec()
    with pytest.raises(ValueError, match="another configuration"):
        train_captioner(preset("scenes-tiny", steps=2, model="ar"), first, progress=False)


def test_learning_rate_schedule() -> None:
    run = preset("scenes-tiny", lr=1e-3, warmup=10, steps=110)
    opt = optim_config(run)
    assert learning_rate(opt, 0, run.steps) == pytest.approx(1e-4)
    assert learning_rate(opt, 9, run.steps) == pytest.approx(1e-3)
    assert learning_rate(opt, 10, run.steps) == pytest.approx(1e-3)
    assert learning_rate(opt, 110, run.steps) == pytest.approx(1e-4)  # cosine down to 10 %


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="unknown captioning preset"):
        preset("nope")
    with pytest.raises(ValueError, match="model"):
        preset("scenes-tiny", model="gpt")
    with pytest.raises(ValueError, match="ce_weight"):
        preset("scenes-tiny", output_head="linear", ce_weight=1.0)
    with pytest.raises(ValueError, match="bad captioning config override"):
        preset("scenes-tiny", not_a_field=1)


def test_cli_sample_and_evaluate(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sheet = tmp_path / "sheet.png"
    assert (
        main(
            ["caption", "sample", str(run_dir), "--n", "3", "--steps", "2", "--td", "1", "--out", str(sheet)]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out[:3]] == ["test-0", "test-1", "test-2"]
    assert sheet.is_file() and sheet.stat().st_size > 0
    assert main(["caption", "evaluate", str(run_dir), "--steps", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row) == KEYS and row["model"] == "diffusion" and row["steps"] == 2
    assert 0.0 <= row["bleu4"] <= 1.0 and 0.0 <= row["rouge_l"] <= 1.0 and row["cider"] >= 0.0


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]


def test_cli_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["caption", "evaluate", str(tmp_path / "missing")]) == 2
    assert "not found" in _error_line(capsys)
    # a run folder without a checkpoint
    (tmp_path / "empty").mkdir()
    assert main(["caption", "sample", str(tmp_path / "empty")]) == 2
    assert "checkpoint" in _error_line(capsys)
    # a run folder whose tokenizer is missing
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint").symlink_to(run_dir / "checkpoint", target_is_directory=True)
    assert main(["caption", "evaluate", str(broken)]) == 2
    assert "tokenizer" in _error_line(capsys)
    assert main(["caption", "train", "--preset", "nope"]) == 2
    assert "unknown captioning preset" in _error_line(capsys)
    with pytest.raises(SystemExit) as exc:
        main(["caption", "sample", str(run_dir), "--steps", "0"])
    assert exc.value.code == 2


def test_sweep_rows_and_report(tmp_path: Path) -> None:
    result = run_sweep(
        "scenes-tiny", cache=tmp_path, steps_list=(1, 2), tds=(0.0, 1.0), progress=False, steps=1
    )
    assert len(result.rows) == 1 + 4 + 4  # AR on test; the grid on test and on val (where td is chosen)
    assert all(set(r) == KEYS | {"split"} for r in result.rows)
    assert [r["model"] for r in result.rows].count("ar") == 1
    assert {r["split"] for r in result.rows if r["model"] == "diffusion"} == {"val", "test"}
    best = table3_rows(result.rows, "test", "val")
    assert [r["model"] for r in best] == ["ar", "diffusion", "diffusion"]
    for r in best[1:]:
        assert r["split"] == "test"
        same = {x["td"]: x["bleu4"] for x in result.rows if x["split"] == "val" and x["steps"] == r["steps"]}
        assert same[r["td"]] == max(same.values())  # chosen on val, not on test
    text = render_markdown(result, "bitcompose caption sweep --preset scenes-tiny")
    assert (
        "Table 3" in text
        and "Table 4" in text
        and "| 2 |" in text
        and "chosen per row by its BLEU-4 on the **val**" in text
    )
    json.dumps(result.rows)  # JSON-serialisable


def test_table3_chooses_td_on_the_selection_split() -> None:
    def row(split: str, td: float, bleu: float) -> dict[str, object]:
        return {"model": "diffusion", "steps": 5, "td": td, "split": split, "bleu4": bleu}

    rows = [{"model": "ar", "steps": 9, "td": None, "split": "test", "bleu4": 0.5}]
    rows += [row("val", 1.0, 0.3), row("val", 2.0, 0.2), row("test", 1.0, 0.25), row("test", 2.0, 0.4)]
    assert table3_rows(rows, "test", "val")[1] == rows[3]  # td 1 wins on val; its test score is reported
    assert table3_rows(rows, "test", "test")[1] == rows[4]  # the optimistic choice on test itself
    assert table3_rows(rows)[1] == rows[4]


def test_same_run_accepts_configs_written_before_newer_fields() -> None:
    run = preset("scenes-tiny")
    stored = run.to_dict()
    stored.pop("init_from")  # a run saved before the field existed
    assert run.same_run(stored)
    assert not preset("scenes-tiny", seed=5).same_run(stored)
    assert not run.same_run({"no_such_field": 1})
    # the cache spec holds what changes the weights (init_from included), not the logging fields
    assert run.cache_spec()["init_from"] == "" and not {"log_every", "save_every"} & set(run.cache_spec())
    assert preset("scenes-small-long").init_from == "scenes-small"
