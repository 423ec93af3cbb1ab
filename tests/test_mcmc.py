"""Tests of the MCMC kernels, the annealed drivers and reverse diffusion (bitcompose.compose)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from bitcompose.compose import GaussianModel, Product
from bitcompose.compose.drivers import MCMCOptions, annealed_mcmc, reverse_diffusion
from bitcompose.compose.kernels import (
    HMC,
    MALA,
    UHMC,
    ULA,
    KernelState,
    StepSize,
    _leapfrog,
    make_kernel,
    resolve_step_size,
)
from bitcompose.core.model import DiffusionModel, Prediction, TimeLike
from bitcompose.core.schedules import DiscreteSchedule

SCHED = DiscreteSchedule.cosine(100)
GRID = SCHED.grid()
L0 = GRID[0]  # the least noisy level
# Two 2-D Gaussians with different means and small, correlated covariances: their product is a Gaussian with a
# closed form, and summed-score reverse diffusion misses it badly (mean and covariance; note §2.2).
MU1, MU2 = torch.tensor([-0.5, 0.0], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
COV1 = torch.tensor([[0.04, 0.01], [0.01, 0.09]], dtype=torch.float64)
COV2 = torch.tensor([[0.16, -0.02], [-0.02, 0.36]], dtype=torch.float64)


def _models() -> tuple[GaussianModel, GaussianModel]:
    return GaussianModel(MU1, COV1, SCHED), GaussianModel(MU2, COV2, SCHED)


def _product_moments(level: int | None) -> tuple[Tensor, Tensor]:
    """Exact mean/cov of the product of the data Gaussians (level None) or of the level-t noised ones."""
    m1, m2 = _models()
    if level is None:
        (a, c1), (b, c2) = (MU1, COV1), (MU2, COV2)
    else:
        (a, c1), (b, c2) = m1.level_mean_cov(level), m2.level_mean_cov(level)
    p1, p2 = torch.linalg.inv(c1), torch.linalg.inv(c2)
    cov = torch.linalg.inv(p1 + p2)
    return cov @ (p1 @ a + p2 @ b), cov


def _reverse_moments() -> tuple[Tensor, Tensor]:
    """Exact output moments of summed-score ancestral sampling (the score is affine: s = −P x + b)."""
    m1, m2 = _models()
    mean, cov = torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    for t in range(SCHED.num_steps - 1, -1, -1):
        beta = float(SCHED.betas[t])
        (a, c1), (b, c2) = m1.level_mean_cov(t), m2.level_mean_cov(t)
        p = torch.linalg.inv(c1) + torch.linalg.inv(c2)
        bias = torch.linalg.inv(c1) @ a + torch.linalg.inv(c2) @ b
        lin = (torch.eye(2, dtype=torch.float64) - beta * p) / math.sqrt(1 - beta)
        mean = lin @ mean + beta * bias / math.sqrt(1 - beta)
        cov = lin @ cov @ lin.T + (beta * torch.eye(2, dtype=torch.float64) if t > 0 else 0.0)
    return mean, cov


def _check_moments(x: Tensor, mean: Tensor, cov: Tensor, n_se: float, extra: float = 0.0) -> None:
    n = x.shape[0]
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() < n_se * se_mean + extra).all(), (x.mean(0), mean)
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < n_se * se_cov + extra).all(), (torch.cov(x.T), cov)


def test_annealed_hmc_recovers_gaussian_product_while_reverse_diffusion_is_biased() -> None:
    prod = Product(*_models())
    n = 4000
    g = torch.Generator().manual_seed(0)
    rev = reverse_diffusion(prod, (n, 2), generator=g, dtype=torch.float64).samples
    true_mean, true_cov = _product_moments(None)
    # reverse diffusion matches its own (biased) closed form ...
    rev_mean, rev_cov = _reverse_moments()
    _check_moments(rev, rev_mean, rev_cov, n_se=5)
    # ... which is measurably off the product: mean off by > 20 standard errors, variances by > 20%
    assert (rev_mean - true_mean).abs().max() > 20 * float((true_cov.diagonal() / n).sqrt().max())
    assert ((rev.var(0) / true_cov.diagonal() - 1).abs() > 0.2).all()
    # annealed HMC (variant A) samples level 0 of the path: the product of the level-0 Gaussians
    hmc = annealed_mcmc(
        prod, (n, 2), None, MCMCOptions(kernel=HMC(step_size=0.03)), generator=g, dtype=torch.float64
    )
    lvl0_mean, lvl0_cov = _product_moments(0)
    _check_moments(hmc.samples, lvl0_mean, lvl0_cov, n_se=5)
    _check_moments(hmc.samples, true_mean, true_cov, n_se=5, extra=0.004)
    assert hmc.rejected_nonfinite == 0
    assert 0.9 < float(hmc.acceptance.nanmean()) <= 1.0


def test_annealed_mala_and_reverse_driver_recover_gaussian_product() -> None:
    prod = Product(*_models())
    g = torch.Generator().manual_seed(1)
    mala = annealed_mcmc(
        prod, (3000, 2), None, MCMCOptions(kernel=MALA(step_size=2e-3)), generator=g, dtype=torch.float64
    )
    _check_moments(mala.samples, *_product_moments(0), n_se=5)
    rev_hmc = annealed_mcmc(
        prod,
        (3000, 2),
        None,
        MCMCOptions(kernel=HMC(step_size=0.03), steps_per_level=5, driver="reverse"),
        generator=g,
        dtype=torch.float64,
    )
    _check_moments(rev_hmc.samples, *_product_moments(None), n_se=5, extra=0.004)


def test_mala_acceptance_tends_to_one_for_small_steps() -> None:
    m, _ = _models()
    mean, cov = m.level_mean_cov(0)
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = mean + z @ torch.linalg.cholesky(cov).T  # exact samples of the target level
    rates = {}
    for eta in (1e-7, 1e-3, 3e-2):
        _, _, info = MALA(step_size=eta).step(
            m, x, L0, KernelState(), generator=torch.Generator().manual_seed(1)
        )
        assert info.accepted is not None and info.accepted.shape == (2000,)
        rates[eta] = info.acceptance_rate
    assert rates[1e-7] > 0.99
    assert rates[1e-7] >= rates[1e-3] > rates[3e-2]
    assert rates[3e-2] < 0.9


def test_hmc_energy_error_scales_like_step_squared() -> None:
    """At a fixed trajectory length L·ε, leapfrog's energy error |ΔH| is O(ε²): halving ε quarters it."""
    m = GaussianModel([0.3, -0.2], COV2, SCHED)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g, dtype=torch.float64) * 0.4
    v = torch.randn(500, 2, generator=g, dtype=torch.float64)
    e0, s0 = m.energy_and_score(x, L0.t)

    def mean_dh(eps: float, n_steps: int) -> float:
        x1, v1, e1, _, _, _ = _leapfrog(m, x, v, s0, L0.t, eps, 1.0, n_steps, True)
        assert e1 is not None
        return float((e1 + 0.5 * (v1**2).sum(1) - e0 - 0.5 * (v**2).sum(1)).abs().mean())

    ratio = mean_dh(0.05, 8) / mean_dh(0.025, 16)
    assert 3.6 < ratio < 4.4, ratio


