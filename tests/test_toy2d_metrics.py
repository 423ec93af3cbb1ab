"""Tests of the 2-D benchmark metrics on cases with exact answers."""

from __future__ import annotations

import math

import pytest
import torch

from bitcompose.toy2d.metrics import SMOOTH_BOX, mmd2, wasserstein2
from bitcompose.toy2d.tasks import TASKS


def test_w2_identical_and_shifted_sets() -> None:
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert wasserstein2(x, x) == pytest.approx(0.0, abs=1e-12)
    perm = torch.randperm(300, generator=torch.Generator().manual_seed(1))
    assert wasserstein2(x, x[perm]) == pytest.approx(0.0, abs=1e-12)
    shift = torch.tensor([0.3, -0.4])
    assert wasserstein2(x, x + shift) == pytest.approx(0.5, abs=1e-6)


def test_w2_rejects_mismatched_sets_and_flags_nonfinite() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        wasserstein2(torch.zeros(3, 2), torch.zeros(4, 2))
    assert wasserstein2(torch.tensor([[math.nan, 0.0], [0.0, 0.0]]), torch.zeros(2, 2)) == math.inf


def test_mmd_same_distribution_near_zero_and_different_positive() -> None:
    g = torch.Generator().manual_seed(2)
    target = TASKS["negation"].target
    a, b = target.sample(1500, g), target.sample(1500, g)
    same = mmd2(a, b)
    assert abs(same) < 2e-3
    other = TASKS["mixture"].target.sample(1500, g)
    assert mmd2(a, other) > 50 * max(abs(same), 1e-4)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(a, b, bandwidth=0.0)


@pytest.mark.parametrize("task", ["product", "mixture", "negation"])
def test_exact_samples_are_in_support_and_reach_the_oracle(task: str) -> None:
    target = TASKS[task].target
    x = target.sample(2000, torch.Generator().manual_seed(3))
    assert target.in_support(x) == 1.0
    oracle = target.oracle_log_likelihood()
    # product: per-sample LL has std ~1 nat, so 2000 samples give a standard error of ~0.022
    tol = 0.08 if task == "product" else 1e-9
    assert target.log_likelihood(x) == pytest.approx(oracle, abs=tol)


def test_oracle_values_closed_form() -> None:
    outer = 0.01 / SMOOTH_BOX.area
    assert TASKS["mixture"].target.oracle_log_likelihood() == pytest.approx(math.log(0.99 / 0.8 + outer))
    assert TASKS["negation"].target.oracle_log_likelihood() == pytest.approx(math.log(0.99 / 1.6 + outer))
    product = TASKS["product"].target
    # Hard-bar product ≈ ½N((0, ±0.5), 0.03² I): E log p = −log 2 − log(2π·0.03²) − 1 = 3.4817.
    hard = -math.log(2) - math.log(2 * math.pi * 0.03**2) - 1
    x = product.sample(20_000, torch.Generator().manual_seed(4))
    assert float(product.exact.log_prob(x).mean()) == pytest.approx(hard, abs=0.03)
    # Smoothed metric: log(0.99/0.8 + outer) − log c shifts every in-bar point by the same constant.
    shift = math.log(0.99 / 0.8 + outer) - product.log_normalizer() + math.log(product.exact.mass)
    assert product.oracle_log_likelihood() == pytest.approx(hard + shift, abs=1e-4)
    assert product.oracle_log_likelihood() == pytest.approx(3.4767, abs=1e-3)


def test_log_likelihood_penalises_off_support_samples() -> None:
    target = TASKS["negation"].target
    inside = target.sample(100, torch.Generator().manual_seed(5))
    hole = torch.zeros(100, 2)  # the centre of the frame is outside the support
    assert target.log_likelihood(hole) == pytest.approx(math.log(0.01 / SMOOTH_BOX.area))
    assert target.log_likelihood(inside) - target.log_likelihood(hole) > 4.0
    assert target.in_support(hole) == 0.0
    far = torch.full((5, 2), 10.0)  # outside [−1.1, 1.1]²: the floor density, not −inf
    assert math.isfinite(target.log_likelihood(far))
    assert target.log_likelihood(torch.tensor([[math.inf, 0.0]])) == -math.inf
