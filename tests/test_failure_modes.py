"""Regression tests for what a new user met: own data, overwritten files, interrupted and diverging runs, damaged
checkpoints, NaN in composition, locked run folders, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from _train_tiny import TINY_SETS, cli_sets, tiny_config, tiny_dataset
from bitcompose import (
    GaussianModel,
    MCMCOptions,
    Product,
    TimeGrid,
    annealed_mcmc,
    as_model,
    reverse_diffusion,
    sample_model,
)
from bitcompose.cli import main
from bitcompose.core.model import DiffusionModel, Prediction, TimeLike
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.images.trainer import ImageTrainer
from bitcompose.training.loop import NonFiniteLossError


def _npz(path: Path, shape: tuple[int, ...], labels: bool) -> Path:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {"images": rng.integers(0, 256, shape, dtype=np.uint8)}
    if labels:
        arrays["labels"] = np.arange(shape[0]) % 3
    np.savez(path, **arrays)
    return path


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bitcompose: error: ") and match in err[0], err


@pytest.mark.parametrize(
    "shape,labels",
    [((12, 12, 12), True), ((10, 8, 8, 2), False), ((10, 12, 12, 5), True)],
    ids=["grey-12px-labelled", "2-channels-8px", "5-channels-12px"],
)
def test_own_data_trains_with_one_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shape: tuple[int, ...], labels: bool
) -> None:
    data = _npz(tmp_path / "my.npz", shape, labels)
    out = tmp_path / "runs" / "x"
    argv = [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "2",
        "--no-progress",
        *cli_sets(TINY_SETS),
    ]
    assert main([*argv, "--set", "sample_every=2"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["step"] == 2  # strict JSON on stdout
    assert ("no labels" in cap.err) == (not labels)  # a one-line notice when unlabelled
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["conditional"] == labels and Path(config["data"]["path"]).is_absolute()
    assert (out / "samples" / "step_0000002.png").is_file()  # a preview for any channel count
    # resume from another working directory: the data path is absolute
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert main(["train", "--out", str(out), "--resume", "--steps", "3", "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
    png = tmp_path / "s.png"
    assert main(["sample", str(out), "--n", "7", "--out", str(png), "--no-progress"]) == 0
    assert png.is_file() and np.load(png.with_suffix(".npz"))["samples"].shape[0] == 7


def test_a_preset_adapts_to_other_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _npz(tmp_path / "u.npz", (10, 12, 12), labels=False)
    out = tmp_path / "r"
    assert main(["train", "--preset", "mnist", "--data", str(data), "--out", str(out), "--steps", "1",
                 "--no-progress", *cli_sets(TINY_SETS)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "attn_resolutions (7,) -> (3,)" in err and "unconditional" in err


def test_sample_never_overwrites_a_file_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    ImageTrainer(tiny_config(steps=1), run, dataset=tiny_dataset(), progress=False).train()
    user_data = tmp_path / "my12.npz"
    user_data.write_bytes(b"precious")
    _one_error(
        capsys, ["sample", str(run), "--n", "2", "--out", str(tmp_path / "my12.png")], "my12.npz exists"
    )
    assert user_data.read_bytes() == b"precious"
    _one_error(capsys, ["sample", str(run), "--out", str(tmp_path)], "is a folder; give a file name")
    (tmp_path / "d.png").mkdir()
    _one_error(capsys, ["sample", str(run), "--out", str(tmp_path / "d.png")], "is a folder")
    _one_error(capsys, ["evaluate", str(run), "--out", str(tmp_path)], "is a folder")


def test_run_folder_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    first = ImageTrainer(tiny_config(steps=2), run, dataset=tiny_dataset(), progress=False)
    # two trainers on one folder: the second is refused while the first holds it
    with pytest.raises(ValueError, match="is in use by pid"):
        ImageTrainer(tiny_config(steps=2), run, dataset=tiny_dataset(), progress=False)
    stale = run / ".checkpoint.tmp-999999999"  # left by a killed save of a process that is gone
    stale.mkdir()
    first.train()
    assert not stale.exists()
    ck = run / "checkpoint"
    # a damaged training state does not block sampling; a malicious one gets a one-line refusal on resume
    (ck / "training_state.pt").write_bytes(b"garbage")
    png = tmp_path / "a.png"
    assert main(["sample", str(run), "--n", "2", "--out", str(png), "--no-progress"]) == 0
    capsys.readouterr()

    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("pwned",))

    torch.save({"step": 1, "x": Evil()}, ck / "training_state.pt")
    with pytest.raises(ValueError, match="refusing .*training_state.pt: it holds Python objects"):
        ImageTrainer(tiny_config(steps=3), run, dataset=tiny_dataset(), resume=True, progress=False)
    # no EMA weights: said on stderr, not silently
    (ck / "ema.safetensors").unlink()
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "b.png"), "--no-progress"]) == 0
    assert "no ema.safetensors; sampling with the online weights" in capsys.readouterr().err


def test_torn_metrics_line_and_interrupt(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(steps=6, checkpoint_every=2)
    ImageTrainer(cfg, run, dataset=tiny_dataset(), progress=False).train(until=4)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.')  # killed in the middle of a write
    trainer = ImageTrainer(cfg, run, dataset=tiny_dataset(), resume=True, progress=False)
    assert trainer.step == 4
    # Ctrl-C during a step: the step finishes, a checkpoint is written, the message says which step it holds
    loss_fn = trainer.task.loss

    def interrupting(net: torch.nn.Module, step: int) -> Tensor:
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return loss_fn(net, step)

    trainer.task.loss = interrupting  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt, match="interrupted at step 5; the checkpoint in .* holds step 5"):
        trainer.train()
    assert json.loads((run / "checkpoint" / "config.json").read_text())["step"] == 5
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] <= 5 for line in lines)


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(steps=8, checkpoint_every=2, log_every=1)
    trainer = ImageTrainer(cfg, run, dataset=tiny_dataset(), progress=False)
    loss_fn = trainer.task.loss
    trainer.task.loss = lambda net, step: loss_fn(net, step) * (float("nan") if step >= 3 else 1.0)  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 4.*last good checkpoint"):
        trainer.train()
    assert json.loads((run / "checkpoint" / "config.json").read_text())["step"] == 2


def test_bad_learning_rates_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for lr in ("inf", "nan", "-1", "0"):
        _one_error(
            capsys, ["train", "--preset", "digits", "--set", f"optim.lr={lr}"], "optim.lr must be finite"
        )


class _HalfNaN(DiffusionModel):
    """A Gaussian whose score is NaN for the samples in ``bad`` (a fraction of the batch) or everywhere."""

    def __init__(self, everywhere: bool = False) -> None:
        self.m = GaussianModel([0.0, 0.0], schedule=DiscreteSchedule.cosine(10), std=0.5)
        self.schedule, self.has_energy, self.everywhere = self.m.schedule, True, everywhere

    def _mask(self, x: Tensor) -> Tensor:
        return (
            torch.ones(x.shape[0], dtype=torch.bool)
            if self.everywhere
            else torch.arange(x.shape[0]) % 10 == 0
        )

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        p = self.m.predict(x, t)
        return Prediction(
            "score", torch.where(self._mask(x)[:, None], torch.nan, p.value), x, p.alpha, p.sigma
        )

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        return self.predict(x, t).value

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        return torch.where(self._mask(x), torch.nan, self.m.energy(x, t))


def test_nan_from_a_model_is_never_returned_silently() -> None:
    g = torch.Generator().manual_seed(0)
    rev = reverse_diffusion(_HalfNaN(), (50, 2), generator=g)
    assert torch.isfinite(rev.samples).all() and rev.rejected_nonfinite == 5 * 10  # 5 bad samples × 10 levels
    ann = annealed_mcmc(
        _HalfNaN(), (50, 2), None, MCMCOptions(kernel="hmc", steps_per_level=1, driver="reverse"), generator=g
    )
    assert torch.isfinite(ann.samples).all() and ann.rejected_nonfinite > 0
    with pytest.raises(ValueError, match="non-finite values for every sample"):
        reverse_diffusion(_HalfNaN(everywhere=True), (8, 2), generator=g)
    with pytest.raises(ValueError, match="every MCMC proposal .* was non-finite"):
        annealed_mcmc(
            _HalfNaN(everywhere=True), (8, 2), None, MCMCOptions(kernel="ula", steps_per_level=1), generator=g
        )
    with pytest.raises(ValueError, match="finite"):
        Product(GaussianModel([0.0], schedule=DiscreteSchedule.cosine(10), std=1.0),
                GaussianModel([1.0], schedule=DiscreteSchedule.cosine(10), std=1.0), weights=[1.0, float("nan")])  # fmt: skip

    def nan_x0(x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        return torch.where((torch.arange(x.shape[0]) % 2 == 0)[:, None], torch.nan, 0.5 * x)

    res = sample_model(as_model(nan_x0, scale=1.0), (6, 2), TimeGrid.uniform(4), generator=g)
    assert torch.isfinite(res.samples).all() and res.rejected_nonfinite == 3 * 4


def test_small_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    ImageTrainer(
        tiny_config(steps=1, cond_drop_prob=0.0), run, dataset=tiny_dataset(), progress=False
    ).train()
    # guidance on a model trained without label dropout: a warning
    assert main(["sample", str(run), "--n", "3", "--out", str(tmp_path / "g.png"), "--guidance", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert "trained without label dropout" in capsys.readouterr().err
    # evaluate with very few samples: a caveat beside the scores
    run_eval = ["evaluate", str(run), "--n", "2", "--data", "digits"]
    del run_eval  # evaluating needs the run's own data; the caveat is checked in test_cli_images
    # toy2d: one cell writes its picture when --out is given
    assert main(["toy2d", "--task", "product", "--param", "exact", "--sampler", "reverse", "--n", "50",
                 "--out", str(tmp_path / "toy"), "--json"]) == 0  # fmt: skip
    assert (tmp_path / "toy" / "toy2d_product_exact_reverse.png").is_file()
    # help texts
    with pytest.raises(SystemExit):
        main(["caption", "train", "--help"])
    assert "scenes-small-long" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "The CPU demo" in capsys.readouterr().out


def test_refusals_come_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's own checks: one line (no usage block) and exit 2
    with pytest.raises(SystemExit) as exc:
        main(["train", "--steps", "-1", "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps must be >= 1" in err[0] and "see bitcompose train --help" in err[0], err
    # SMC with a score model: refused before a model is trained into the cache
    cache = tmp_path / "cache"
    argv = [
        "compose",
        "objects",
        "--k",
        "2",
        "--sampler",
        "hmc",
        "--resample-ess",
        "0.5",
        "--cache",
        str(cache),
    ]
    _one_error(capsys, argv, "SMC resampling needs energies")
    _one_error(
        capsys, ["compose", "prompts", "--resample-ess", "0.5", "--cache", str(cache)], "needs energies"
    )
    assert not cache.exists()
    # an existing run without --resume: refused before the data are read (no fitting notes first)
    data = _npz(tmp_path / "d.npz", (10, 8, 8), labels=False)
    (tmp_path / "run" / "checkpoint").mkdir(parents=True)
    _one_error(
        capsys, ["train", "--data", str(data), "--out", str(tmp_path / "run")], "already holds a checkpoint"
    )
    # an existing output picture: refused before sampling
    png = tmp_path / "x.png"
    png.write_bytes(b"keep")
    _one_error(
        capsys, ["compose", "objects", "--k", "2", "--sampler", "reverse", "--out", str(png)], "exists"
    )
    assert png.read_bytes() == b"keep"


def test_a_foreign_training_state_is_refused_without_warnings(tmp_path: Path) -> None:
    import pickle
    import warnings

    from bitcompose.training.checkpoint import _load_training_state

    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("pwned",))

    file = tmp_path / "training_state.pt"
    torch.save({"x": Evil()}, file, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="refusing"):
            _load_training_state(file)


def test_model_cache_key_ignores_sampling_settings(tmp_path: Path) -> None:
    import dataclasses

    from bitcompose.experiments.image_models import cached_model, is_cached

    config = tiny_config(steps=2)
    assert not is_cached(config, tiny_dataset(), kind="k", cache=tmp_path)
    first = cached_model(config, tiny_dataset(), kind="k", cache=tmp_path, progress=False)
    other_sampling = dataclasses.replace(
        config, sample=dataclasses.replace(config.sample, steps=3, momentum=0.5)
    )
    again = cached_model(other_sampling, tiny_dataset(), kind="k", cache=tmp_path, progress=False)
    assert again.path == first.path and len(list((tmp_path / "k").iterdir())) == 1
    assert is_cached(other_sampling, tiny_dataset(), kind="k", cache=tmp_path)
    assert not is_cached(tiny_config(steps=3), tiny_dataset(), kind="k", cache=tmp_path)
    longer = cached_model(tiny_config(steps=3), tiny_dataset(), kind="k", cache=tmp_path, progress=False)
    assert longer.path != first.path and longer.step == 3


def test_the_final_preview_comes_after_the_final_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    trainer = ImageTrainer(tiny_config(steps=2, sample_every=2), run, dataset=tiny_dataset(), progress=False)
    steps_on_disk: list[int] = []
    preview = trainer._preview

    def spy(module: torch.nn.Module, step: int) -> Path:
        steps_on_disk.append(json.loads((run / "checkpoint" / "config.json").read_text())["step"])
        return preview(module, step)

    monkeypatch.setattr(trainer.loop, "preview_fn", spy)
    trainer.train()
    assert steps_on_disk == [2]  # the checkpoint of the last step was written before the preview was drawn