class _Quadratic(DiffusionModel):
    """A score-only view of a Gaussian (has_energy False) for trapezoid-vs-exact comparisons."""

    def __init__(self, m: GaussianModel) -> None:
        self.m, self.schedule, self.has_energy = m, m.schedule, False

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        return self.m.predict(x, t)


@pytest.mark.parametrize(
    "exact,trap",
    [
        (MALA(step_size=5e-3), MALA(step_size=5e-3, energy_diff="trapezoid")),
        (MALA(step_size=5e-3), MALA(step_size=5e-3, n_points=5)),
        (HMC(step_size=0.05), HMC(step_size=0.05, n_points=2)),
        (HMC(step_size=0.05), HMC(step_size=0.05, energy_diff="trapezoid", n_points=4)),
        (HMC(step_size=0.05), HMC(step_size=0.05, energy_diff="path")),
    ],
)
def test_trapezoid_metropolis_equals_exact_on_quadratic_energy(exact: MALA | HMC, trap: MALA | HMC) -> None:
    m = GaussianModel([0.3, -0.2], COV1, SCHED)
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.3
    # "auto" picks trapezoid for the score-only view; the explicit options work on the energy model too
    target = _Quadratic(m) if trap.energy_diff == "auto" else m
    xe, se, ie = exact.step(m, x, L0, KernelState(), generator=torch.Generator().manual_seed(3))
    xt, st, it = trap.step(target, x, L0, KernelState(), generator=torch.Generator().manual_seed(3))  # type: ignore[arg-type]
    assert ie.log_accept is not None and it.log_accept is not None
    assert (ie.log_accept - it.log_accept).abs().max() < 1e-10
    assert torch.equal(ie.accepted, it.accepted)  # type: ignore[arg-type]
    assert 0 < ie.acceptance_rate < 1  # the test covers both outcomes
    assert torch.allclose(xe, xt, atol=1e-12, rtol=0)


