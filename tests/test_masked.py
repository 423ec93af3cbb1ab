"""The absorbing-state (masked) baseline: its loss in closed form, its sampler's schedule, its refusals."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor, nn

from bitcompose.core.bits import BitCodec
from bitcompose.diffusion.as_model import as_model
from bitcompose.diffusion.denoiser import BitDenoiser
from bitcompose.diffusion.masked import (
    MaskedDenoiser,
    mask_inputs,
    masked_loss,
    masked_sample,
    normal_to_uniform,
)
from bitcompose.images.config import ModelConfig, SampleConfig, TrainConfig

K = 5


class FixedLogits(nn.Module):
    """Returns the same logits for every symbol (ignores its input); records every input it sees."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen: list[Tensor] = []
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so that the wrapper finds a device

    def forward(self, x: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
        self.seen.append(x.clone())
        b, ck, h, w = x.shape
        return self.logits.view(1, 1, K, 1, 1).expand(b, ck // K, K, h, w).reshape(x.shape) + 0 * self.anchor


class Oracle(nn.Module):
    """Knows the clean symbols: logits +30 at the true value."""

    def __init__(self, x0: Tensor) -> None:
        super().__init__()
        self.x0 = x0

    def forward(self, x: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
        return 30.0 * (self.x0 > 0).float()


def _denoiser(net: nn.Module) -> MaskedDenoiser:
    return MaskedDenoiser(net, num_values=K)


def _batch(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    symbols = torch.randint(0, K, (64, 2, 3, 3), generator=g)
    x0 = BitCodec(K, "onehot").encode(symbols).movedim(-1, 2).reshape(64, 2 * K, 3, 3)
    t = torch.rand(64, generator=g)
    uniforms = torch.rand(64, 2, 3, 3, generator=g)
    return symbols, x0, t, uniforms


def test_uniform_network_loss_is_the_masked_share_times_log_k() -> None:
    _, x0, t, u = _batch()
    loss = masked_loss(_denoiser(FixedLogits(torch.zeros(K))), x0, t=t, uniforms=u)
    masked = (u < t.view(-1, 1, 1, 1)).float()
    expected = (masked / t.clamp_min(1e-3).view(-1, 1, 1, 1)).mean() * math.log(K)
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_oracle_loss_is_zero_and_a_wrong_guess_is_not() -> None:
    _, x0, t, u = _batch(1)
    assert float(masked_loss(_denoiser(Oracle(x0)), x0, t=t, uniforms=u)) < 1e-9
    wrong = torch.full((K,), -30.0)
    wrong[0] = 30.0
    assert float(masked_loss(_denoiser(FixedLogits(wrong)), x0, t=t, uniforms=u).detach()) > 1.0


def test_mask_inputs_zeroes_exactly_the_masked_symbols() -> None:
    symbols, x0, t, u = _batch(2)
    masked = u < 0.5
    x = mask_inputs(x0, masked, K).reshape(64, 2, K, 3, 3)
    assert torch.equal(x.abs().sum(2) == 0, masked)
    assert torch.equal(x.argmax(2)[~masked], symbols[~masked])


def test_normal_to_uniform_is_the_normal_cdf() -> None:
    z = torch.tensor([-1.959964, 0.0, 1.959964])
    assert torch.allclose(normal_to_uniform(z), torch.tensor([0.025, 0.5, 0.975]), atol=1e-6)


def test_sampler_reveals_on_schedule_keeps_revealed_symbols_and_draws_from_the_network() -> None:
    probs = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05])
    net = FixedLogits(probs.log())
    steps, shape = 8, (400, 2 * K, 4, 4)
    out = masked_sample(_denoiser(net), shape, steps=steps, generator=torch.Generator().manual_seed(0))
    assert len(net.seen) == steps  # one network evaluation per step
    codes = out.reshape(400, 2, K, 4, 4)
    assert torch.equal(codes.abs(), torch.ones_like(codes)) and bool(((codes > 0).sum(2) == 1).all())
    # at step k the share of still-masked symbols is t_k = 1 - k/steps (binomial, 12,800 symbols)
    for k, x in enumerate(net.seen):
        masked = (x.reshape(400, 2, K, 4, 4).abs().sum(2) == 0).float().mean()
        assert abs(float(masked) - (1 - k / steps)) < 0.02
    # revealed symbols never change afterwards
    for before, after in zip(net.seen, net.seen[1:], strict=False):
        b, a = before.reshape(400, 2, K, 4, 4), after.reshape(400, 2, K, 4, 4)
        shown = b.abs().sum(2) > 0
        assert torch.equal(b.argmax(2)[shown], a.argmax(2)[shown])
    freq = torch.bincount(codes.argmax(2).flatten(), minlength=K).double() / codes.argmax(2).numel()
    assert torch.allclose(freq, probs.double(), atol=0.012)


def test_masked_model_refuses_the_continuous_machinery() -> None:
    den = _denoiser(FixedLogits(torch.zeros(K)))
    assert den(torch.zeros(2, K, 3, 3), torch.full((2,), 0.5)).shape == (2, 1, K, 3, 3)  # logits, not x0
    with pytest.raises(ValueError, match="categorical logits"):
        as_model(den)  # so no continuous sampler or composite can take it
    with pytest.raises(ValueError, match="its own class"):
        BitDenoiser(FixedLogits(torch.zeros(K)), prediction="masked")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_values"):
        MaskedDenoiser(FixedLogits(torch.zeros(K)), num_values=1)
    with pytest.raises(ValueError, match="encoding=onehot"):
        ModelConfig(prediction="masked", encoding="binary", self_condition=False)
    with pytest.raises(ValueError, match="encoding=onehot"):
        ModelConfig(prediction="masked", encoding="onehot")
    ok = ModelConfig(prediction="masked", encoding="onehot", self_condition=False)
    with pytest.raises(ValueError, match="sampled ancestrally"):
        TrainConfig(model=ok, self_cond_prob=0.0)  # the default sampler is ddim
    TrainConfig(model=ok, self_cond_prob=0.0, sample=SampleConfig(sampler="ddpm"))


def test_generate_refuses_continuous_sampler_options_for_a_masked_model(tmp_path: object) -> None:
    from bitcompose.data.images import load_image_dataset
    from bitcompose.images.config import preset
    from bitcompose.images.evaluate import generate
    from bitcompose.images.trainer import ImageTrainer

    base = preset("digits")
    cfg = dataclasses.replace(
        base,
        steps=2,
        self_cond_prob=0.0,
        checkpoint_every=0,
        model=dataclasses.replace(base.model, encoding="onehot", prediction="masked", self_condition=False),
        sample=dataclasses.replace(base.sample, sampler="ddpm"),
    )
    ds = load_image_dataset("digits")
    ImageTrainer(cfg, tmp_path, dataset=ds, progress=False).train()  # type: ignore[arg-type]
    from bitcompose.images.model import load_model

    model = load_model(tmp_path, ema=False)  # type: ignore[arg-type]
    three = dataclasses.replace(model.config.sample, steps=3)
    out = generate(model, 12, three, progress=False)
    assert out.images.shape == (12, 1, 8, 8) and out.invalid_fraction == 0.0
    for bad in ({"td": 1.0}, {"sampler": "ddim"}, {"momentum": 0.5}):
        with pytest.raises(ValueError, match="ancestrally"):
            generate(model, 4, dataclasses.replace(three, **bad), progress=False)  # type: ignore[arg-type]
