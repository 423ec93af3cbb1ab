from __future__ import annotations

import math

import pytest
import torch

from bitcompose.core.schedules import CosineSchedule, DiscreteSchedule


def test_cosine_gamma_matches_formula_and_endpoints() -> None:
    s = CosineSchedule()
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    expected = torch.cos((t + 2e-4) / (1 + 2.5e-4) * math.pi / 2) ** 2
    torch.testing.assert_close(s.gamma(t), expected)
    g0, g1 = (
        float(s.gamma(torch.tensor(0.0, dtype=torch.float64))),
        float(s.gamma(torch.tensor(1.0, dtype=torch.float64))),
    )
    assert 1 - 1e-6 < g0 < 1.0  # just below 1 (log-SNR ~ +16)
    assert 0.0 < g1 < 1e-7  # just above 0 (log-SNR ~ -19): 1/sqrt(gamma) finite
    assert 15.5 < float(s.log_snr(torch.tensor(0.0, dtype=torch.float64))) < 16.5
    assert -19.5 < float(s.log_snr(torch.tensor(1.0, dtype=torch.float64))) < -18.5


def test_cosine_monotone_and_consistent() -> None:
    s = CosineSchedule()
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    g = s.gamma(t)
    assert bool((g[1:] < g[:-1]).all())
    torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2, torch.ones_like(t))
    torch.testing.assert_close(s.log_snr(t), torch.log(g / (1 - g)))
    # rate(t) = -d log gamma / dt, checked by finite differences.
    h = 1e-6
    tm = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    fd = -(torch.log(s.gamma(tm + h)) - torch.log(s.gamma(tm - h))) / (2 * h)
    torch.testing.assert_close(s.rate(tm), fd, rtol=1e-5, atol=1e-6)


def test_discrete_linear_against_definition() -> None:
    s = DiscreteSchedule.linear(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(s.betas, betas)
    i = torch.tensor([0, 10, 999])
    t = s.times[i]  # level i sits at time (i + 1)/T
    torch.testing.assert_close(t, (i + 1).double() / 1000)
    torch.testing.assert_close(s.gamma(t), torch.cumprod(1 - betas, 0)[i])
    torch.testing.assert_close(s.grid().betas[i], betas[i])
    torch.testing.assert_close(s.sigma(t), (1 - torch.cumprod(1 - betas, 0)[i]).sqrt())


def test_discrete_cosine_against_definition() -> None:
    T, s_ = 100, 0.008
    sched = DiscreteSchedule.cosine(T)

    def f(u: float) -> float:
        return math.cos((u + s_) / (1 + s_) * math.pi / 2) ** 2

    for i in (0, 49, 98, 99):
        expected = min(1 - f((i + 1) / T) / f(i / T), 0.999)
        assert float(sched.betas[i]) == pytest.approx(expected, rel=1e-12)
    # values quoted in the paper note: beta_0 = 6.3e-4, beta_99 clipped to 0.999, sigma_0 = 0.025
    assert float(sched.betas[0]) == pytest.approx(6.3e-4, rel=0.02)
    assert float(sched.betas[99]) == pytest.approx(0.999)
    assert float(sched.sigma(sched.times[0])) == pytest.approx(0.025, rel=0.02)
    g = sched.gamma(sched.times)
    assert bool((g[1:] < g[:-1]).all())
    torch.testing.assert_close(sched.log_snr(sched.times[5]), torch.log(g[5] / (1 - g[5])))


def test_grids_levels_and_round_trips() -> None:
    sched = DiscreteSchedule.cosine(50)
    grid = sched.grid()
    assert len(grid) == 50 and torch.equal(grid.betas, sched.betas)  # the discrete grid keeps its own betas
    assert sched.level(grid.times).tolist() == list(range(50))  # level -> time -> level
    for i in (0, 7, 49):
        lvl = grid[i]
        assert lvl.index == i and lvl.gamma == float(sched.gamma(lvl.t)) and lvl.beta == float(sched.betas[i])
    with pytest.raises(ValueError, match="exactly 50 levels"):
        sched.grid(20)
    cos = CosineSchedule()
    g = cos.grid(20)
    assert len(g) == 20 and [lv.index for lv in g.descending()] == list(range(19, -1, -1))
    torch.testing.assert_close(g.times, torch.arange(1, 21, dtype=torch.float64) / 20)
    torch.testing.assert_close(g.gammas, cos.gamma(g.times))
    # beta_i = 1 - gamma_i/gamma_{i-1}: the ancestral steps compose to the level's gamma
    torch.testing.assert_close(torch.cumprod(1 - g.betas, 0), g.gammas)


def test_discrete_errors() -> None:
    sched = DiscreteSchedule.cosine(10)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        sched.gamma(torch.tensor(1.5))
    with pytest.raises(ValueError, match="float times"):
        sched.gamma(torch.tensor(3))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        DiscreteSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError):
        DiscreteSchedule.linear(0)