def test_trapezoid_nfe_and_exact_requires_energy() -> None:
    m = GaussianModel([0.0, 0.0], COV1, SCHED)
    x = torch.zeros(4, 2, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    _, st, info = MALA(n_points=2).step(_Quadratic(m), x, L0, KernelState(), generator=g)  # type: ignore[arg-type]
    assert info.nfe == 2  # current + proposal, no extra for n = 2
    _, _, info = MALA(n_points=2).step(_Quadratic(m), st.x, L0, st, generator=g)  # type: ignore[arg-type]
    assert info.nfe == 1  # cached current score
    _, _, info = MALA(n_points=5).step(_Quadratic(m), st.x, L0, st, generator=g)  # type: ignore[arg-type]
    assert info.nfe == 4  # proposal + 3 interior points
    with pytest.raises(ValueError, match="exact"):
        MALA(energy_diff="exact").step(_Quadratic(m), x, L0, KernelState(), generator=g)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="energy_diff"):
        MALA(energy_diff="path").step(m, x, L0, KernelState(), generator=g)


class _NaNRegion(DiffusionModel):
    """A Gaussian whose energy and score are NaN for x[:, 0] > 0.5."""

    def __init__(self) -> None:
        self.m = GaussianModel([0.0, 0.0], schedule=SCHED, std=1.0)
        self.schedule, self.has_energy = SCHED, True

    def _mask(self, x: Tensor) -> Tensor:
        return x[:, 0] > 0.5

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        return torch.where(self._mask(x), torch.nan, self.m.energy(x, t))

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        return torch.where(self._mask(x)[:, None], torch.nan, self.m.score(x, t))


@pytest.mark.parametrize("kernel", [MALA(step_size=0.05), HMC(step_size=0.2), UHMC(step_size=0.2)])
def test_nonfinite_proposals_are_rejected_and_counted(kernel: MALA | HMC | UHMC) -> None:
    model = _NaNRegion()
    x = torch.full((500, 2), 0.3, dtype=torch.float64)
    res = annealed_mcmc(
        model,
        x,
        None,
        MCMCOptions(kernel=kernel, steps_per_level=3),
        generator=torch.Generator().manual_seed(0),
    )  # type: ignore[arg-type]
    assert torch.isfinite(res.samples).all()
    assert (res.samples[:, 0] <= 0.5).all()
    assert res.rejected_nonfinite > 0


def test_ula_keeps_samples_with_nonfinite_score() -> None:
    model = _NaNRegion()
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    x1, _, info = ULA(step_size=1e-3).step(
        model, x, L0, KernelState(), generator=torch.Generator().manual_seed(0)
    )  # type: ignore[arg-type]
    assert info.rejected_nonfinite == 1 and info.accepted is None
    assert torch.equal(x1[1], x[1]) and not torch.equal(x1[0], x[0])


def test_hmc_flip_on_reject_option() -> None:
    m, _ = _models()
    x = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    out = {}
    for flip in (True, False):
        kern = HMC(step_size=0.15, damping=0.5, flip_on_reject=flip)
        out[flip] = kern.step(m, x, L0, KernelState(), generator=torch.Generator().manual_seed(5))
    (xf, sf, inf_f), (xn, sn, _) = out[True], out[False]
    assert torch.equal(xf, xn)  # same proposals and decisions
    rej = ~inf_f.accepted  # type: ignore[operator]
    assert 0 < int(rej.sum()) < 400
    assert sf.momentum is not None and sn.momentum is not None
    assert torch.equal(sf.momentum[rej], -sn.momentum[rej])
    assert torch.equal(sf.momentum[~rej], sn.momentum[~rej])


