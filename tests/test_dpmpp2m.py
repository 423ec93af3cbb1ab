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
    x = sample(GaussianDenoiser(MU, SD), (20000, 1), steps=100, sampler="dpmpp2m").samples
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
        outs[sampler] = (sample(den, (4, 3), steps=7, sampler=sampler, td=td, x_init=x).samples, den.calls)  # type: ignore[arg-type]
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
    assert torch.equal(multistep_x0(x0, (x0_prev, g_prev), g_now, 1.0), x0)  # a step to γ = 1 (λ = ∞)


@pytest.mark.parametrize("td", [0.0, 2.0])
def test_dpmpp2m_steps_onto_t_zero_are_first_order_and_the_others_second_order(td: float) -> None:
    """γ(0) < 1, so λ(0) is finite: onto t = 0 the solver must take the DDIM step, not extrapolate towards λ(0)."""
    x1 = torch.randn((64, 1), generator=torch.Generator().manual_seed(2))
    infos: list[StepInfo] = []
    sample(
        GaussianDenoiser(0.3, 0.5),
        (64, 1),
        steps=10,
        sampler="dpmpp2m",
        td=td,
        x_init=x1,
        callback=infos.append,
    )
    schedule = CosineSchedule()

    def gamma(t: float) -> float:
        return float(schedule.gamma(torch.tensor(t, dtype=torch.float64)))

    onto_zero = 0
    for k in range(1, len(infos)):
        now, before = infos[k], infos[k - 1]
        g_now, g_next = gamma(now.t), gamma(now.t_next)
        assert now.x0 is not None and before.x0 is not None
        if now.t_next == 0.0:
            onto_zero += 1
            step_x0 = now.x0
        else:
            step_x0 = multistep_x0(now.x0, (before.x0, gamma(before.t)), g_now, g_next)
            assert not torch.allclose(step_x0, now.x0)  # these steps do extrapolate
        eps = (before.x.double() - g_now**0.5 * step_x0.double()) / (1 - g_now) ** 0.5
        expected = g_next**0.5 * step_x0.double() + (1 - g_next) ** 0.5 * eps
        assert torch.allclose(now.x.double(), expected, atol=1e-5)
    assert onto_zero == (1 if td == 0.0 else 3)


@pytest.mark.parametrize("steps", [10, 20])
def test_dpmpp2m_under_a_large_td_is_as_good_as_ddim_on_gaussian_data(steps: int) -> None:
    """td = 7 lands the last 8 (or 13) steps on t = 0 and reads their state again: no clipping (b = 1e9), so an
    extrapolation onto t = 0 blew up (10 steps: mean 94 ± 57; 20 steps: −6.8e5); DDIM gives 0.34 ± 1e-4."""
    mu, sd, n = 0.3, 0.5, 4000
    out = {}
    for sampler in ("ddim", "dpmpp2m"):
        gen = torch.Generator().manual_seed(0)
        den = GaussianDenoiser(mu, sd, scale=1e9)
        x = sample(den, (n, 1), steps=steps, sampler=sampler, td=7.0, generator=gen).samples  # type: ignore[arg-type]
        out[sampler] = (float(x.mean()), float(x.std()))
    (m_ddim, s_ddim), (m, s) = out["ddim"], out["dpmpp2m"]
    assert abs(m_ddim - mu) < 0.05  # td = 7 shrinks every sample onto ≈ the mean: DDIM's std ≈ 0
    assert abs(m - mu) < abs(m_ddim - mu) + 0.01
    assert abs(s - sd) < abs(s_ddim - sd) + 0.01
