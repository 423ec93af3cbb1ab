from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bitcompose.training import checkpoint as ckpt
from bitcompose.training.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    load_state_strict,
    save_checkpoint,
)


def _save(path: Path, value: float = 1.0, ema: bool = True) -> None:
    g = torch.Generator().manual_seed(3)
    save_checkpoint(
        path,
        config={"name": "x", "value": value},
        model_state={"w": torch.full((2, 3), value), "b": torch.arange(3)},
        ema_state={"w": torch.full((2, 3), value / 2)} if ema else None,
        training_state={"step": 5, "gen": g.get_state(), "opt": {"state": {}, "param_groups": [{"lr": 0.1}]}},
    )


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    _save(path)
    c = load_checkpoint(path)
    assert c.config == {"name": "x", "value": 1.0}
    assert torch.equal(c.model_state["w"], torch.ones(2, 3))
    assert torch.equal(c.model_state["b"], torch.arange(3))
    assert c.ema_state is not None and torch.equal(c.ema_state["w"], torch.full((2, 3), 0.5))
    assert c.training_state["step"] == 5
    g = torch.Generator()
    g.set_state(c.training_state["gen"])
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=torch.Generator().manual_seed(3)))
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "ema.safetensors",
        "model.safetensors",
        "training_state.pt",
    ]
    _save(path, ema=False)
    assert load_checkpoint(path).ema_state is None


def test_overwrite_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    _save(path, 1.0)
    _save(path, 2.0)
    assert load_checkpoint(path).config["value"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_interrupted_save_keeps_last_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ck"
    _save(path, 1.0)

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        _save(path, 2.0)
    monkeypatch.undo()
    assert load_checkpoint(path).config["value"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_interrupted_between_renames_recovers(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    _save(path, 1.0)
    path.rename(tmp_path / ".ck.old")  # the state right after the first of the two renames
    assert load_checkpoint(path).config["value"] == 1.0


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    path = tmp_path / "ck"
    _save(path)
    (path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_checkpoint(path)
    _save(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt.*config.json"):
        load_checkpoint(path)
    _save(path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="corrupt.*model.safetensors"):
        load_checkpoint(path)
    _save(path)
    data = (path / "training_state.pt").read_bytes()
    (path / "training_state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt.*training_state.pt"):
        load_checkpoint(path)


def test_non_json_config(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(
            tmp_path / "c", config={"x": object()}, model_state={}, ema_state=None, training_state={}
        )
    assert not (tmp_path / "c").exists()


def test_load_state_strict_messages() -> None:
    m = nn.Linear(3, 2)
    state = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    load_state_strict(m, state)
    assert torch.equal(m.weight, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="1 missing"):
        load_state_strict(m, {"weight": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="1 unexpected"):
        load_state_strict(m, {**state, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"stored \(4, 3\) vs model \(2, 3\)"):
        load_state_strict(m, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)})


def test_find_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path / "run" / "checkpoint")
    assert find_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoint"
    assert find_checkpoint(tmp_path / "run" / "checkpoint") == tmp_path / "run" / "checkpoint"
    with pytest.raises(FileNotFoundError):
        find_checkpoint(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither"):
        find_checkpoint(tmp_path / "empty")
    json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())
