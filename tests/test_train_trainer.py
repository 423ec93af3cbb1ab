from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _train_tiny import tiny_config, tiny_dataset
from bitcompose.data.images import ImageDataset
from bitcompose.images.model import load_model
from bitcompose.images.trainer import ImageTrainer as Trainer
from bitcompose.images.trainer import learning_rate
from bitcompose.training.checkpoint import load_checkpoint


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_resume_is_exact(tmp_path: Path) -> None:
    cfg = tiny_config(steps=6, sample_every=3)
    data = tiny_dataset()
    straight = Trainer(cfg, tmp_path / "a", dataset=data, progress=False)
    straight.train()
    first = Trainer(cfg, tmp_path / "b", dataset=data, progress=False)
    assert first.train(until=4).step == 4
    del first
    resumed = Trainer(cfg, tmp_path / "b", dataset=data, resume=True, progress=False)
    assert resumed.step == 4
    resumed.train()
    for name, p in straight.net.state_dict().items():
        assert torch.equal(p, resumed.net.state_dict()[name]), name
    for name, p in straight.ema.state_dict().items():
        assert torch.equal(p, resumed.ema.state_dict()[name]), name
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for k in sa:
        assert torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
    assert torch.equal(straight.preview_generator.get_state(), resumed.preview_generator.get_state())
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert [r[0] for r in _losses(tmp_path / "a")] == [2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "a" / "samples").iterdir()) == [
        "step_0000003.png",
        "step_0000006.png",
    ]
    ck = load_checkpoint(tmp_path / "b" / "checkpoint")
    assert ck.training_state["step"] == 6


def test_resume_after_crash_truncates_metrics(tmp_path: Path) -> None:
    cfg = tiny_config(steps=6, checkpoint_every=2)
    data = tiny_dataset()
    t = Trainer(cfg, tmp_path / "r", dataset=data, progress=False)
    t.train(until=4)  # saves at 2 (periodic) and 4 (end of call)
    # Simulate a crash after a later log line: append a line for step 6 that the checkpoint (step 4) lacks.
    with open(tmp_path / "r" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "loss": 123.0}) + "\n")
    Trainer(cfg, tmp_path / "r", dataset=data, resume=True, progress=False)
    assert [s for s, _ in _losses(tmp_path / "r")] == [2, 4]


def test_existing_run_needs_resume_and_matching_config(tmp_path: Path) -> None:
    cfg = tiny_config(steps=2)
    data = tiny_dataset()
    Trainer(cfg, tmp_path / "r", dataset=data, progress=False).train()
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        Trainer(cfg, tmp_path / "r", dataset=data, progress=False)
    other = cfg.with_overrides(["optim.lr=0.5", "model.base_channels=16"])
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in model\.base_channels, optim\.lr"):
        Trainer(other, tmp_path / "r", dataset=data, resume=True, progress=False)
    # Only the step budget changed: allowed.
    more = cfg.with_overrides(["steps=3"])
    assert Trainer(more, tmp_path / "r", dataset=data, resume=True, progress=False).train().step == 3


def test_corrupt_and_mismatched_checkpoints(tmp_path: Path) -> None:
    cfg = tiny_config(steps=2)
    data = tiny_dataset()
    Trainer(cfg, tmp_path / "r", dataset=data, progress=False).train()
    ck = tmp_path / "r" / "checkpoint"
    loaded = load_model(tmp_path / "r")
    assert loaded.step == 2 and loaded.ema and loaded.spec.num_classes == 3
    # A config whose model does not match the stored weights.
    conf = json.loads((ck / "config.json").read_text())
    conf["train"]["model"]["base_channels"] = 16
    (ck / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="do not match the configured model"):
        load_model(tmp_path / "r")
    with pytest.raises(ValueError, match="do not match the configured model"):
        Trainer(cfg.with_overrides(["model.base_channels=16"]), tmp_path / "r", dataset=data, resume=True)
    # A truncated weights file.
    conf["train"]["model"]["base_channels"] = 8
    (ck / "config.json").write_text(json.dumps(conf))
    raw = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="corrupt checkpoint file"):
        Trainer(cfg, tmp_path / "r", dataset=data, resume=True, progress=False)
    # A foreign config.json.
    (ck / "model.safetensors").write_bytes(raw)
    (ck / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not an image Bit Diffusion checkpoint"):
        load_model(tmp_path / "r")


def test_data_checks() -> None:
    data = tiny_dataset()
    unlabelled = ImageDataset(images=data.images, labels=None, num_values=4, num_classes=0, name="u")
    with pytest.raises(ValueError, match="has no labels"):
        Trainer(tiny_config(), "unused", dataset=unlabelled, progress=False)
    wide = ImageDataset(
        images=torch.zeros(4, 1, 4, 6, dtype=torch.long), labels=None, num_values=4, num_classes=0, name="w"
    )
    with pytest.raises(ValueError, match="square"):
        Trainer(tiny_config(), "unused", dataset=wide, progress=False)


def test_warmup_schedule() -> None:
    cfg = tiny_config()  # lr 1e-3, 3 warm-up steps
    assert [learning_rate(cfg, s) for s in range(5)] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3, 1e-3])
    assert learning_rate(cfg.with_overrides(["optim.warmup_steps=0"]), 0) == 1e-3
