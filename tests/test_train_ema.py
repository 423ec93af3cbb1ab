from __future__ import annotations

import pytest
import torch
from torch import nn

from bitcompose.training.ema import EMA


def _model() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_bad_decay(decay: float) -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(_model(), decay)


def test_initial_copy_and_closed_form_update() -> None:
    m = _model()
    ema = EMA(m, 0.9)
    w0 = m[0].weight.detach().clone()
    assert torch.equal(ema.module[0].weight, w0)
    assert ema.module[0].weight.dtype == torch.float32
    assert not ema.module[0].weight.requires_grad
    # Two updates towards constant new weights w1: shadow = w1 + 0.9^2 (w0 - w1).
    with torch.no_grad():
        m[0].weight.add_(1.0)
    w1 = m[0].weight.detach().clone()
    ema.update(m)
    ema.update(m)
    torch.testing.assert_close(ema.module[0].weight, w1 + 0.81 * (w0 - w1))
    # Integer buffers are copied, not averaged.
    m[1].num_batches_tracked.fill_(7)
    ema.update(m)
    assert int(ema.module[1].num_batches_tracked) == 7


def test_decay_zero_tracks_weights_and_copy_to() -> None:
    m = _model()
    ema = EMA(m, 0.0)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0)
    ema.update(m)
    other = _model()
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    ema.copy_to(other)
    for a, b in zip(m.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_round_trip_and_mismatch() -> None:
    m = _model()
    ema = EMA(m, 0.99)
    with torch.no_grad():
        m[0].weight.add_(2.0)
    ema.update(m)
    state = ema.state_dict()
    fresh = EMA(_model(), 0.99)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k])
    bad = dict(state)
    bad["0.weight"] = torch.zeros(5, 5)
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state_dict(bad)
