"""Annealed-importance resampling (SMC) between levels: weights, resampling and the mode share it restores."""

from __future__ import annotations

import math

import pytest
import torch

from bitcompose.compose import EpsModel, GaussianModel, Mixture, Product
from bitcompose.compose.drivers import annealed_mcmc
from bitcompose.compose.kernels import HMC
from bitcompose.compose.smc import effective_sample_size, systematic_resample
from bitcompose.core.schedules import DiscreteSchedule

SCHEDULE = DiscreteSchedule.cosine(100)


def test_effective_sample_size_extremes() -> None:
    assert effective_sample_size(torch.zeros(8)) == pytest.approx(8.0)
    assert effective_sample_size(torch.tensor([0.0, -torch.inf, -torch.inf])) == pytest.approx(1.0)
    assert effective_sample_size(torch.log(torch.tensor([1.0, 1.0, 2.0]))) == pytest.approx(16 / 6)


def test_systematic_resample_copies_each_particle_about_b_w_times() -> None:
    w = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    for seed in range(20):
        idx = systematic_resample(w.log(), torch.Generator().manual_seed(seed))
        counts = torch.bincount(idx, minlength=5).double()
        assert bool((counts >= (5 * w).floor()).all() and (counts <= (5 * w).ceil()).all())
    idx = systematic_resample(torch.tensor([0.0, float("nan"), -torch.inf]), torch.Generator().manual_seed(0))
    assert idx.tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="-inf or NaN"):
        systematic_resample(torch.full((3,), -torch.inf), torch.Generator())
    with pytest.raises(ValueError, match="shape"):
        systematic_resample(torch.zeros(2, 2), torch.Generator())


def _two_modes_times_wide_gaussian() -> Product:
    """(N(−1, .05²) + N(1, .05²))/2 × N(0.6, .5²) in 2-D: exact levels; at t = 0 the left mode keeps only
    ``N(−1; .6, s²) / (N(−1; .6, s²) + N(1; .6, s²)) ≈ 0.9 %`` of the mass."""
    left = GaussianModel([-1.0, 0.0], std=0.05, schedule=SCHEDULE)
    right = GaussianModel([1.0, 0.0], std=0.05, schedule=SCHEDULE)
    wide = GaussianModel([0.6, 0.0], std=0.5, schedule=SCHEDULE)
    return Product(Mixture(left, right), wide)


@pytest.mark.parametrize("steps", [2, 5])
def test_resampling_restores_the_mode_share_that_annealing_loses(steps: int) -> None:
    model = _two_modes_times_wide_gaussian()
    abar = float(SCHEDULE.alphas_cumprod[0])
    sig2 = 1 - abar
    s2 = abar * (0.05**2 + 0.5**2) + 2 * sig2
    odds = math.exp(-((1.6 * math.sqrt(abar)) ** 2 - (0.4 * math.sqrt(abar)) ** 2) / (2 * s2))
    exact_left = odds / (1 + odds)
    kernel = HMC(step_size=0.03, n_leapfrog=3, damping=0.5)
    shares = {}
    for ess in (None, 0.5):
        res = annealed_mcmc(
            model,
            (2000, 2),
            kernel=kernel,
            steps_per_level=steps,
            resample_ess=ess,
            generator=torch.Generator().manual_seed(0),
        )
        shares[ess] = float((res.samples[:, 0] < 0).double().mean())
        assert (res.resampled > 0) == (ess is not None)
    assert shares[None] > 0.1  # plain annealing keeps a far too large share in the left mode
    assert abs(shares[0.5] - exact_left) < 0.02
    assert 0.002 < exact_left < 0.02


def test_resampling_needs_energies_and_the_anneal_driver() -> None:
    model = _two_modes_times_wide_gaussian()
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        annealed_mcmc(model, (4, 2), kernel="ula", resample_ess=1.5)
    with pytest.raises(ValueError, match="driver='anneal'"):
        annealed_mcmc(model, (4, 2), kernel="ula", resample_ess=0.5, driver="reverse")
    score_only = EpsModel(torch.nn.Identity(), SCHEDULE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score-only"):
        annealed_mcmc(score_only, (4, 2), kernel="ula", resample_ess=0.5)
