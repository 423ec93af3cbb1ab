"""Appendix G: the momentum estimate and self-guidance, checked on denoisers whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bitcompose import CosineSchedule, SamplingOptions, TimeGrid, as_model, sample, sample_model


class SelfCondReader(nn.Module):
    """x̂0 = a(t) + c·self_cond with a(t) = t − 0.5; records every self_cond it is given."""

    def __init__(self, c: float = 0.5) -> None:
        super().__init__()
        self.c, self.scale, self.self_condition = c, 1.0, True
        self.schedule = CosineSchedule()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        sc = torch.zeros_like(x) if self_cond is None else self_cond
        self.seen.append(sc.clone())
        return (t - 0.5).reshape(-1, *[1] * (x.ndim - 1)) + self.c * sc


def _x() -> Tensor:
    return torch.randn((3, 2), generator=torch.Generator().manual_seed(0))


def test_momentum_zero_is_the_default_sampler_bit_for_bit() -> None:
    for sampler in ("ddim", "ddpm", "dpmpp2m"):
        runs = [
            sample(SelfCondReader(), (3, 2), steps=6, sampler=sampler, x_init=_x(), generator=torch.Generator().manual_seed(1), **kw).samples
            for kw in ({}, {"momentum": 0.0})
        ]  # fmt: skip
        assert torch.equal(runs[0], runs[1])


def test_momentum_feeds_an_ema_of_the_clipped_estimates() -> None:
    den, m = SelfCondReader(), 0.6
    sample(den, (3, 2), steps=5, x_init=_x(), momentum=m)
    ema = torch.zeros(3, 2)
    for k in range(5):
        assert torch.allclose(den.seen[k], ema, atol=1e-6)
        t_now = 1.0 - k / 5
        x0 = ((t_now - 0.5) + den.c * den.seen[k]).clamp(-1, 1)
        ema = m * ema + (1 - m) * x0


def test_self_guidance_combines_a_blind_and_a_conditioned_pass() -> None:
    den, w = SelfCondReader(c=0.3), 4.0
    res = sample_model(as_model(den), _x(), TimeGrid.uniform(4), SamplingOptions(self_guidance=w))
    assert res.nfe == 8  # two passes per step
    zeros = [s for s in den.seen if not s.any()]
    assert len(zeros) >= 4  # one blind pass per step (and the first conditioned pass sees zeros too)
    # the last step's estimate: (1 + w)(a + c·x̃) − w·a = a + (1 + w)·c·x̃, clipped
    sc = den.seen[-2]
    assert torch.allclose(res.samples, ((0.25 - 0.5) + (1 + w) * den.c * sc).clamp(-1, 1), atol=1e-6)


def test_the_scale_convention_is_the_cfg_one_shifted_by_one() -> None:
    # scale: x̂∅ + w·(x̂ − x̂∅) = a + w·c·x̃ on the last step (cfg: a + (1 + w)·c·x̃)
    den, w = SelfCondReader(c=0.3), 2.5
    opts = SamplingOptions(self_guidance=w, self_guidance_form="scale")
    res = sample_model(as_model(den), _x(), TimeGrid.uniform(4), opts)
    sc = den.seen[-2]
    assert torch.allclose(res.samples, ((0.25 - 0.5) + w * den.c * sc).clamp(-1, 1), atol=1e-6)
    shifted = sample_model(
        as_model(SelfCondReader(c=0.3)), _x(), TimeGrid.uniform(4), SamplingOptions(self_guidance=w - 1)
    )
    assert torch.allclose(res.samples, shifted.samples, atol=1e-6)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="self_guidance_form must be one of cfg, scale"):
        SamplingOptions(self_guidance=1.0, self_guidance_form="ho")
    with pytest.raises(ValueError, match="momentum must lie"):
        sample(SelfCondReader(), (1, 2), steps=2, momentum=1.0)
    with pytest.raises(ValueError, match="self_guidance must be"):
        sample(SelfCondReader(), (1, 2), steps=2, self_guidance=-1.0)
    with pytest.raises(ValueError, match="act on self-conditioning"):
        sample(SelfCondReader(), (1, 2), steps=2, self_condition=False, momentum=0.5)
