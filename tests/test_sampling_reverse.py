"""Samplers checked against the exact optimal denoiser of Gaussian data, and regression tests for earlier ports."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bitcompose import BitCodec, CosineSchedule, sample, time_pairs
from bitcompose.diffusion.samplers import StepInfo


class GaussianDenoiser(nn.Module):
    """Exact E[x0 | x_t] for x0 ~ N(mu, sd^2) per element: mu + sqrt(g) sd^2/(g sd^2 + 1 - g) (x_t - sqrt(g) mu)."""

    def __init__(self, mu: float, sd: float, scale: float = 10.0) -> None:
        super().__init__()
        self.mu, self.sd, self.scale = mu, sd, scale
        self.schedule = CosineSchedule()
        self.self_condition = False

    def forward(self, x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        g = self.schedule.gamma(t.double()).reshape(-1, *[1] * (x.ndim - 1))
        k = g.sqrt() * self.sd**2 / (g * self.sd**2 + 1 - g)
        return (self.mu + k * (x.double() - g.sqrt() * self.mu)).float()


class ConstantDenoiser(nn.Module):
    """Predicts a fixed x0 everywhere; records the calls."""

    def __init__(self, value: Tensor, scale: float = 1.0) -> None:
        super().__init__()
        self.value, self.scale, self.self_condition = value, scale, True
        self.schedule = CosineSchedule()
        self.calls: list[tuple[Tensor, Tensor, Tensor | None, object]] = []

    def forward(self, x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        self.calls.append((x.clone(), t.clone(), None if self_cond is None else self_cond.clone(), cond))
        return self.value.expand_as(x).clone()


MU, SD, N = 0.7, 0.3, 20000


@pytest.mark.parametrize(
    ("sampler", "variance", "steps"),
    # the posterior ("small") variance ignores Var(x0 | x_t), so it needs more steps to converge
    [("ddim", "large", 200), ("ddpm", "large", 200), ("ddpm", "small", 1000)],
)
def test_gaussian_data_mean_and_variance(sampler: str, variance: str, steps: int) -> None:
    gen = torch.Generator().manual_seed(0)
    x = sample(
        GaussianDenoiser(MU, SD),
        (N, 1),
        steps=steps,
        sampler=sampler,  # type: ignore[arg-type]
        ddpm_variance=variance,  # type: ignore[arg-type]
        generator=gen,
        progress=False,
    ).samples
    se = SD / N**0.5
    assert abs(float(x.mean()) - MU) < 4 * se
    assert float(x.var()) == pytest.approx(SD**2, rel=0.06)


def test_ddim_is_biased_with_few_steps_but_converges() -> None:
    """A check that the Gaussian test can fail: 5 DDIM steps give a visibly wrong variance."""
    gen = torch.Generator().manual_seed(0)
    x = sample(GaussianDenoiser(MU, SD), (N, 1), steps=5, generator=gen, progress=False).samples
    assert abs(float(x.var()) - SD**2) > 0.1 * SD**2


def test_time_pairs_follow_official_code() -> None:
    assert time_pairs(4, 0.0) == [(1.0, 0.75), (0.75, 0.5), (0.5, 0.25), (0.25, 0.0)]
    pairs = time_pairs(10, 2.5)
    assert pairs[0] == (1.0, pytest.approx(1 - 3.5 / 10))
    assert pairs[7][1] == 0.0 and pairs[6][1] == pytest.approx(0.05)
    with pytest.raises(ValueError):
        time_pairs(0)
    with pytest.raises(ValueError):
        time_pairs(10, -1.0)


def test_td_reaching_zero_returns_the_x0_estimate() -> None:
    """With td >= the remaining steps a DDIM step lands on t = 0, i.e. x_next = (approximately) the estimate."""
    value = torch.tensor([0.3, -0.8])
    den = ConstantDenoiser(value)
    seen: list[StepInfo] = []
    out = sample(
        den,
        (3, 2),
        steps=5,
        td=10.0,
        generator=torch.Generator().manual_seed(1),
        progress=False,
        callback=seen.append,
    ).samples
    assert all(info.t_next == 0.0 for info in seen)
    for info in seen:
        torch.testing.assert_close(info.x, value.expand(3, 2), atol=1e-3, rtol=0)
    torch.testing.assert_close(out, value.expand(3, 2))
    # the network is still queried at t_now = 1 - k/T
    assert [float(c[1][0]) for c in den.calls] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])


def test_td_changes_ddim_result() -> None:
    """Regression (lucidrains/bit-diffusion#10): the time difference must have an effect in DDIM."""
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    den = GaussianDenoiser(0.2, 0.5)
    a = sample(den, (64, 4), steps=10, td=0.0, generator=gen_a, progress=False).samples
    b = sample(den, (64, 4), steps=10, td=1.0, generator=gen_b, progress=False).samples
    assert (a - b).abs().max() > 1e-3


def test_returns_clipped_estimate_not_xt() -> None:
    """Regression: the output is the final clipped x0 estimate, thresholded by the codec; not x_t."""
    codec = BitCodec(8)
    target = codec.encode(torch.tensor(5))  # [+1, -1, +1]
    den = ConstantDenoiser(2.0 * target)  # out of range: must be clipped to [-1, 1]
    out = sample(
        den, (4, 3), steps=3, sampler="ddpm", generator=torch.Generator().manual_seed(0), progress=False
    ).samples
    torch.testing.assert_close(out, target.expand(4, 3))
    assert bool((codec.decode(out) == 5).all())


def test_self_conditioning_feeds_previous_clipped_estimate() -> None:
    den = ConstantDenoiser(torch.tensor([3.0, -0.5]))
    sample(den, (2, 2), steps=3, generator=torch.Generator().manual_seed(0), progress=False)
    first_sc = den.calls[0][2]
    assert first_sc is not None and bool((first_sc == 0).all())
    for _, _, sc, _ in den.calls[1:]:
        assert sc is not None
        torch.testing.assert_close(sc, torch.tensor([1.0, -0.5]).expand(2, 2))
    den.calls.clear()
    sample(den, (2, 2), steps=2, self_condition=False, progress=False, generator=torch.Generator())
    assert all(c[2] is None for c in den.calls)


def test_classifier_free_guidance_combination() -> None:
    class LabelDenoiser(nn.Module):
        scale, self_condition, schedule = 10.0, False, CosineSchedule()

        def forward(
            self, x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Tensor | None = None
        ) -> Tensor:
            return torch.zeros_like(x) + (0.0 if cond is None else cond.float().reshape(-1, 1))

    labels = torch.tensor([1, 2])
    out = sample(
        LabelDenoiser(),
        (2, 3),
        steps=2,
        cond=labels,
        guidance=2.0,
        progress=False,
        generator=torch.Generator(),
    ).samples
    # (1 + w) * cond - w * null = 3 * label
    torch.testing.assert_close(out, 3.0 * labels.float().reshape(-1, 1).expand(2, 3))
    with pytest.raises(ValueError, match="needs cond"):
        sample(LabelDenoiser(), (2, 3), steps=2, guidance=1.0, progress=False)


def test_generator_makes_runs_reproducible() -> None:
    den = GaussianDenoiser(0.0, 1.0)
    a = sample(
        den, (8, 2), steps=4, sampler="ddpm", generator=torch.Generator().manual_seed(5), progress=False
    ).samples
    b = sample(
        den, (8, 2), steps=4, sampler="ddpm", generator=torch.Generator().manual_seed(5), progress=False
    ).samples
    c = sample(
        den, (8, 2), steps=4, sampler="ddpm", generator=torch.Generator().manual_seed(6), progress=False
    ).samples
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_bad_arguments() -> None:
    den = GaussianDenoiser(0.0, 1.0)
    with pytest.raises(ValueError, match="sampler"):
        sample(den, (2, 2), sampler="euler", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ddpm_variance"):
        sample(den, (2, 2), sampler="ddpm", ddpm_variance="medium", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x_init"):
        sample(den, (2, 2), x_init=torch.zeros(3, 2), progress=False)