def test_annealed_is_reproducible_and_counts_nfe() -> None:
    prod = Product(*_models())
    sched_levels = SCHED.num_steps

    def run(seed: int, kernel: MALA | HMC | ULA) -> tuple[Tensor, int, Tensor]:
        r = annealed_mcmc(
            prod,
            (64, 2),
            None,
            MCMCOptions(kernel=kernel, steps_per_level=2),
            generator=torch.Generator().manual_seed(seed),
        )
        return r.samples, r.nfe, r.acceptance

    a, nfe_h, acc = run(0, HMC())
    b, _, _ = run(0, HMC())
    c, _, _ = run(1, HMC())
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert nfe_h == sched_levels * (1 + 2 * 3)  # one fresh evaluation per level, then L = 3 per step
    assert acc.shape == (sched_levels,) and torch.isfinite(acc).all()
    _, nfe_m, _ = run(0, MALA())
    assert nfe_m == sched_levels * (1 + 2)
    _, nfe_u, acc_u = run(0, ULA())
    assert nfe_u == sched_levels * 2 and torch.isnan(acc_u).all()


class _Recorder(DiffusionModel):
    """Records the level of every evaluation."""

    def __init__(self, m: GaussianModel) -> None:
        self.m, self.schedule, self.has_energy, self.calls = m, m.schedule, True, []

    def _level(self, t: TimeLike) -> int:
        return int(self.m.schedule.level(torch.as_tensor(t)))

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        self.calls.append(("score", self._level(t)))
        return self.m.score(x, t)

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        return self.m.energy(x, t)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        self.calls.append(("both", self._level(t)))
        return self.m.energy_and_score(x, t)


def test_reverse_driver_runs_mcmc_at_level_t_minus_1_above_cutoff() -> None:
    sched = DiscreteSchedule.cosine(6)
    rec = _Recorder(GaussianModel([0.0, 0.0], schedule=sched, std=0.5))
    res = annealed_mcmc(
        rec,
        (8, 2),
        None,
        MCMCOptions(kernel=MALA(), steps_per_level=1, driver="reverse", min_level=0.5),
        generator=torch.Generator().manual_seed(0),
    )
    # MCMC at 5 (start); reverse step 5 -> 4, MCMC at 4; 4 -> 3, MCMC at 3; then plain reverse steps 3, 2, 1, 0
    expected = [("both", 5), ("both", 5), ("score", 5), ("both", 4), ("both", 4), ("score", 4)]
    expected += [("both", 3), ("both", 3), ("score", 3), ("score", 2), ("score", 1), ("score", 0)]
    assert rec.calls == expected
    assert torch.isnan(res.acceptance[:3]).all() and torch.isfinite(res.acceptance[3:]).all()
    assert res.nfe == len(expected)


def test_step_size_specs_and_validation() -> None:
    assert resolve_step_size(0.1, GRID[5]) == 0.1
    assert math.isclose(resolve_step_size(StepSize(2.0, 1.0), GRID[50]), 2.0 * float(SCHED.betas[50]))
    assert resolve_step_size(lambda i: 0.01 * (i + 1), GRID[4]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="> 0"):
        resolve_step_size(-1.0, L0)
    with pytest.raises(ValueError, match="driver"):
        annealed_mcmc(Product(*_models()), (4, 2), None, MCMCOptions(kernel=ULA(), driver="bogus"))
    with pytest.raises(ValueError, match="damping"):
        UHMC(damping=1.5).step(_models()[0], torch.zeros(3, 2, dtype=torch.float64), L0, KernelState(),
                               generator=torch.Generator())  # fmt: skip


