"""Tests of the energy / ε parameterisations on DDPM levels and the analytic Gaussian model (bitcompose.compose)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from bitcompose.compose import EnergyModel, EpsModel, GaussianModel, eps_loss
from bitcompose.core.model import DiffusionModel, EnergyUnavailableError, as_times
from bitcompose.core.schedules import DiscreteSchedule

T = 20


def tm(level: int) -> float:
    """The time of a level of the T-level schedule."""
    return (level + 1) / T


def lv(level: int, n: int = 5) -> Tensor:
    """A level index for a batch of n."""
    return torch.full((n,), level)


class TinyNet(nn.Module):
    """f(x, t) = W2 tanh(W1 [x, t/T] + b1) + b2 (float64)."""

    def __init__(self, dim: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = nn.Linear(dim + 1, 16, dtype=torch.float64)
        self.l2 = nn.Linear(16, dim, dtype=torch.float64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.7)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([x, t.to(x.dtype)[:, None] / T], dim=1)
        return self.l2(torch.tanh(self.l1(h)))


@pytest.fixture
def schedule() -> DiscreteSchedule:
    return DiscreteSchedule.cosine(T)


def _x(n: int = 5, d: int = 2, seed: int = 1) -> Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["diff", "norm"])
def test_energy_model_eps_is_gradient_of_energy_finite_differences(
    kind: str, schedule: DiscreteSchedule
) -> None:
    model = EnergyModel(TinyNet(), schedule, kind=kind).eval()
    x, t, h = _x(), tm(7), 1e-6
    eps = model.eps(x, t)
    fd = torch.zeros_like(x)
    for j in range(x.shape[1]):
        dx = torch.zeros_like(x)
        dx[:, j] = h
        fd[:, j] = (model.raw_energy(x + dx, lv(7)) - model.raw_energy(x - dx, lv(7))) / (2 * h)
    assert torch.allclose(eps, fd, atol=1e-7, rtol=1e-6)
    f = model.net(x, lv(7))
    if kind == "diff":
        assert torch.allclose(model.raw_energy(x, lv(7)), ((f - x) ** 2).sum(1))
    else:
        assert torch.allclose(model.raw_energy(x, lv(7)), 0.5 * (f**2).sum(1))


@pytest.mark.parametrize("kind", ["diff", "norm"])
def test_energy_model_energy_score_consistency(kind: str, schedule: DiscreteSchedule) -> None:
    model = EnergyModel(TinyNet(seed=3), schedule, kind=kind).eval()
    x = _x(6)
    levels = torch.tensor([0, 3, 5, 9, 15, 19])
    t = schedule.times[levels]
    sig = schedule.sigma(t)[:, None]
    e, s = model.energy_and_score(x, t)
    assert e.shape == (6,) and s.shape == (6, 2)
    assert torch.allclose(s, -model.eps(x, t) / sig)
    assert torch.allclose(e, model.raw_energy(x, levels) / sig[:, 0])
    assert torch.allclose(model.energy(x, t), e)
    assert torch.allclose(model.score(x, t), s)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.energy(xr, t).sum(), xr)
    assert torch.allclose(-g, s, atol=1e-12)


def test_energy_model_works_under_no_grad_and_detaches(schedule: DiscreteSchedule) -> None:
    model = EnergyModel(TinyNet(), schedule)
    model.eval()
    x = _x()
    with torch.no_grad():
        e, s = model.energy_and_score(x, tm(4))
        eps = model.eps(x, tm(4))
    assert not e.requires_grad and not s.requires_grad and not eps.requires_grad
    assert torch.isfinite(s).all()


def test_energy_model_double_backprop_gives_parameter_gradients(schedule: DiscreteSchedule) -> None:
    """eps_loss through ε = ∇ₓE: the parameter gradient from backward() equals a finite difference of the loss."""
    model = EnergyModel(TinyNet(seed=5), schedule).train()
    x0 = _x(8, seed=2)
    loss = eps_loss(model, x0, generator=torch.Generator().manual_seed(11))
    loss.backward()
    w = model.net.l1.weight
    assert w.grad is not None and float(w.grad.abs().sum()) > 0
    h = 1e-6
    with torch.no_grad():
        w[0, 0] += h
        lp = eps_loss(model, x0, generator=torch.Generator().manual_seed(11))
        w[0, 0] -= 2 * h
        lm = eps_loss(model, x0, generator=torch.Generator().manual_seed(11))
        w[0, 0] += h
    fd = (lp - lm) / (2 * h)
    assert math.isclose(float(w.grad[0, 0]), float(fd), rel_tol=1e-5, abs_tol=1e-9)


def test_eps_model_score_and_no_energy(schedule: DiscreteSchedule) -> None:
    model = EpsModel(TinyNet(), schedule)
    x = _x()
    t = torch.full((5,), tm(12), dtype=torch.float64)
    assert torch.allclose(model.score(x, t), -model.eps(x, t) / schedule.sigma(tm(12)))
    assert model.has_energy is False
    with pytest.raises(EnergyUnavailableError, match="score-only"):
        model.energy(x, t)
    with pytest.raises(ValueError):
        model.energy_and_score(x, t)
    assert isinstance(model, DiffusionModel)


def test_eps_loss_value_for_zero_net_is_noise_power(schedule: DiscreteSchedule) -> None:
    class Zero(nn.Module):
        def forward(self, x: Tensor, t: Tensor) -> Tensor:
            return torch.zeros_like(x)

    x0 = torch.zeros(4000, 2, dtype=torch.float64)
    loss = eps_loss(EpsModel(Zero(), schedule), x0, generator=torch.Generator().manual_seed(0))
    assert abs(float(loss) - 1.0) < 0.05  # E[ε²] = 1


def test_eps_loss_is_reproducible(schedule: DiscreteSchedule) -> None:
    model = EpsModel(TinyNet(), schedule)
    a = eps_loss(model, _x(), generator=torch.Generator().manual_seed(3))
    b = eps_loss(model, _x(), generator=torch.Generator().manual_seed(3))
    c = eps_loss(model, _x(), generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item() and a.item() != c.item()


def test_gaussian_model_exact_density_and_score(schedule: DiscreteSchedule) -> None:
    mean = torch.tensor([0.3, -0.2], dtype=torch.float64)
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    model = GaussianModel(mean, cov, schedule)
    x = _x(7)
    for t in (tm(0), tm(9), tm(T - 1)):
        ab = float(schedule.gamma(t))
        dist = torch.distributions.MultivariateNormal(ab**0.5 * mean, ab * cov + (1 - ab) * torch.eye(2))
        assert torch.allclose(model.energy(x, t), -dist.log_prob(x), atol=1e-12)
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(dist.log_prob(xr).sum(), xr)
        assert torch.allclose(model.score(x, t), g, atol=1e-12)
        assert torch.allclose(model.eps(x, t), -float(schedule.sigma(t)) * g, atol=1e-12)
    m, c = model.level_mean_cov(0)
    ab = float(schedule.alphas_cumprod[0])
    assert torch.allclose(c, ab * cov + (1 - ab) * torch.eye(2, dtype=torch.float64))


def test_gaussian_model_std_and_bad_input(schedule: DiscreteSchedule) -> None:
    a = GaussianModel([0.0, 1.0], schedule=schedule, std=[0.5, 2.0])
    b = GaussianModel([0.0, 1.0], torch.diag(torch.tensor([0.25, 4.0])), schedule)
    x = _x()
    assert torch.allclose(a.energy(x, tm(3)), b.energy(x, tm(3)))
    with pytest.raises(ValueError, match="exactly one"):
        GaussianModel([0.0], schedule=schedule)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianModel([0.0, 0.0], torch.tensor([[1.0, 2.0], [2.0, 1.0]]), schedule)
    with pytest.raises(ValueError, match="shape"):
        a.score(torch.zeros(3, 3, dtype=torch.float64), tm(0))


def test_time_validation_and_level_round_trip(schedule: DiscreteSchedule) -> None:
    x = _x(3)
    assert as_times(0.5, x).tolist() == [0.5, 0.5, 0.5]
    assert schedule.level(schedule.times).tolist() == list(range(T))  # level -> time -> level
    assert schedule.level(torch.tensor([0.0, 0.51 / T, 1.49 / T, 1.0])).tolist() == [0, 0, 0, T - 1]
    with pytest.raises(ValueError, match="level index is not a time"):
        as_times(4, x)
    with pytest.raises(ValueError, match="levels are not times"):
        as_times(torch.tensor([1, 2, 3]), x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        EpsModel(TinyNet(), schedule).score(x, 1.5)
    with pytest.raises(ValueError, match="shape"):
        as_times(torch.tensor([0.1, 0.2]), x)
    with pytest.raises(ValueError, match="kind"):
        EnergyModel(TinyNet(), schedule, kind="dot")
