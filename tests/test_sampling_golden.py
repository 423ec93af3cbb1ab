"""Fixed-seed golden values of every sampler: DDIM / DDPM / DPM-Solver++(2M) with td, guidance and Appendix G's
variants on a tiny seeded denoiser, and reverse diffusion / annealed MCMC (HMC, MALA, ULA with grouped SMC) on a
product of two exact Gaussian models. The numbers were recorded before the samplers were refactored; a change
of the sampling arithmetic (times, coefficients, random draws, their order) moves them far beyond the tolerance,
which only absorbs float32 differences between machines."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from bitcompose import (
    HMC,
    MALA,
    ULA,
    DiscreteSchedule,
    GaussianModel,
    Product,
    SamplingOptions,
    TimeGrid,
    cfg_model,
    sample,
    sample_model,
)
from bitcompose.compose.drivers import MCMCOptions, annealed_mcmc, reverse_diffusion
from bitcompose.core.sampling import SampleResult


class TinyDenoiser(nn.Module):
    """``x̂0 = 1.2·tanh(½(x W + sc V + t u + e[cond]))`` on ``[B, 3]``; weights drawn from a seeded generator; the
    last embedding row is the null condition."""

    scale = 1.0
    self_condition = True

    def __init__(self, dim: int = 3, classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(0.6 * torch.randn(dim, dim, generator=g))
        self.v = nn.Parameter(0.4 * torch.randn(dim, dim, generator=g))
        self.u = nn.Parameter(torch.randn(dim, generator=g))
        self.emb = nn.Parameter(torch.randn(classes + 1, dim, generator=g))

    def forward(
        self, x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Tensor | None = None
    ) -> Tensor:
        sc = torch.zeros_like(x) if self_cond is None else self_cond
        e = self.emb[-1] if cond is None else self.emb[cond]
        return 1.2 * torch.tanh(0.5 * (x @ self.w + sc @ self.v + t[:, None].to(x.dtype) * self.u + e))


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


DEN = TinyDenoiser()
SHAPE = (4, 3)
LABELS = torch.tensor([0, 1, 0, 1])

DIFFUSION: dict[str, tuple[Callable[[], SampleResult], list[float]]] = {
    "ddim_td": (
        lambda: sample(DEN, SHAPE, steps=7, sampler="ddim", td=0.5, generator=_g(1)),
        [-0.729333, 0.11545, 0.153579, -0.744719, 0.134105, 0.124757,
         -0.79774, 0.229664, 0.173348, -0.788175, 0.185474, 0.101303],
    ),
    "ddpm_td": (
        lambda: sample(DEN, SHAPE, steps=6, sampler="ddpm", td=0.1, generator=_g(2)),
        [-0.628943, 0.064844, 0.077483, -0.836291, 0.107341, 0.094252,
         -0.81402, -0.437437, 0.303715, -0.637661, 0.256502, -0.506967],
    ),
    "ddpm_small": (
        lambda: sample(DEN, SHAPE, steps=5, sampler="ddpm", ddpm_variance="small", generator=_g(3)),
        [-0.744495, -0.064671, 0.550154, -0.856678, 0.047291, 0.439785,
         -0.845273, -0.03989, 0.522751, -0.639766, 0.137549, 0.114792],
    ),
    "dpmpp2m_td": (
        lambda: sample(DEN, SHAPE, steps=8, sampler="dpmpp2m", td=1.0, generator=_g(4)),
        [-0.753449, 0.111254, 0.106835, -0.73128, 0.095047, 0.174629,
         -0.747562, 0.120237, 0.14408, -0.739054, 0.081155, 0.131354],
    ),
    "cfg": (
        lambda: sample(DEN, SHAPE, steps=5, cond=LABELS, guidance=1.5, generator=_g(5)),
        [1.0, 1.0, -0.071849, 1.0, 1.0, -1.0, 1.0, 1.0, 0.135543, 0.217576, 1.0, -1.0],
    ),
    "momentum_self_guidance": (
        lambda: sample(DEN, SHAPE, steps=4, momentum=0.5, self_guidance=1.0, generator=_g(6)),
        [-0.93742, 0.463671, 0.578462, -0.858765, 0.410985, 0.473855,
         -0.174198, -0.317598, -0.619506, -0.826175, 0.227188, 0.613792],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(DIFFUSION))
def test_diffusion_samplers_reproduce_their_golden_values(name: str) -> None:
    run, expected = DIFFUSION[name]
    out = run().samples
    assert out.shape == SHAPE
    torch.testing.assert_close(out.flatten(), torch.tensor(expected), rtol=0, atol=2e-6)


SCHED = DiscreteSchedule.cosine(20)
PROD = Product(
    GaussianModel([0.5, -0.2], std=0.3, schedule=SCHED),
    GaussianModel([-0.1, 0.4], std=[0.5, 0.2], schedule=SCHED),
)
NAN = math.nan

# name -> (run, samples, nfe, resampled, acceptance per level or None)
MCMC: dict[str, tuple[Callable[[], SampleResult], list[float], int, int, list[float] | None]] = {
    "hmc_anneal": (
        lambda: annealed_mcmc(PROD, (5, 2), None, MCMCOptions(kernel=HMC(step_size=0.3), steps_per_level=2), generator=_g(7)),
        [0.322163, -0.026802, 0.454202, 0.189842, -0.046324, -0.024588, 0.454513, 0.172426, 0.429083, 0.535977],
        140, 0,
        [1.0, 0.8, 1.0, 1.0, 1.0, 1.0, 0.9, 0.9, 0.9, 1.0, 0.9, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ),
    "mala_reverse_upper_levels": (
        lambda: annealed_mcmc(PROD, (5, 2), None, MCMCOptions(kernel=MALA(step_size=0.05), steps_per_level=1, driver="reverse", min_level=0.4), generator=_g(8)),
        [0.683384, -0.019108, 0.276121, 0.328738, 0.415672, 0.275358, 0.502774, 0.263378, 0.239999, 0.175953],
        44, 0,
        [NAN] * 8 + [0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0],
    ),
    "reverse_diffusion": (
        lambda: reverse_diffusion(PROD, (5, 2), generator=_g(9)),
        [0.324322, 0.086831, 0.323293, 0.34587, -0.060628, 0.041307, -0.027889, 0.018117, 0.181771, 0.313814],
        20, 0, None,
    ),
    "ula_grouped_smc_final_step": (
        lambda: annealed_mcmc(PROD, (6, 2), None, MCMCOptions(kernel=ULA(step_size=0.01), steps_per_level=1, resample_ess=0.9, final_step=True), resample_groups=torch.tensor([0, 0, 0, 1, 1, 1]), generator=_g(10)),
        [0.28837, 0.04918, 0.536757, 0.211721, 0.523769, 0.092435,
         -0.195536, -0.369512, -0.080008, -0.051845, -0.369347, -0.07239],
        59, 7, [NAN] * 20,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MCMC))
def test_mcmc_drivers_reproduce_their_golden_values(name: str) -> None:
    run, expected, nfe, resampled, acceptance = MCMC[name]
    res = run()
    torch.testing.assert_close(res.samples.flatten(), torch.tensor(expected), rtol=0, atol=2e-6)
    assert (res.nfe, res.resampled) == (nfe, resampled)
    if acceptance is None:
        assert res.acceptance is None
    else:
        assert res.acceptance is not None
        torch.testing.assert_close(
            res.acceptance, torch.tensor(acceptance, dtype=torch.float64), equal_nan=True
        )


def test_sample_is_sample_model_of_the_guided_model_on_the_uniform_grid_bit_for_bit() -> None:
    opts = SamplingOptions(sampler="dpmpp2m", momentum=0.3)
    via_sample = sample(
        DEN,
        SHAPE,
        steps=6,
        td=0.5,
        cond=LABELS,
        guidance=0.8,
        generator=_g(11),
        sampler="dpmpp2m",
        momentum=0.3,
    )
    model = cfg_model(DEN, LABELS, 0.8)
    via_model = sample_model(model, SHAPE, TimeGrid.uniform(6, 0.5), opts, generator=_g(11))
    assert torch.equal(via_sample.samples, via_model.samples) and via_sample.nfe == via_model.nfe == 6
    assert via_sample.times == [t for t, _ in TimeGrid.uniform(6, 0.5).steps()]
    with pytest.raises(ValueError, match="unknown sampling options"):
        sample(DEN, SHAPE, steps=2, tdd=0.1)
