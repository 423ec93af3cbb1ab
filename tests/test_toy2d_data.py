"""Tests of the 2-D toy distributions: exact densities integrate to one and match their samplers."""

from __future__ import annotations

import math

import pytest
import torch

from bitcompose.data.toy2d import (
    GaussianRing,
    Rect,
    RestrictedGMM,
    UniformRects,
    bar,
    frame,
    left_bar,
    right_bar,
    toy_box,
    toy_gmm,
)


def _grid(lo: float, hi: float, m: int) -> tuple[torch.Tensor, float]:
    c = lo + (torch.arange(m, dtype=torch.float64) + 0.5) * (hi - lo) / m
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), ((hi - lo) / m) ** 2


@pytest.mark.parametrize("std", [0.03, 0.075])
def test_ring_density_integrates_to_one(std: float) -> None:
    pts, cell = _grid(-1.0, 1.0, 800)
    total = float(toy_gmm(std=std).log_prob(pts).exp().sum() * cell)
    assert total == pytest.approx(1.0, abs=1e-6)


def test_ring_samples_match_components() -> None:
    ring = toy_gmm(8, std=0.075, radius=0.5)
    x = ring.sample(40_000, torch.Generator().manual_seed(0)).double()
    assert x.shape == (40_000, 2)
    # nearest mean = generating component (means are 0.38 apart, 5 std): per-component count ~ 1/8, spread = std
    d = torch.cdist(x, ring.means)
    k = d.argmin(1)
    counts = torch.bincount(k, minlength=8).double() / x.shape[0]
    assert torch.allclose(counts, torch.full((8,), 1 / 8, dtype=torch.float64), atol=0.01)
    resid = x - ring.means[k]
    assert float(resid.std()) == pytest.approx(0.075, rel=0.03)
    assert float(resid.mean(0).abs().max()) < 0.003


def test_ring_mass_matches_monte_carlo() -> None:
    ring = toy_gmm(8, std=0.075)
    rect = Rect(0.2, 0.6, -0.1, 0.3)
    x = ring.sample(100_000, torch.Generator().manual_seed(1))
    mc = float(rect.contains(x).double().mean())
    assert ring.mass(rect) == pytest.approx(mc, abs=4e-3)
    assert ring.mass(Rect(-5, 5, -5, 5)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("dist", "area"),
    [(bar(0.2), 0.8), (left_bar(), 0.4), (right_bar(), 0.4), (toy_box(0.7), 1.96), (frame(0.7, 0.3), 1.6)],
)
def test_uniform_density_and_samples(dist: UniformRects, area: float) -> None:
    assert dist.area == pytest.approx(area)
    x = dist.sample(5000, torch.Generator().manual_seed(2))
    assert bool(dist.contains(x).all())
    lp = dist.log_prob(x)
    assert torch.allclose(lp, torch.full_like(lp, -math.log(area)))
    pts, cell = _grid(-1.2, 1.2, 480)
    assert float(dist.log_prob(pts).exp().sum() * cell) == pytest.approx(1.0, abs=0.02)
    assert float(dist.log_prob(torch.tensor([[1.15, 1.15]]))[0]) == -math.inf


def test_bars_positions_and_frame_hole() -> None:
    for got, want in (
        (left_bar().rects[0], (-0.3, -0.1, -1.0, 1.0)),
        (right_bar().rects[0], (0.1, 0.3, -1.0, 1.0)),
    ):
        assert (got.x0, got.x1, got.y0, got.y1) == pytest.approx(want)
    x = frame(0.7, 0.3).sample(20_000, torch.Generator().manual_seed(3))
    assert not bool(toy_box(0.29).contains(x).any())
    # area-proportional: the top strip holds 0.56 / 1.6 of the mass
    top = float((x[:, 1] > 0.3).double().mean())
    assert top == pytest.approx(0.56 / 1.6, abs=0.012)


def test_restricted_gmm_is_the_product_target() -> None:
    ring, region = toy_gmm(std=0.03), bar(0.2).rects[0]
    target = RestrictedGMM(ring, region)
    assert target.mass == pytest.approx(0.25, abs=1e-6)  # two of eight components sit inside the bar
    x = target.sample(4000, torch.Generator().manual_seed(4))
    assert x.shape == (4000, 2) and bool(target.contains(x).all())
    assert float(x[:, 0].abs().mean()) < 0.05 and float(x[:, 1].abs().mean()) == pytest.approx(0.5, abs=0.01)
    c = torch.linspace(-0.2, 0.2, 401, dtype=torch.float64)[:-1] + 0.0005
    r = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float64)[:-1] + 0.0005
    yy, xx = torch.meshgrid(r, c, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    assert float(target.log_prob(pts).exp().sum() * 1e-6) == pytest.approx(1.0, abs=1e-4)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        UniformRects((Rect(0, 1, 0, 1), Rect(0.5, 2, 0.5, 2)))
    with pytest.raises(ValueError, match="empty"):
        Rect(1, 0, 0, 1)
    with pytest.raises(ValueError, match="GaussianRing"):
        GaussianRing(std=0.0)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        bar().log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="inner < outer"):
        frame(0.3, 0.7)
