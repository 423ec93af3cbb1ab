"""The model protocol's contract, checked on every model and composite of the library.

For each model: shapes of the prediction, score, ε, x0 and energy; ε = −σ·score and x0 = (x + σ²·score)/α (the one
place where they are derived); a scalar time equals the same time given per sample; the level grid's times map
back to its γ's (and to its level indices on a discrete schedule); where there is an energy, energy_and_score
agrees with energy and score, and score = −∇energy by central finite differences; where there is none, asking for
it raises EnergyUnavailableError.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from bitcompose import BitDenoiser, UNet, as_model, unet_config
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
from bitcompose.core.model import DiffusionModel, EnergyUnavailableError
from bitcompose.core.schedules import CosineSchedule, DiscreteSchedule
from bitcompose.data import toy2d as data
from bitcompose.toy2d.exact import ExactToyModel

SCHED = DiscreteSchedule.cosine(20)


class _Net(nn.Module):
    """f(x, level) = tanh(W [x, level/T]) in float64."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3, 2, generator=g, dtype=torch.float64) * 0.7)

    def forward(self, x: Tensor, level: Tensor) -> Tensor:
        return torch.tanh(torch.cat([x, level.to(x.dtype)[:, None] / 20], 1) @ self.w)


def _gauss(mean: list[float], std: float) -> GaussianModel:
    return GaussianModel(mean, schedule=SCHED, std=std)


def _gaussian_x0(mean: float, std: float) -> Callable[..., Tensor]:
    """The exact x0 denoiser of N(mean, std² I) data under the cosine γ(t)."""
    sched = CosineSchedule()

    def fn(x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        g = sched.gamma(t.double()).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        a = g.sqrt()
        return mean + a * std**2 / (g * std**2 + 1 - g) * (x - a * mean)

    return fn


def _unet_denoiser(prediction: str = "x0") -> BitDenoiser:
    torch.manual_seed(0)
    net = UNet(unet_config("tiny", data_channels=2, image_size=8, num_classes=3))
    for p in net.conv_out.parameters():  # a non-trivial output (the head starts near zero)
        nn.init.normal_(p, std=0.1)
    return BitDenoiser(net, prediction=prediction).eval()  # type: ignore[arg-type]


def _classifier(x: Tensor, t: Tensor) -> Tensor:
    w = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.8, -1.0], [0.2, 0.1, 0.4]], dtype=x.dtype)
    return torch.cat([x, t.to(x.dtype)[:, None]], 1) @ w


def _models() -> dict[str, tuple[DiffusionModel, Tensor]]:
    x2 = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    img = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    eps, e_diff, e_norm = (
        EpsModel(_Net(0), SCHED),
        EnergyModel(_Net(1), SCHED),
        EnergyModel(_Net(2), SCHED, "norm"),
    )
    g1, g2, g3 = _gauss([0.3, -0.2], 0.5), _gauss([-0.5, 0.4], 0.8), _gauss([1.0, 0.0], 1.2)
    den, den_eps = _unet_denoiser(), _unet_denoiser("eps")
    c0, c1, null = as_model(den, cond=0), as_model(den, cond=1), as_model(den, cond=None)
    return {
        "EpsModel": (eps.eval(), x2),
        "EnergyModel(diff)": (e_diff.eval(), x2),
        "EnergyModel(norm)": (e_norm.eval(), x2),
        "GaussianModel": (g1, x2),
        "ExactToyModel": (ExactToyModel(data.toy_gmm(8, std=0.03), DiscreteSchedule.cosine(100)), x2 * 0.5),
        "as_model(gaussian x0)": (as_model(_gaussian_x0(0.2, 0.6), scale=None, self_condition=False), x2),
        "as_model(BitDenoiser x0)": (c1, img),
        "as_model(BitDenoiser eps)": (as_model(den_eps, cond=2), img),
        "Product(score-only)": (Product(g1, eps), x2),
        "Product(energy)": (Product(g1, e_diff, weights=[1.0, 0.5]), x2),
        "Mixture": (Mixture(g2, e_diff), x2),
        "Mixture(sharpen)": (Mixture(e_diff, e_norm, sharpen=3.5), x2),
        "Negation": (Negation(e_diff, g3, alpha=0.3), x2),
        "CFGConjunction": (CFGConjunction(g3, [g1, g2], weight=2.0), x2),
        "ClassifierGuidance": (ClassifierGuidance(g2, _classifier, y=1, weight=2.0), x2),
        "nested": (Mixture(Product(g1, g2), Negation(g3, g1, alpha=0.2)), x2),
        "Product(BitDenoisers)": (Product(c0, c1), img),
        "CFGConjunction(BitDenoisers)": (CFGConjunction(null, [c0, c1], weight=1.5), img),
    }