def test_kernel_by_name_and_step_size_override() -> None:
    assert make_kernel("HMC", step_size=0.1, flip_on_reject=False) == HMC(step_size=0.1, flip_on_reject=False)
    with pytest.raises(ValueError, match="unknown MCMC kernel"):
        make_kernel("gibbs")
    with pytest.raises(ValueError, match="bad options"):
        make_kernel("ula", n_leapfrog=3)
    prod = Product(*_models())
    by_name = annealed_mcmc(
        prod,
        (16, 2),
        None,
        MCMCOptions(kernel="mala", steps_per_level=1, step_size=StepSize(0.01, 1.0)),
        generator=torch.Generator().manual_seed(0),
    )
    by_obj = annealed_mcmc(
        prod,
        (16, 2),
        None,
        MCMCOptions(kernel=MALA(step_size=StepSize(0.01, 1.0)), steps_per_level=1),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(by_name.samples, by_obj.samples)


class _TinyEnergyNet(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(3, 2, generator=g) * 0.5)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.tanh(torch.cat([x, t.to(x.dtype)[:, None] / 10], 1) @ self.w)


def test_annealed_sampling_of_learned_energy_composites_runs_end_to_end() -> None:
    from bitcompose.compose import EnergyModel, EpsModel, Mixture, Negation

    sched = DiscreteSchedule.cosine(10)
    a, b = EnergyModel(_TinyEnergyNet(0), sched).eval(), EnergyModel(_TinyEnergyNet(1), sched).eval()
    levels: list[int] = []
    for model, kernel in [
        (Mixture(a, b, sharpen=3.5), HMC(step_size=0.05)),
        (Negation(a, EpsModel(_TinyEnergyNet(2), sched)), HMC(step_size=0.05)),  # score-only: trapezoid MH
        (Mixture(a, b), MALA(step_size=1e-3)),
    ]:
        res = annealed_mcmc(
            model,
            (32, 2),
            None,
            MCMCOptions(kernel=kernel, steps_per_level=2),
            generator=torch.Generator().manual_seed(0),
            callback=lambda info: levels.append(int(sched.level(info.t))),
        )
        assert torch.isfinite(res.samples).all() and res.samples.shape == (32, 2)
        assert ((res.acceptance >= 0) & (res.acceptance <= 1)).all()
    assert levels == list(range(9, -1, -1)) * 3


@pytest.mark.parametrize(
    "kernel,score_only",
    [
        (MALA(step_size=0.02), False),
        (MALA(step_size=0.02, n_points=3), True),
        (HMC(step_size=0.25, damping=0.5), False),
        (HMC(step_size=0.25, damping=0.5, energy_diff="path"), True),
    ],
)
def test_metropolis_kernels_leave_the_target_invariant(kernel: MALA | HMC, score_only: bool) -> None:
    """Start from exact samples of a level and take large steps (acceptance well below 1): moments are kept."""
    m = GaussianModel(MU1, COV1, SCHED)
    mean, cov = m.level_mean_cov(0)
    g = torch.Generator().manual_seed(7)
    x = mean + torch.randn(4000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    target = _Quadratic(m) if score_only else m
    state, rates = KernelState(), []
    for _ in range(15):
        x, state, info = kernel.step(target, x, L0, state, generator=g)  # type: ignore[arg-type]
        rates.append(info.acceptance_rate)
    assert 0.2 < sum(rates) / len(rates) < 0.95
    _check_moments(x, mean, cov, n_se=5)


class _InfEnergyRegion(_NaNRegion):
    """Zero density (energy +inf) for x[:, 0] > 0.5, with a finite score everywhere."""

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        return torch.where(self._mask(x), torch.inf, self.m.energy(x, t))

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        return self.m.score(x, t)


@pytest.mark.parametrize("kernel", [MALA(step_size=0.05), HMC(step_size=0.2)])
def test_chains_leave_a_zero_density_start_and_never_enter_it(kernel: MALA | HMC) -> None:
    model = _InfEnergyRegion()
    x = torch.full((400, 2), 0.8, dtype=torch.float64)
    state, g = KernelState(), torch.Generator().manual_seed(0)
    for _ in range(5):
        x, state, info = kernel.step(model, x, L0, state, generator=g)  # type: ignore[arg-type]
    inside = x[:, 0] <= 0.5
    assert torch.isfinite(x).all() and 0 < int(inside.sum()) < 400
    for _ in range(5):
        x2, state, info = kernel.step(model, x, L0, state, generator=g)  # type: ignore[arg-type]
        assert (x2[inside, 0] <= 0.5).all()  # once in the support, never proposed out of it successfully
        x = x2
