"""Precision settings (auto / fp32 / bf16), the functional energy loss, and the fp32 pieces under bf16."""

from __future__ import annotations

import pytest
import torch

import bitcompose.core.precision as precision
from _train_tiny import tiny_config, tiny_dataset
from bitcompose import sample
from bitcompose.compose import EnergyModel
from bitcompose.compose.ddpm_models import denoising_loss, functional_denoising_loss
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.images.model import load_model
from bitcompose.images.trainer import ImageTrainer
from bitcompose.nets.mlp import ResidualMLP


def test_auto_picks_bf16_only_where_the_hardware_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.resolve_precision("auto", "cuda") == "bf16"
    assert precision.resolve_precision("fp32", "cuda") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp16", "cpu")


def test_bf16_on_a_cpu_that_emulates_it_is_said_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    precision._slow_bf16_notice.cache_clear()
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.resolve_precision("bf16", "cpu") == "bf16"  # asked for: kept, but said
    precision.resolve_precision("bf16", "cpu")
    assert capsys.readouterr().err.count("bf16 is emulated") == 1
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    precision._slow_bf16_notice.cache_clear()
    precision.resolve_precision("bf16", "cpu")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_each_precision_trains_and_samples(prec: str, tmp_path: object) -> None:
    cfg = tiny_config(steps=2, precision=prec)
    trainer = ImageTrainer(cfg, tmp_path, dataset=tiny_dataset(), progress=False)  # type: ignore[arg-type]
    assert trainer.precision == prec
    result = trainer.train()
    assert result.step == 2 and torch.isfinite(torch.tensor(result.loss))
    # the EMA (sampling) weights stay fp32 whatever the compute precision
    assert all(p.dtype == torch.float32 for p in trainer.ema.module.parameters())
    model = load_model(tmp_path)  # type: ignore[arg-type]
    shape = (4, model.codec.num_bits, 4, 4)
    bits = sample(model.denoiser, shape, steps=3, cond=torch.arange(4) % 3, precision=prec,
                  generator=torch.Generator().manual_seed(0)).samples  # fmt: skip
    assert bits.dtype == torch.float32 and bits.abs().max() <= 1.0  # x0 estimates stay fp32 and clipped


def test_functional_energy_loss_equals_the_autograd_one() -> None:
    sched = DiscreteSchedule.cosine(20)
    model = EnergyModel(ResidualMLP(generator=torch.Generator().manual_seed(0)), sched)
    torch.nn.init.normal_(model.net.fc_out.weight, std=0.1)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    levels = torch.randint(0, 20, (64,), generator=g)
    abar = sched.alphas_cumprod[levels].float()[:, None]
    grads = []
    for fn in (denoising_loss, functional_denoising_loss):
        model.zero_grad()
        loss = fn(model, x0, levels, noise, abar)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))  # type: ignore[union-attr]
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
