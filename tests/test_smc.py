"""Annealed-importance resampling (SMC) between levels: weights, resampling and the mode share it restores."""

from __future__ import annotations

import math

import pytest
import torch

from bitcompose.compose import EpsModel, GaussianModel, Mixture, Product
from bitcompose.compose.drivers import MCMCOptions, annealed_mcmc
from bitcompose.compose.kernels import HMC
from bitcompose.compose.smc import effective_sample_size, resample_within_groups, systematic_resample
from bitcompose.core.model import DiffusionModel, Prediction, TimeLike, as_times
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.core.tensors import append_dims

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
            None,
            MCMCOptions(kernel=kernel, steps_per_level=steps, resample_ess=ess),
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
        annealed_mcmc(model, (4, 2), None, MCMCOptions(kernel="ula", resample_ess=1.5))
    with pytest.raises(ValueError, match="driver='anneal'"):
        annealed_mcmc(model, (4, 2), None, MCMCOptions(kernel="ula", driver="reverse", resample_ess=0.5))
    score_only = EpsModel(torch.nn.Identity(), SCHEDULE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score-only"):
        annealed_mcmc(score_only, (4, 2), None, MCMCOptions(kernel="ula", resample_ess=0.5))


# ---- resampling within groups (slots bound to different conditions) -------------------------------------------


class _PerSlotGaussian(DiffusionModel):
    """Slot ``i``'s data are ``N(means[i], std² I)`` (a condition bound to each slot); exact levels of the DDPM
    forward process: ``N(√ᾱ μ_i, (ᾱ std² + 1 − ᾱ) I)``, exact energies (normaliser included) and scores."""

    has_energy = True

    def __init__(self, means: torch.Tensor, std: float) -> None:
        self.schedule, self.means, self.std = SCHEDULE, means.double(), std

    def _parts(self, x: torch.Tensor, t: TimeLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = SCHEDULE.alphas_cumprod[SCHEDULE.level(as_times(t, x)).cpu()]
        v = g * self.std**2 + (1 - g)
        return x.double() - g.sqrt()[:, None] * self.means, v[:, None], g

    def predict(self, x: torch.Tensor, t: TimeLike) -> Prediction:
        diff, v, g = self._parts(x, t)
        alpha, sigma = append_dims(g.sqrt(), x).to(x), append_dims((1 - g).sqrt(), x).to(x)
        return Prediction("score", (-diff / v).to(x), x, alpha, sigma)

    def energy(self, x: torch.Tensor, t: TimeLike) -> torch.Tensor:
        diff, v, _ = self._parts(x, t)
        return (0.5 * (diff * diff / v).sum(1) + 0.5 * x.shape[1] * torch.log(2 * math.pi * v[:, 0])).to(x)


def _wrong_mode_share(groups: torch.Tensor | None, ess: float | None) -> tuple[float, int]:
    """400 slots in 16-D, slot ``i`` asking for ``N(±2, 0.1²)`` by its condition ``i mod 2``; a weak HMC cannot
    cross between the modes. The share of samples on the other condition's mode, and the resampling count."""
    cond = torch.arange(400) % 2
    means = (4.0 * cond.double() - 2.0)[:, None].expand(400, 16)
    res = annealed_mcmc(
        _PerSlotGaussian(means, 0.1),
        (400, 16),
        None,
        MCMCOptions(kernel=HMC(step_size=0.01, n_leapfrog=2), steps_per_level=1, resample_ess=ess),
        resample_groups=groups,
        generator=torch.Generator().manual_seed(0),
    )
    wrong = res.samples.mean(1).sign() != means[:, 0].sign()
    return float(wrong.double().mean()), res.resampled


def test_resampling_across_conditions_puts_particles_in_the_wrong_slot_and_groups_prevent_it() -> None:
    cond = torch.arange(400) % 2
    assert _wrong_mode_share(None, None) == (0.0, 0)  # without SMC every slot stays on its own mode
    whole, n_whole = _wrong_mode_share(None, 0.5)
    assert (
        n_whole > 0 and 0.3 < whole < 0.7
    )  # one population: a slot gets either condition's particle (≈ 50 %)
    grouped, n_grouped = _wrong_mode_share(cond, 0.5)
    assert n_grouped > 0 and grouped == 0.0


def test_resample_within_groups_never_crosses_groups_and_uses_each_groups_weights() -> None:
    gen = torch.Generator().manual_seed(0)
    for seed in range(20):
        groups = torch.randint(-1, 3, (30,), generator=torch.Generator().manual_seed(seed))
        lw = 3 * torch.randn(30, generator=gen, dtype=torch.float64)
        idx, done = resample_within_groups(lw, groups, gen)
        assert torch.equal(groups[idx], groups)
        for g in groups.unique():
            members = (groups == g).nonzero().flatten()
            if members.numel() < 2:
                assert torch.equal(idx[members], members) and not bool(done[members].any())
                continue
            w = torch.softmax(lw[members], 0)  # normalised within the group
            counts = torch.bincount(idx[members], minlength=30)[members].double()
            n = members.numel()
            assert bool(((counts >= (n * w).floor()) & (counts <= (n * w).ceil())).all())
    # a group with one dominant weight collapses onto it; a group with equal weights is left untouched
    lw = torch.tensor([-50.0, 0.0, -50.0, -50.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    groups = torch.tensor([7, 7, 7, 7, 2, 2, 2, 2])
    idx, done = resample_within_groups(lw, groups, torch.Generator().manual_seed(1), ess_fraction=0.5)
    assert idx.tolist() == [1, 1, 1, 1, 4, 5, 6, 7]
    assert done.tolist() == [True] * 4 + [False] * 4


def test_one_group_is_the_ungrouped_sampler_bit_for_bit() -> None:
    model = _two_modes_times_wide_gaussian()
    kernel = HMC(step_size=0.03, n_leapfrog=3, damping=0.5)
    runs = [
        annealed_mcmc(
            model,
            (300, 2),
            None,
            MCMCOptions(kernel=kernel, steps_per_level=1, resample_ess=0.5),
            resample_groups=groups,
            generator=torch.Generator().manual_seed(3),
        )
        for groups in (None, torch.full((300,), 4))
    ]
    assert runs[0].resampled > 0 and runs[0].resampled == runs[1].resampled
    assert torch.equal(runs[0].samples, runs[1].samples)


def test_resample_groups_are_checked() -> None:
    model = _two_modes_times_wide_gaussian()
    with pytest.raises(ValueError, match="needs resample_ess"):
        annealed_mcmc(
            model, (4, 2), None, MCMCOptions(kernel="ula"), resample_groups=torch.zeros(4, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="integer dtype"):
        annealed_mcmc(
            model, (4, 2), None, MCMCOptions(kernel="ula", resample_ess=0.5), resample_groups=torch.zeros(4)
        )
    with pytest.raises(ValueError, match="integer dtype"):
        annealed_mcmc(
            model,
            (4, 2),
            None,
            MCMCOptions(kernel="ula", resample_ess=0.5),
            resample_groups=torch.zeros(4).bool(),
        )
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        annealed_mcmc(
            model,
            (4, 2),
            None,
            MCMCOptions(kernel="ula", resample_ess=0.5),
            resample_groups=torch.zeros(5).long(),
        )
    with pytest.raises(ValueError, match="integer tensor"):
        annealed_mcmc(
            model, (4, 2), None, MCMCOptions(kernel="ula", resample_ess=0.5), resample_groups=[0, 0, 1, 1]
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        resample_within_groups(torch.zeros(4), torch.zeros(4).long(), torch.Generator(), ess_fraction=0.0)
