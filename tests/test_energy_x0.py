"""The x0-form energy of Bit Diffusion denoisers, E = ‖x − α·f‖²/(2σ): closed forms, energy/score consistency, and
the loss it is trained with."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bitcompose import BitDenoiser, LossDraws, as_model, diffusion_loss


class _Linear(nn.Module):
    """``f(x) = A·x + c`` on ``[B, D]`` (the time and the conditioning ignored): a network with a known Jacobian."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(0.3 * torch.randn(dim, dim, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(0.1 * torch.randn(dim, generator=g, dtype=torch.float64))

    def forward(self, x: Tensor, gamma: Tensor, cond: object = None) -> Tensor:
        return x @ self.A.T + self.c


def _den(dim: int = 5, seed: int = 0) -> BitDenoiser:
    return BitDenoiser(_Linear(dim, seed), prediction="energy", energy="x0", self_condition=False).double()


def test_the_x0_estimate_is_f_plus_the_jacobian_term() -> None:
    den = _den()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    alpha = den.schedule.alpha(t).double()[:, None]
    A, c = den.net.A.detach(), den.net.c.detach()
    f = x @ A.T + c
    expected = f + (x - alpha * f) @ A  # f + J_fᵀ(x − α·f), J_f = A
    with torch.no_grad():
        got = den(x, t)
    assert torch.allclose(got, expected, atol=1e-10)


def test_a_network_flat_in_x_predicts_its_output_as_x0() -> None:
    den = _den()
    with torch.no_grad():
        den.net.A.zero_()
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.tensor([0.1, 0.4, 0.8, 0.99], dtype=torch.float64)
    with torch.no_grad():
        got = den(x, t)
    assert torch.allclose(got, den.net.c.detach().expand(4, 5), atol=1e-10)


def test_the_energy_is_its_closed_form_and_the_score_its_gradient() -> None:
    den = _den(seed=3)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t = torch.full((6,), 0.6, dtype=torch.float64)
    alpha, sigma = den.schedule.alpha(t).double()[:, None], den.schedule.sigma(t).double()[:, None]
    f = x @ den.net.A.detach().T + den.net.c.detach()
    with torch.no_grad():
        e = den.energy(x, t)
    assert torch.allclose(e, ((x - alpha * f) ** 2 / (2 * sigma)).sum(1), atol=1e-12)
    model = as_model(den)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.energy(xg, 0.6).sum(), xg)
    assert torch.allclose(model.score(x, 0.6), -grad, atol=1e-10)  # score = −∇ₓ(E/σ) exactly


def test_it_trains_on_the_x0_mse_by_default_and_the_eps_form_on_the_eps_mse() -> None:
    g = torch.Generator().manual_seed(5)
    x0 = torch.randint(0, 2, (16, 5), generator=g).double() * 2 - 1
    t, noise = (
        torch.rand(16, generator=g, dtype=torch.float64),
        torch.randn(16, 5, generator=g, dtype=torch.float64),
    )
    for kind, target in (("x0", "x0"), ("diff", "eps"), ("norm", "eps")):
        den = BitDenoiser(_Linear(5), prediction="energy", energy=kind, self_condition=False).double()
        assert den.loss_target == target
        loss = diffusion_loss(den, x0, draws=LossDraws(t, noise), generator=g).loss
        alpha, sigma = den.schedule.alpha(t).double()[:, None], den.schedule.sigma(t).double()[:, None]
        x_t = alpha * x0 + sigma * noise
        _, eps = den.energy_and_eps(x_t, t)
        want = ((x_t - sigma * eps) / alpha - x0) if target == "x0" else (eps - noise)
        assert loss.item() == pytest.approx(want.pow(2).mean().item(), rel=1e-9)
        other = "eps" if target == "x0" else "x0"
        assert diffusion_loss(den, x0, draws=LossDraws(t, noise), target=other).loss.item() != pytest.approx(
            loss.item()
        )
