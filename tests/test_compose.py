"""Tests of the composition operators (bitcompose.compose.operators): closed forms and energy/score consistency."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bitcompose.compose import (
    CFGConjunction,
    ClassifierGuidance,
    EnergyModel,
    EpsModel,
    GaussianModel,
    Mixture,
    Negation,
    Product,
)
from bitcompose.core.model import EnergyUnavailableError
from bitcompose.core.schedules import DiscreteSchedule

T = 50
SCHED = DiscreteSchedule.cosine(T)


def tm(level: int) -> float:
    """The time of a level of SCHED."""
    return float(SCHED.times[level])


def _gauss(mean: list[float], std: float | list[float], sched: DiscreteSchedule = SCHED) -> GaussianModel:
    return GaussianModel(mean, schedule=sched, std=std)


def _x(n: int = 6, d: int = 2, seed: int = 0) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _minus_grad_energy(model: object, x: Tensor, t: float | Tensor) -> Tensor:
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.energy(xr, t).sum(), xr)  # type: ignore[attr-defined]
    return -g


class ShiftNet(nn.Module):
    """A small fixed net for energy models: f(x, t) = tanh(A x + c·t/T)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.randn(2, 2, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(2, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.tanh(x @ self.a.T + self.c * t.to(x.dtype)[:, None] / T)


def test_product_of_gaussians_is_gaussian_with_summed_precision() -> None:
    m1, m2 = _gauss([-0.5, 0.2], [0.3, 0.5]), _gauss([0.7, -0.1], [0.4, 0.2])
    p = Product(m1, m2)
    x, t = _x(), tm(10)
    _, c1 = m1.level_mean_cov(10)
    mu1, _ = m1.level_mean_cov(10)
    mu2, c2 = m2.level_mean_cov(10)
    prec = torch.linalg.inv(c1) + torch.linalg.inv(c2)
    mu = torch.linalg.solve(prec, torch.linalg.inv(c1) @ mu1 + torch.linalg.inv(c2) @ mu2)
    assert torch.allclose(p.score(x, t), -(x - mu) @ prec.T, atol=1e-12)
    e, s = p.energy_and_score(x, t)
    assert torch.allclose(e, m1.energy(x, t) + m2.energy(x, t))
    assert torch.allclose(s, _minus_grad_energy(p, x, t), atol=1e-12)
    w = Product(m1, m2, weights=[2.0, -0.5])
    assert torch.allclose(w.energy(x, t), 2 * m1.energy(x, t) - 0.5 * m2.energy(x, t))
    assert torch.allclose(w.score(x, t), 2 * m1.score(x, t) - 0.5 * m2.score(x, t))


def test_product_with_score_only_component_has_score_but_no_energy() -> None:
    eps = EpsModel(ShiftNet(1), SCHED)
    p = Product(_gauss([0.0, 0.0], 1.0), eps)
    x = _x()
    assert p.has_energy is False
    t = tm(3)
    assert torch.allclose(p.score(x, t), _gauss([0.0, 0.0], 1.0).score(x, t) + eps.score(x, t))
    with pytest.raises(EnergyUnavailableError):
        p.energy(x, t)


def test_mixture_exact_energy_is_log_sum_of_densities_and_score_its_gradient() -> None:
    m1, m2 = _gauss([-1.0, 0.0], 0.3), _gauss([1.0, 0.5], 0.5)
    mix = Mixture(m1, m2)
    x = _x(8)
    t = SCHED.times[torch.arange(8) * 6]
    q = torch.exp(-m1.energy(x, t)) + torch.exp(-m2.energy(x, t))
    assert torch.allclose(mix.energy(x, t), -torch.log(q), atol=1e-12)
    assert torch.allclose(mix.score(x, t), _minus_grad_energy(mix, x, t), atol=1e-10)
    weighted = Mixture(m1, m2, weights=[3.0, 1.0])
    q3 = 3 * torch.exp(-m1.energy(x, t)) + torch.exp(-m2.energy(x, t))
    assert torch.allclose(weighted.energy(x, t), -torch.log(q3), atol=1e-12)


def test_mixture_notebook_sharpening_formula() -> None:
    """sharpen=k: energy = −(1/σ_t)·logsumexp(−k·e_i) on the raw network energies e_i = σ_t E_i."""
    a = EnergyModel(ShiftNet(1), SCHED).eval()
    b = EnergyModel(ShiftNet(2), SCHED).eval()
    mix = Mixture(a, b, sharpen=3.5)
    x, t = _x(), tm(17)
    sig = float(SCHED.sigma(t))
    levels = torch.full((x.shape[0],), 17)
    raw = torch.stack([a.raw_energy(x, levels), b.raw_energy(x, levels)], 1)
    assert torch.allclose(mix.energy(x, t), -torch.logsumexp(-3.5 * raw, 1) / sig, atol=1e-10)
    assert torch.allclose(mix.score(x, t), _minus_grad_energy(mix, x, t), atol=1e-9)


def test_mixture_refuses_score_only_components_and_bad_options() -> None:
    with pytest.raises(ValueError, match="component 1 \\(EpsModel\\) is score-only"):
        Mixture(_gauss([0.0, 0.0], 1.0), EpsModel(ShiftNet(0), SCHED))
    with pytest.raises(ValueError, match="sharpen"):
        Mixture(_gauss([0.0, 0.0], 1.0), _gauss([1.0, 0.0], 1.0), sharpen=0.0)
    with pytest.raises(ValueError, match="weights"):
        Mixture(_gauss([0.0, 0.0], 1.0), _gauss([1.0, 0.0], 1.0), weights=[1.0])


def test_negation_energy_and_score() -> None:
    m1, m2 = _gauss([0.0, 0.0], 0.7), _gauss([0.2, 0.0], 0.3)
    neg = Negation(m1, m2, alpha=0.3)
    x, t = _x(), tm(5)
    assert torch.allclose(neg.energy(x, t), 1.3 * m1.energy(x, t) - 0.3 * m2.energy(x, t))
    assert torch.allclose(neg.score(x, t), _minus_grad_energy(neg, x, t), atol=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        Negation(m1, m2, alpha=-1.0)


def test_cfg_conjunction_eps_composition_and_consistent_energy() -> None:
    u = _gauss([0.0, 0.0], 1.0)
    c1, c2 = _gauss([1.0, 0.0], 0.5), _gauss([0.0, -1.0], 0.4)
    w = 2.5
    cfg = CFGConjunction(u, [c1, c2], weight=w)
    x, t = _x(), tm(20)
    sig = float(SCHED.sigma(t))
    eps = {m: -sig * m.score(x, t) for m in (u, c1, c2)}
    eps_hat = eps[u] + w * ((eps[c1] - eps[u]) + (eps[c2] - eps[u]))
    assert torch.allclose(-sig * cfg.score(x, t), eps_hat, atol=1e-12)
    e_u, e1, e2 = u.energy(x, t), c1.energy(x, t), c2.energy(x, t)
    consistent = e_u + w * ((e1 - e_u) + (e2 - e_u))
    assert torch.allclose(cfg.energy(x, t), consistent, atol=1e-12)
    assert torch.allclose(cfg.score(x, t), _minus_grad_energy(cfg, x, t), atol=1e-12)
    released = e_u + w * (e1 + e2 - e_u)  # the released code's energy: inconsistent for 2 concepts
    assert (cfg.energy(x, t) - released).abs().min() > 1e-3
    per_concept = CFGConjunction(u, [c1, c2], weight=[1.0, -0.5])
    assert torch.allclose(per_concept.energy(x, t), e_u + (e1 - e_u) - 0.5 * (e2 - e_u), atol=1e-12)
    with pytest.raises(ValueError, match="weights"):
        CFGConjunction(u, [c1, c2], weight=[1.0])


def test_classifier_guidance_adds_weighted_log_likelihood() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(3, 4, dtype=torch.float64)

    def clf(x: Tensor, t: Tensor) -> Tensor:
        return lin(torch.cat([x, t.to(x.dtype)[:, None]], 1))

    base = _gauss([0.0, 0.5], 0.8)
    guided = ClassifierGuidance(base, clf, y=2, weight=3.0)
    x, t = _x(), tm(12)
    tt = torch.full((x.shape[0],), t, dtype=torch.float64)
    logp = torch.log_softmax(clf(x, tt), 1)[:, 2]
    assert torch.allclose(guided.energy(x, t), base.energy(x, t) - 3.0 * logp, atol=1e-12)
    assert torch.allclose(guided.score(x, t), _minus_grad_energy(guided, x, t), atol=1e-12)
    with torch.no_grad():
        s = guided.score(x, t)
    assert torch.allclose(s, _minus_grad_energy(guided, x, t), atol=1e-12)
    per_sample_y = ClassifierGuidance(base, clf, y=torch.tensor([0, 1, 2, 3, 0, 1]), weight=1.0)
    assert per_sample_y.score(x, t).shape == x.shape


def test_nested_composites_stay_consistent() -> None:
    a, b, c = _gauss([-1.0, 0.0], 0.5), _gauss([-0.8, 0.3], 0.6), _gauss([1.0, 0.0], 0.4)
    nested = Mixture(Product(a, b), Negation(c, a, alpha=0.2))
    x = _x()
    for t in (tm(0), tm(25), tm(T - 1)):
        assert torch.allclose(nested.score(x, t), _minus_grad_energy(nested, x, t), atol=1e-10)


def test_schedule_mismatch_is_refused() -> None:
    other = DiscreteSchedule.linear(T)
    with pytest.raises(ValueError, match="different schedule"):
        Product(_gauss([0.0], 1.0), _gauss([0.0], 1.0, other))
    with pytest.raises(ValueError, match="at least one"):
        Product()
