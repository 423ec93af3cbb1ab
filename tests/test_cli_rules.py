"""The command line's rules, each tested once: the output rule, options that would be ignored, interrupts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bitcompose.cli import main
from bitcompose.cli.caption import _decoding
from bitcompose.cli.errors import CLIError
from bitcompose.cli.types import output_folder, output_path


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_the_output_rule(tmp_path: Path) -> None:
    fresh = output_path(tmp_path / "a" / "b.png", suffix=".png")
    assert fresh.parent.is_dir() and not fresh.exists()  # the folder is made, no file yet
    assert not list(fresh.parent.iterdir())  # the write probe leaves nothing behind
    with pytest.raises(CLIError, match=r"must end in \.png"):
        output_path(tmp_path / "b.jpg", suffix=".png")
    existing = tmp_path / "c.json"
    existing.write_text("{}")
    with pytest.raises(CLIError, match="exists; choose another name or pass --overwrite"):
        output_path(existing)
    assert output_path(existing, overwrite=True) == existing
    with pytest.raises(CLIError, match="is a folder"):
        output_path(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "data.npz").write_bytes(b"the run's own data")
    with pytest.raises(CLIError, match="belongs to the run"):
        output_path(run / "data.npz", overwrite=True, protect=run)  # never, even with --overwrite
    assert output_path(run / "new.png", protect=run) == run / "new.png"  # a new file there is fine
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(CLIError, match="cannot create the folder"):
        output_path(blocked / "x.png")
    # a table's results folder: given, not a file, writable; made before any work
    assert output_folder(tmp_path / "new" / "table", example="docs/results/x") == tmp_path / "new" / "table"
    assert not (tmp_path / "new").exists()  # nothing made: a command refused later leaves no trace
    with pytest.raises(CLIError, match="--table needs --out DIR"):
        output_folder(None, example="docs/results/x")
    with pytest.raises(CLIError, match="must be a folder"):
        output_folder(blocked, example="x")
    with pytest.raises(CLIError, match="cannot write into --out"):
        output_folder(blocked / "table", example="x")


def test_demo_keeps_an_earlier_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    _one_error(capsys, ["demo", "--out", str(tmp_path)], "holds an earlier demo (metrics.json)")
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_options_that_would_be_ignored_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    _one_error(
        capsys, ["toy2d", "--sampler", "reverse", "--resample-ess", "0.5"], "--sampler reverse has none"
    )
    _one_error(
        capsys, ["toy2d", "--task", "product", "--mixture-sharpen", "3.5"], "applies to --task mixture"
    )
    _one_error(capsys, ["toy2d", "--param", "score", "--train-steps", "0"], "untrained networks")

    def ns(**kw: object) -> argparse.Namespace:
        return argparse.Namespace(**{"steps": None, "td": None, "beam": None, "decode": None, **kw})

    assert _decoding(ns(td=1.0), "diffusion") == {"steps": 10, "td": 1.0, "decode": "bits", "beam": 1}
    with pytest.raises(CLIError, match="--beam applies to the autoregressive captioner"):
        _decoding(ns(beam=3), "diffusion")
    with pytest.raises(CLIError, match="--td applies to the diffusion captioner"):
        _decoding(ns(td=3.0), "ar")
    with pytest.raises(CLIError, match="must be below --steps"):
        _decoding(ns(td=10.0), "diffusion")


def test_an_interrupt_says_what_was_interrupted_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bitcompose.experiments.runner as runner

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    def too_big(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr("bitcompose.toy2d.run.run_cell", too_big)
    _one_error(capsys, ["toy2d", "--param", "exact"], "out of memory; lower --n or the batch size")
    monkeypatch.setattr("bitcompose.toy2d.run.run_cell", interrupted)
    assert main(["toy2d", "--param", "exact"]) == 130
    assert capsys.readouterr().err.strip() == "bitcompose toy2d: interrupted; nothing was written"
    monkeypatch.setattr(runner, "run_experiment", interrupted)
    # the table path goes through run_table, which says where the finished cells are
    out = tmp_path / "table"
    assert main(["toy2d", "--table", "--out", str(out), "--tasks", "product", "--params", "exact"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("bitcompose toy2d: interrupted; the finished cells are kept in")
    assert err.endswith("the same command resumes the table")


def test_every_experiment_command_takes_train_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """--train-steps reaches the model of a one-cell run and of a table (a new cache key, so a short model never
    stands in for the recipe's); the default steps keep the recipe's key."""
    from bitcompose.guidance.models import model_key as guidance_key
    from bitcompose.objects.models import DEFAULT_STEPS
    from bitcompose.objects.models import model_key as objects_key
    from bitcompose.objects.table import ObjectsExperiment, TablePlan

    seen: dict[str, object] = {}

    def fake_cell(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr("bitcompose.objects.cells.objects_cell", fake_cell)
    assert main(["compose", "objects", "--k", "2", "--sampler", "reverse", "--train-steps", "50"]) == 130
    assert seen["train_steps"] == 50
    assert objects_key("position", "score") == objects_key("position", "score", DEFAULT_STEPS["score"])
    assert objects_key("position", "score", 50) != objects_key("position", "score")
    assert guidance_key("digits", "score", 50) != guidance_key("digits", "score")
    short = ObjectsExperiment(TablePlan(), train_steps=50).settings()["models"]
    assert short["position-score"] == objects_key("position", "score", 50)


def test_train_takes_a_folder_of_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import numpy as np
    from PIL import Image

    from _train_tiny import TINY_SETS, cli_sets

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "png" / c).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)).save(
                tmp_path / "png" / c / f"{i}.png"
            )
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "png"), "--out", str(run), "--steps", "1", "--no-progress"]
    assert main([*argv, *cli_sets(TINY_SETS)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["name"] == "png" and config["data"]["conditional"] is True
    assert "png:png: 12 images 1x4x4, 4 values, 2 classes" in capsys.readouterr().err


def test_non_square_images_are_refused_unless_cropped_or_padded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import numpy as np

    from _train_tiny import TINY_SETS, cli_sets
    from bitcompose.data.images import load_image_dataset, square_images
    from bitcompose.experiments.cache import cache_key
    from bitcompose.experiments.image_models import _spec
    from bitcompose.images.config import preset

    wide = np.arange(2 * 1 * 4 * 6).reshape(2, 1, 4, 6)
    assert (square_images(wide, "crop") == wide[:, :, :, 1:5]).all()
    padded = square_images(wide, "pad")
    assert padded.shape == (2, 1, 6, 6) and (padded[:, :, 1:5] == wide).all()
    assert padded[:, :, [0, 5]].sum() == 0  # level 0 around the image
    assert square_images(padded, "crop") is padded  # square images are left as they are
    with pytest.raises(ValueError, match="fit must be one of crop, pad"):
        square_images(wide, "stretch")
    file = tmp_path / "wide.npz"
    rng = np.random.default_rng(0)
    np.savez(file, images=rng.integers(0, 256, (8, 4, 6), dtype=np.uint8), labels=np.arange(8) % 2)
    assert load_image_dataset("npz", path=str(file), fit="crop").image_shape == (1, 4, 4)
    argv = ["train", "--data", str(file), "--steps", "1", "--no-progress", *cli_sets(TINY_SETS)]
    _one_error(capsys, [*argv, "--out", str(tmp_path / "r0")], "pass --crop (the central square) or --pad")
    assert main([*argv, "--out", str(tmp_path / "r1"), "--pad"]) == 0
    config = json.loads((tmp_path / "r1" / "config.json").read_text())
    assert config["data"]["fit"] == "pad" and "1x6x6" in capsys.readouterr().err
    # keys made before data.fit existed still hold (this one was computed before the field was added)
    assert cache_key(_spec(preset("digits")), "fp") == "aa005ed0762e9b83"
    assert cache_key(_spec(preset("digits").with_overrides(["data.fit=crop"])), "fp") != "aa005ed0762e9b83"


def test_the_wait_policy_is_passive_only_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from bitcompose._threads import busy, choose_wait_policy

    assert busy(3.2, 2) and not busy(0.45, 2) and busy(1.5, 2)
    monkeypatch.setattr("os.getloadavg", lambda: (3.2, 3.0, 2.5))
    env: dict[str, str] = {}
    assert choose_wait_policy(env) == "PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    mine = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_wait_policy(mine) is None and mine == {
        "OMP_WAIT_POLICY": "ACTIVE"
    }  # the user's choice stays
    monkeypatch.setattr("os.getloadavg", lambda: (0.4, 0.5, 0.5))
    idle: dict[str, str] = {}
    assert choose_wait_policy(idle) is None and idle == {}
