"""The composition experiments' sampler (bitcompose.compose.composite_sampling) and the one unit of ``min_level``:
a fraction of the grid, which selects the levels the objects (index 50 of 100) and guidance (hundredths · L // 100)
experiments ran MCMC on before it was one unit."""

from __future__ import annotations

import math

import pytest
import torch

from bitcompose import DiscreteSchedule, GaussianModel, MCMCOptions, Product, annealed_mcmc
from bitcompose.compose.composite_sampling import MCMCSettings, sample_composite


def _product(levels: int) -> Product:
    sched = DiscreteSchedule.cosine(levels)
    return Product(
        GaussianModel([0.3, -0.1], std=0.4, schedule=sched),
        GaussianModel([0.0, 0.2], std=0.6, schedule=sched),
    )


def _mcmc_levels(levels: int, min_level: float) -> list[int]:
    """The level indices at which MALA ran (finite acceptance) under the reverse driver of sample_composite."""
    model = _product(levels)
    torch.manual_seed(0)  # not used by the sampler (explicit generator); keeps a stray global draw visible
    res_acc = annealed_mcmc(
        model, (4, 2), model.grid(), MCMCSettings(min_level=min_level).options("mala", model.grid()),
        generator=torch.Generator().manual_seed(0),
    ).acceptance  # fmt: skip
    assert res_acc is not None
    return [i for i, a in enumerate(res_acc.tolist()) if not math.isnan(a)]


@pytest.mark.parametrize(
    ("levels", "hundredths"), [(100, 50), (100, 95), (20, 50), (30, 25), (20, 90), (7, 50)]
)
def test_min_level_selects_the_levels_the_experiments_ran_mcmc_on(levels: int, hundredths: int) -> None:
    # guidance converted hundredths to an index as m·L // 100; objects passed 50 and 95 on its 100 levels
    assert _mcmc_levels(levels, hundredths / 100) == list(range(hundredths * levels // 100, levels))


def test_the_defaults_are_the_noisier_half() -> None:
    assert MCMCSettings().min_level == 0.5
    assert _mcmc_levels(100, MCMCSettings().min_level) == list(range(50, 100))  # as objects' index 50 of 100


def test_sample_composite_reports_and_uses_the_settings() -> None:
    model = _product(10)
    shape = (5, 2)
    rev, info_rev = sample_composite(
        model, shape, "reverse", MCMCSettings(), generator=torch.Generator().manual_seed(1)
    )
    assert info_rev["nfe"] == 10 and info_rev["acceptance"] is None and rev.shape == shape
    settings = MCMCSettings(steps_per_level=2, step=0.3, min_level=0.5)
    x, info = sample_composite(model, shape, "mala", settings, generator=torch.Generator().manual_seed(1))
    grid = model.grid()
    expected = annealed_mcmc(
        model, shape, grid, settings.options("mala", grid), generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(x, expected.samples) and info["nfe"] == expected.nfe
    assert 0.0 <= info["acceptance"] <= 1.0 and info["resampled"] == 0


def test_smc_settings_anneal_from_noise_with_the_final_step() -> None:
    grid = _product(10).grid()
    opts = MCMCSettings(min_level=0.7, resample_ess=0.5).options("hmc", grid)
    assert (opts.driver, opts.min_level, opts.resample_ess, opts.final_step) == ("anneal", 0.0, 0.5, True)
    opts = MCMCSettings(min_level=0.7).options("ula", grid)
    assert (opts.driver, opts.min_level, opts.resample_ess, opts.final_step) == ("reverse", 0.7, None, False)


def test_min_level_outside_the_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction of the grid"):
        MCMCSettings(min_level=50)  # the old hundredths
    with pytest.raises(ValueError, match="fraction of the grid"):
        MCMCOptions(kernel="hmc", driver="reverse", min_level=-0.1)
    with pytest.raises(ValueError, match="unknown MCMC kernel"):
        MCMCOptions(kernel="gibbs")
