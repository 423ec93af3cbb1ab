"""Tests of the residual MLP and of the cached training of the 2-D component models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bitcompose.compose import EnergyModel, EpsModel, eps_loss
from bitcompose.experiments.cache import cache_root
from bitcompose.nets.mlp import ResidualMLP, ResidualMLPConfig
from bitcompose.toy2d.train import DATASETS, TrainConfig, load_or_train, make_model, train


def test_mlp_shapes_zero_init_and_size() -> None:
    net = ResidualMLP(generator=torch.Generator().manual_seed(0))
    x, t = torch.randn(7, 2), torch.randint(0, 100, (7,))
    out = net(x, t)
    assert out.shape == (7, 2)
    assert torch.equal(out, torch.zeros(7, 2))  # zero-initialised output layer
    for block in net.blocks:
        assert torch.equal(block.fc_out.weight, torch.zeros_like(block.fc_out.weight))
    n_params = sum(p.numel() for p in net.parameters())
    assert 560_000 < n_params < 580_000  # the notebook's ~0.57M-parameter model
    # the zero layers still receive gradients, so training can start
    (net(x, t) - torch.ones(7, 2)).pow(2).sum().backward()
    assert net.fc_out.weight.grad is not None and float(net.fc_out.weight.grad.abs().sum()) > 0


def test_mlp_seeded_init_is_deterministic_and_validates() -> None:
    a = ResidualMLP(generator=torch.Generator().manual_seed(3))
    b = ResidualMLP(generator=torch.Generator().manual_seed(3))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    w = a.blocks[0].fc_in.weight.detach()
    assert float(w.abs().max()) <= 2 / 128**0.5 + 1e-6  # truncated at two standard deviations
    with pytest.raises(ValueError, match="integer t"):
        a(torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        a(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_blocks"):
        ResidualMLPConfig(num_blocks=0)


def test_make_model_parameterisations() -> None:
    assert isinstance(make_model(TrainConfig("bar", "score")), EpsModel)
    energy = make_model(TrainConfig("bar", "energy"))
    assert isinstance(energy, EnergyModel) and energy.kind == "diff"
    # untrained energy model is E = ||x||^2 (zero-init), so eps = 2x
    x = torch.randn(5, 2)
    assert torch.allclose(energy.eps(x, 0.11), 2 * x)


def _eval_loss(model: torch.nn.Module, dataset: str) -> float:
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        x0 = DATASETS[dataset].sample(4000, g)
    model.eval()
    return float(eps_loss(model, x0, generator=g).detach())


def test_training_reduces_the_loss() -> None:
    cfg = TrainConfig("box_0.7", "score", steps=40, batch=256, lr=3e-3)
    before = _eval_loss(make_model(cfg), "box_0.7")
    trained = train(cfg)
    after = _eval_loss(trained.model, "box_0.7")
    assert after < 0.85 * before
    assert not any(p.requires_grad for p in trained.model.parameters())


def test_cache_hit_skips_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TrainConfig("bar", "energy", steps=3, batch=64)
    first = load_or_train(cfg, cache=tmp_path)
    assert not first.from_cache
    entry = tmp_path / "toy2d" / cfg.key()
    assert (entry / "checkpoint" / "ema.safetensors").is_file() and (entry / "complete.json").is_file()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("training must not run on a cache hit")

    monkeypatch.setattr("bitcompose.toy2d.train.train", boom)
    second = load_or_train(cfg, cache=tmp_path)
    assert second.from_cache
    for (ka, a), (kb, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(a, b)
    x = torch.randn(4, 2)
    assert torch.allclose(first.model.score(x, 0.06), second.model.score(x, 0.06))


def test_cache_key_covers_the_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = TrainConfig("ring", "score")
    keys = {
        base.key(),
        TrainConfig("ring", "energy").key(),
        TrainConfig("ring", "score", steps=10).key(),
        TrainConfig("ring", "score", seed=1).key(),
        TrainConfig("ring", "score", lr=2e-3).key(),
        TrainConfig("bar", "score").key(),
        TrainConfig("ring", "score", batch=10).key(),
    }
    assert len(keys) == 7 and base.key() == TrainConfig("ring", "score").key()
    monkeypatch.setenv("BITCOMPOSE_CACHE", str(tmp_path))
    assert cache_root() / "toy2d" == tmp_path / "toy2d"
    monkeypatch.delenv("BITCOMPOSE_CACHE")
    assert cache_root() / "toy2d" == Path.home() / ".cache" / "bitcompose" / "toy2d"
    assert cache_root("x") == Path("x")  # --cache is the root in every subcommand


def test_train_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown toy2d dataset"):
        TrainConfig("spiral")
    with pytest.raises(ValueError, match="param"):
        TrainConfig("bar", "logits")
    with pytest.raises(ValueError, match="invalid training"):
        TrainConfig("bar", steps=-1)
