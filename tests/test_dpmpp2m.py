"""DPM-Solver++(2M) against the exact probability-flow ODE of Gaussian data, and its reduction to DDIM."""

from __future__ import annotations

import math

import pytest
import torch

from bitcompose import CosineSchedule, sample
from bitcompose.diffusion.samplers import StepInfo, multistep_x0
from test_sampling_reverse import MU, SD, ConstantDenoiser, GaussianDenoiser

T_STOP = 0.1  # compare the states where every run passes: t_next = 0.1 (T a multiple of 10)


def _state_at_stop(sampler: str, steps: int, n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler's state at ``t = T_STOP`` and the exact ODE state there, from the same starting noise."""
    x1 = torch.randn((n, 1), generator=torch.Generator().manual_seed(0))
    seen: dict[str, torch.Tensor] = {}

    def grab(info: StepInfo) -> None:
        if math.isclose(info.t_next, T_STOP, abs_tol=1e-9):
            seen["x"] = info.x.double().clone()

    sample(GaussianDenoiser(MU, SD), (n, 1), steps=steps, sampler=sampler, x_init=x1, callback=grab)  # type: ignore[arg-type]
    # the probability-flow ODE keeps (x_t − α_t μ)/√(α_t² s² + σ_t²) fixed along each path
    g = CosineSchedule().gamma(torch.tensor([1.0, T_STOP], dtype=torch.float64))
    a, v = g.sqrt(), g * SD**2 + (1 - g)
    exact = a[1] * MU + (x1.double() - a[0] * MU) * (v[1] / v[0]).sqrt()
    return seen["x"], exact


def _error(sampler: str, steps: int) -> float:
    x, exact = _state_at_stop(sampler, steps)
    return float((x - exact).abs().mean())


def test_dpmpp2m_converges_faster_than_first_order_and_beats_ddim() -> None:
    errs = {steps: _error("dpmpp2m", steps) for steps in (10, 20, 80)}
    ddim = {steps: _error("ddim", steps) for steps in (10, 80)}
    assert errs[10] > errs[20] > errs[80]
    assert 6.0 < ddim[10] / ddim[80] < 10.0  # DDIM is first order: 8× the steps, ≈ 8× less error
    assert errs[10] / errs[80] > 16.0  # higher order (the first steps from γ ≈ 0 are first order)
    assert errs[10] < 0.25 * ddim[10]


def test_dpmpp2m_mean_and_variance_at_ten_steps_closer_than_ddim() -> None:
    out = {}
    for sampler in ("ddim", "dpmpp2m"):
        x, exact = _state_at_stop(
            sampler, 10
        )  # exact: the ODE's state from the same noise (no sampling error)
        out[sampler] = (abs(float(x.mean() - exact.mean())), abs(float(x.var() - exact.var())))
    assert out["dpmpp2m"][0] < out["ddim"][0] and out["dpmpp2m"][1] < out["ddim"][1]


def test_dpmpp2m_samples_match_the_data_with_enough_steps() -> None:
    x = sample(GaussianDenoiser(MU, SD), (20000, 1), steps=100, sampler="dpmpp2m")
    assert abs(float(x.mean()) - MU) < 4 * SD / 20000**0.5
    assert float(x.var()) == pytest.approx(SD**2, rel=0.06)


@pytest.mark.parametrize("td", [0.0, 1.0])
def test_constant_estimate_makes_dpmpp2m_equal_ddim(td: float) -> None:
    """With x̂0 constant the extrapolation vanishes: the same steps, clipping and self-conditioning as DDIM."""
    value = torch.tensor([[0.4, -1.7, 2.0]])  # -1.7 and 2.0 clip at b = 1
    outs = {}
    for sampler in ("ddim", "dpmpp2m"):
        den = ConstantDenoiser(value)
        x = torch.randn((4, 3), generator=torch.Generator().manual_seed(1))
        outs[sampler] = (sample(den, (4, 3), steps=7, sampler=sampler, td=td, x_init=x), den.calls)  # type: ignore[arg-type]
    assert torch.equal(outs["ddim"][0], outs["dpmpp2m"][0])
    for (xa, ta, sa, _), (xb, tb, sb, _) in zip(outs["ddim"][1], outs["dpmpp2m"][1], strict=True):
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
        assert (sa is None and sb is None) or torch.equal(sa, sb)


def test_multistep_x0_is_exact_for_estimates_linear_in_half_log_snr() -> None:
    def lam(g: float) -> float:
        return 0.5 * math.log(g / (1 - g))

    g_prev, g_now, g_next = 0.2, 0.5, 0.9
    a, b = torch.tensor([0.3]), torch.tensor([-0.8])
    x0_prev, x0 = a + b * lam(g_prev), a + b * lam(g_now)
    mid = a + b * (lam(g_now) + lam(g_next)) / 2
    assert torch.allclose(multistep_x0(x0, (x0_prev, g_prev), g_now, g_next), mid, atol=1e-6)
    assert torch.equal(multistep_x0(x0, None, g_now, g_next), x0)  # first step: first order
    assert torch.equal(multistep_x0(x0, (x0_prev, g_prev), g_now, 1.0), x0)  # final step to t = 0


def test_the_command_line_offers_every_sampler() -> None:
    from bitcompose.cli.images import SAMPLER_CHOICES
    from bitcompose.diffusion.samplers import SAMPLERS

    assert SAMPLER_CHOICES == SAMPLERS
