from __future__ import annotations

import math

import pytest
import torch

from bitcompose.schedules import CosineSchedule, DiscreteSchedule


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
    # beta(t) = -d log gamma / dt, checked by finite differences.
    h = 1e-6
    tm = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    fd = -(torch.log(s.gamma(tm + h)) - torch.log(s.gamma(tm - h))) / (2 * h)
    torch.testing.assert_close(s.beta(tm), fd, rtol=1e-5, atol=1e-6)


def test_discrete_linear_against_definition() -> None:
    s = DiscreteSchedule.linear(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(s.betas, betas)
    i = torch.tensor([0, 10, 999])
    torch.testing.assert_close(s.gamma(i), torch.cumprod(1 - betas, 0)[i])
    torch.testing.assert_close(s.beta(i), betas[i])
    torch.testing.assert_close(s.sigma(i), (1 - torch.cumprod(1 - betas, 0)[i]).sqrt())


def test_discrete_cosine_against_definition() -> None:
    T, s_ = 100, 0.008
    sched = DiscreteSchedule.cosine(T)

    def f(u: float) -> float:
        return math.cos((u + s_) / (1 + s_) * math.pi / 2) ** 2

    for i in (0, 49, 98, 99):
        expected = min(1 - f((i + 1) / T) / f(i / T), 0.999)
        assert float(sched.beta(i)) == pytest.approx(expected, rel=1e-12)
    # values quoted in the paper note: beta_0 = 6.3e-4, beta_99 clipped to 0.999, sigma_0 = 0.025
    assert float(sched.beta(0)) == pytest.approx(6.3e-4, rel=0.02)
    assert float(sched.beta(99)) == pytest.approx(0.999)
    assert float(sched.sigma(0)) == pytest.approx(0.025, rel=0.02)
    g = sched.gamma(torch.arange(T))
    assert bool((g[1:] < g[:-1]).all())
    torch.testing.assert_close(sched.log_snr(5), torch.log(g[5] / (1 - g[5])))


def test_discrete_errors() -> None:
    sched = DiscreteSchedule.cosine(10)
    with pytest.raises(ValueError, match="out of range"):
        sched.gamma(10)
    with pytest.raises(ValueError, match="integer"):
        sched.gamma(torch.tensor(0.5))
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        DiscreteSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError):
        DiscreteSchedule.linear(0)