MODELS = _models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_contract(name: str) -> None:
    model, x = MODELS[name]
    double = x.dtype == torch.float64
    tol = {"rtol": 1e-9, "atol": 1e-9} if double else {"rtol": 1e-4, "atol": 1e-3}
    grid = model.grid()
    assert len(grid) >= 1
    with torch.no_grad():
        for level in (grid[0], grid[len(grid) // 2], grid[len(grid) - 1]):
            t = level.t
            # the grid's level <-> time round trip
            assert float(model.schedule.gamma(torch.tensor(t, dtype=torch.float64))) == pytest.approx(
                level.gamma, rel=1e-6
            )
            if isinstance(model.schedule, DiscreteSchedule):
                assert int(model.schedule.level(t)) == level.index
            pred = model.predict(x, t)
            assert pred.value.shape == x.shape and pred.kind in ("x0", "eps", "score")
            s, e, x0 = model.score(x, t), model.eps(x, t), model.x0(x, t)
            assert s.shape == e.shape == x0.shape == x.shape
            assert bool(torch.isfinite(s).all() and torch.isfinite(x0).all())
            alpha, sigma = model.coefficients(x, t)
            torch.testing.assert_close(e, -sigma * s, **tol)
            torch.testing.assert_close(sigma**2 * s, alpha * x0 - x, **tol)  # x0 = (x + σ²·score)/α
            torch.testing.assert_close(pred.score, s, **tol)
            per_sample = torch.full((x.shape[0],), t, dtype=torch.float64)
            torch.testing.assert_close(model.score(x, per_sample), s, **tol)
            if not model.has_energy:
                with pytest.raises(EnergyUnavailableError):
                    model.energy(x, t)
                continue
            energy = model.energy(x, t)
            assert energy.shape == (x.shape[0],)
            e2, s2 = model.energy_and_score(x, t)
            torch.testing.assert_close(e2, energy, **tol)
            torch.testing.assert_close(s2, s, **tol)
            h = 1e-6
            for j in range(x.shape[1]):
                d = torch.zeros_like(x)
                d[:, j] = h
                fd = -(model.energy(x + d, t) - model.energy(x - d, t)) / (2 * h)
                torch.testing.assert_close(fd, s[:, j], rtol=1e-5, atol=1e-5)


def test_composites_refuse_what_is_not_a_model() -> None:
    with pytest.raises(ValueError, match="not a model; wrap a denoiser with bitcompose.as_model"):
        Product(_gauss([0.0, 0.0], 1.0), _gaussian_x0(0.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        Product(_gauss([0.0, 0.0], 1.0), _gauss([1.0, 0.0], 1.0), weights=[1.0, float("nan")])
    with pytest.raises(ValueError, match="different schedule"):
        Product(_gauss([0.0, 0.0], 1.0), as_model(_gaussian_x0(0.0, 1.0)))
    with pytest.raises(ValueError, match="levels"):
        Product(as_model(_gaussian_x0(0.0, 1.0), num_levels=10), as_model(_gaussian_x0(0.0, 1.0)))


def test_energy_parameterised_bit_denoiser_follows_the_contract() -> None:
    torch.manual_seed(0)
    net = UNet(unet_config("tiny", data_channels=2, image_size=8, num_classes=3)).double()
    nn.init.normal_(net.conv_out.weight, std=0.1)
    for kind in ("x0", "diff", "norm"):
        den = BitDenoiser(net, prediction="energy", energy=kind).eval()
        model = as_model(den, cond=1)
        assert model.has_energy
        x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        for level in (model.grid()[0], model.grid()[60]):
            t = level.t
            e, s = model.energy_and_score(x, t)
            torch.testing.assert_close(e, model.energy(x, t))
            torch.testing.assert_close(s, model.score(x, t))
            xr = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model.energy(xr, t).sum(), xr)
            torch.testing.assert_close(-g, s)  # score = −∇energy
            alpha, sigma = model.coefficients(x, t)
            torch.testing.assert_close(model.eps(x, t), -sigma * s)
