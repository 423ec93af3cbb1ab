"""Continuous-time denoisers as composable models (``as_model``): the Gaussian closed form, image U-Nets under
every kernel, classifier-free guidance as a composite, and self-conditioning as sampler state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from bitcompose import (
    HMC,
    MALA,
    UHMC,
    ULA,
    BitCodec,
    BitDenoiser,
    CFGConjunction,
    MCMCOptions,
    Negation,
    Product,
    TimeGrid,
    UNet,
    annealed_mcmc,
    as_model,
    reverse_diffusion,
    sample,
    sample_model,
    unet_config,
)
from bitcompose.core.schedules import CosineSchedule

COS = CosineSchedule()
M1, S1, M2, S2 = -0.5, 0.2, 1.0, 0.4  # two isotropic 2-D Gaussians: N(M1, S1² I) and N(M2, S2² I)


def _gaussian_x0(mean: float, std: float):  # type: ignore[no-untyped-def]
    """The exact x0 denoiser E[x0 | x_t] of N(mean, std² I) data under the paper's γ(t)."""

    def fn(x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        g = COS.gamma(t.double()).to(x.dtype)[:, None]
        a = g.sqrt()
        return mean + a * std**2 / (g * std**2 + 1 - g) * (x - a * mean)

    return fn


def _product() -> Product:
    m1 = as_model(_gaussian_x0(M1, S1), scale=None, self_condition=False)
    m2 = as_model(_gaussian_x0(M2, S2), scale=None, self_condition=False)
    return Product(m1, m2)


def _level_product(gamma: float) -> tuple[float, float]:
    """Mean and variance (per dimension) of the product of the two noised Gaussians at signal variance γ."""
    a = math.sqrt(gamma)
    v1, v2 = gamma * S1**2 + 1 - gamma, gamma * S2**2 + 1 - gamma
    var = 1 / (1 / v1 + 1 / v2)
    return var * (a * M1 / v1 + a * M2 / v2), var


def _reverse_moments(prod: Product) -> tuple[float, float]:
    """Exact output moments of summed-score ancestral sampling: the score is affine, s = −p·x + b per dim."""
    mean, var = 0.0, 1.0
    for level in prod.grid().descending():
        g, beta = level.gamma, level.beta
        a = math.sqrt(g)
        v1, v2 = g * S1**2 + 1 - g, g * S2**2 + 1 - g
        p, b = 1 / v1 + 1 / v2, a * M1 / v1 + a * M2 / v2
        lin = (1 - beta * p) / math.sqrt(1 - beta)
        mean = lin * mean + beta * b / math.sqrt(1 - beta)
        var = lin**2 * var + (beta if level.index > 0 else 0.0)
    return mean, var


def test_annealed_hmc_recovers_the_product_of_two_gaussian_denoisers_reverse_diffusion_does_not() -> None:
    prod = _product()
    n = 4000
    g = torch.Generator().manual_seed(0)
    true_mean, true_var = _level_product(1.0)  # the product of the data Gaussians
    assert (true_mean, true_var) == pytest.approx((-0.2, 0.032))
    rev = reverse_diffusion(prod, (n, 2), generator=g, dtype=torch.float64)
    rev_mean, rev_var = _reverse_moments(prod)
    se = math.sqrt(rev_var / n)
    assert (rev.samples.mean(0) - rev_mean).abs().max() < 5 * se  # it samples its own closed form ...
    assert (rev.samples.var(0) / rev_var - 1).abs().max() < 5 * math.sqrt(2 / n)
    assert abs(rev_mean - true_mean) > 20 * math.sqrt(true_var / n)  # ... which is biased
    assert abs(rev_var / true_var - 1) > 0.2
    assert rev.nfe == 100 and rev.acceptance is None
    hmc = annealed_mcmc(
        prod, (n, 2), None, MCMCOptions(kernel=HMC(step_size=0.03)), generator=g, dtype=torch.float64
    )
    lvl_mean, lvl_var = _level_product(prod.grid()[0].gamma)
    assert (hmc.samples.mean(0) - lvl_mean).abs().max() < 5 * math.sqrt(lvl_var / n)
    assert (hmc.samples.var(0) / lvl_var - 1).abs().max() < 5 * math.sqrt(2 / n)
    assert abs(lvl_var / true_var - 1) < 0.01  # level 0 is the product up to σ₀² = 2.5e-4 of noise
    assert hmc.acceptance is not None and 0.9 < float(hmc.acceptance.nanmean()) <= 1.0
    assert hmc.rejected_nonfinite == 0


def _tiny_unet_denoiser(classes: int = 3) -> tuple[BitDenoiser, BitCodec]:
    codec = BitCodec(4)  # 2 bits per pixel
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = UNet(unet_config("tiny", data_channels=codec.num_bits, image_size=8, num_classes=classes))
        torch.nn.init.normal_(net.conv_out.weight, std=0.05)
    return BitDenoiser(net).eval(), codec


@pytest.mark.parametrize(
    "kernel",
    [ULA(step_size=1e-3), MALA(step_size=1e-4), UHMC(step_size=0.01), HMC(step_size=0.01), "reverse", "ddim"],
    ids=["ula", "mala", "uhmc", "hmc", "reverse", "ddim"],
)
def test_composed_image_denoisers_sample_with_every_kernel(kernel: object) -> None:
    den, codec = _tiny_unet_denoiser()
    levels = 4
    c0, c1, null = (as_model(den, cond=c, num_levels=levels) for c in (0, 1, None))
    for model in (Product(c0, c1), Negation(c0, c1), CFGConjunction(null, [c0, c1], weight=2.0)):
        g = torch.Generator().manual_seed(0)
        shape = (3, codec.num_bits, 8, 8)
        if kernel == "reverse":
            res = reverse_diffusion(model, shape, generator=g)
        elif kernel == "ddim":
            res = sample_model(model, shape, TimeGrid.uniform(levels), generator=g)
        else:
            res = annealed_mcmc(
                model,
                shape,
                None,
                MCMCOptions(kernel=kernel, steps_per_level=2, final_step=True),
                generator=g,
            )  # type: ignore[arg-type]
            if isinstance(kernel, MALA | HMC):
                assert res.acceptance is not None
                acc = res.acceptance[~torch.isnan(res.acceptance)]
                assert acc.numel() == levels and bool(((acc >= 0) & (acc <= 1)).all())
        assert res.samples.shape == shape and bool(torch.isfinite(res.samples).all())
        assert res.samples.abs().max() <= 1.0  # clipped x0 estimate of the last step
        images = codec.decode_images(res.samples)
        assert images.shape == (3, 1, 8, 8) and int(images.min()) >= 0 and int(images.max()) <= 3
        assert res.nfe > 0


def test_reverse_driver_on_images_runs_mcmc_on_the_noisy_levels_only() -> None:
    den, codec = _tiny_unet_denoiser()
    model = Product(*(as_model(den, cond=c, num_levels=6) for c in (0, 2)))
    res = annealed_mcmc(
        model,
        (2, codec.num_bits, 8, 8),
        None,
        MCMCOptions(kernel=HMC(step_size=0.01), steps_per_level=1, driver="reverse", min_level=0.5),
        generator=torch.Generator().manual_seed(1),
    )
    assert res.acceptance is not None
    assert torch.isnan(res.acceptance[:3]).all() and torch.isfinite(res.acceptance[3:]).all()
    assert res.samples.abs().max() <= 1.0


def test_guidance_in_sample_is_the_cfg_composite() -> None:
    den, codec = _tiny_unet_denoiser()
    labels = torch.tensor([0, 1, 2])
    shape = (3, codec.num_bits, 8, 8)
    via_sample = sample(
        den, shape, steps=5, cond=labels, guidance=0.7, generator=torch.Generator().manual_seed(3)
    ).samples
    cfg = CFGConjunction(as_model(den, cond=None), [as_model(den, cond=labels)], weight=1.7)
    via_model = sample_model(
        cfg, shape, TimeGrid.uniform(5), generator=torch.Generator().manual_seed(3)
    ).samples
    torch.testing.assert_close(via_sample, via_model, rtol=0, atol=1e-6)


def test_self_conditioning_is_sampler_state_in_the_mcmc_drivers() -> None:
    seen: list[Tensor | None] = []

    def fn(x: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: object = None) -> Tensor:
        seen.append(None if self_cond is None else self_cond.clone())
        return 0.5 * x

    model = as_model(fn, num_levels=3, scale=1.0)  # a plain callable is self-conditioned by default
    res = annealed_mcmc(
        model,
        (4, 2),
        None,
        MCMCOptions(kernel=ULA(step_size=1e-3), steps_per_level=2),
        generator=torch.Generator(),
    )
    # per level: one evaluation that refreshes the estimate, then 2 kernel steps that all see that estimate
    assert res.nfe == 3 * (1 + 2) and len(seen) == 9
    assert seen[0] is None  # the first refresh has no previous estimate
    for lvl in range(3):
        refreshed, k1, k2 = seen[3 * lvl : 3 * lvl + 3]
        assert k1 is not None and k2 is not None and torch.equal(k1, k2)
        assert bool((k1.abs() <= 1.0).all())  # clipped to the data range
