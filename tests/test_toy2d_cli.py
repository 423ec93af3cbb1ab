"""Tests of ``bitcompose toy2d`` (JSON output with a tiny training budget, not-applicable cells, errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitcompose.cli import main

KEYS = {
    "task",
    "param",
    "sampler",
    "log_likelihood",
    "oracle_log_likelihood",
    "w2",
    "mmd",
    "in_support",
    "acceptance",
    "nfe",
    "seed",
    "train_steps",
    "seconds",
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["toy2d", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_one_json_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        *("--task", "negation", "--param", "score", "--sampler", "reverse", "--n", "64"),
        *("--train-steps", "2", "--cache", str(tmp_path), "--json", "--seed", "3"),
    )
    assert code == 0
    assert len(out.strip().splitlines()) == 1
    res = json.loads(out)
    assert KEYS <= set(res)
    assert (res["task"], res["param"], res["sampler"], res["seed"], res["train_steps"]) == (
        "negation",
        "score",
        "reverse",
        3,
        2,
    )
    assert res["nfe"] == 100 and res["acceptance"] is None
    assert 0.0 <= res["in_support"] <= 1.0 and res["w2"] > 0
    assert res["oracle_log_likelihood"] == pytest.approx(-0.4767, abs=1e-3)
    assert len(list((tmp_path / "toy2d").iterdir())) == 2  # the two component models were cached


@pytest.mark.slow
def test_cli_metropolis_sampler_reports_acceptance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        *("--task", "product", "--param", "energy", "--sampler", "mala", "--n", "16"),
        *("--train-steps", "1", "--cache", str(tmp_path), "--json"),
    )
    res = json.loads(out)
    assert code == 0 and 0.0 <= res["acceptance"] <= 1.0 and res["nfe"] >= 1000


def test_cli_mixture_with_score_models_is_not_applicable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--task", "mixture", "--param", "score", "--sampler", "hmc", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["applicable"] is False and "energies" in res["reason"]
    assert res["log_likelihood"] is None and res["w2"] is None and res["in_support"] is None


def test_cli_exact_components_with_more_steps_per_level(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        *("--task", "mixture", "--param", "exact", "--sampler", "ula", "--n", "32"),
        *("--steps-per-level", "2", "--json"),
    )
    res = json.loads(out)
    assert code == 0 and res["param"] == "exact" and res["train_steps"] is None
    assert res["steps_per_level"] == 2 and res["nfe"] == 100 * 2 + 1  # 2 ULA steps per level + final step
    assert res["in_support"] > 0.9


@pytest.mark.parametrize(
    "argv",
    [
        ["--task", "spiral"],
        ["--sampler", "euler"],
        ["--param", "logits"],
        ["--n", "1"],
        ["--train-steps", "-5"],
        ["--seed", "x"],
        ["--steps-per-level", "0"],
        ["--resample-ess", "0"],
    ],
)
def test_cli_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["toy2d", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_cli_resampling_is_refused_for_score_models(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--param", "score", "--resample-ess", "0.5", "--n", "8")
    assert code == 2 and err.count("\n") == 1 and "energies" in err
    code, _, err = _run(capsys, "--table", "--params", "score", "--resample-ess", "0.5")
    assert code == 2 and err.count("\n") == 1 and "energies" in err


def test_cli_exact_product_with_resampling(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        *("--task", "product", "--param", "exact", "--sampler", "ula", "--n", "300"),
        *("--steps-per-level", "2", "--resample-ess", "0.5", "--json"),
    )
    res = json.loads(out)
    assert code == 0 and res["resample_ess"] == 0.5 and res["resampled"] > 0
    assert res["in_support"] > 0.97


def test_cli_table_refuses_no_cache(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--table", "--no-cache")
    assert code == 2 and err.count("\n") == 1 and "bitcompose: error:" in err
