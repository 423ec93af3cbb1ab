"""The one time-grid vocabulary (bitcompose.core.grid): Bit Diffusion's grid with asymmetric time intervals, the
annealing levels of a schedule as a time grid, the grid fraction ``min_level`` and the refusals."""

from __future__ import annotations

import pytest
import torch

from bitcompose import CosineSchedule, DiscreteSchedule, LevelGrid, TimeGrid


def test_uniform_grid_gives_the_official_steps_noisiest_first() -> None:
    grid = TimeGrid.uniform(4)
    assert grid.steps() == [(1.0, 0.75), (0.75, 0.5), (0.5, 0.25), (0.25, 0.0)]
    assert grid.times.tolist() == [0.25, 0.5, 0.75, 1.0] and len(grid) == 4  # least noisy level first
    for steps, td in ((7, 0.0), (10, 2.5), (3, 0.3), (50, 7.0)):
        expected = [(1.0 - k / steps, max(1.0 - (k + 1 + td) / steps, 0.0)) for k in range(steps)]
        assert TimeGrid.uniform(steps, td).steps() == expected  # exactly, not approximately


def test_td_shifts_only_where_the_step_lands() -> None:
    plain, shifted = TimeGrid.uniform(10), TimeGrid.uniform(10, td=2.5)
    assert torch.equal(plain.times, shifted.times) and shifted.td == 2.5
    gaps = [now - nxt for now, nxt in shifted.steps()]
    assert gaps[0] == pytest.approx(0.35) and shifted.steps()[7][1] == 0.0  # 1 + td steps, floored at 0
    assert all(g == pytest.approx(0.1) for g in (now - nxt for now, nxt in plain.steps()))


def test_a_schedules_levels_are_a_time_grid_stepping_onto_the_level_below() -> None:
    for grid in (DiscreteSchedule.cosine(20).grid(), CosineSchedule().grid(8)):
        assert isinstance(grid, TimeGrid) and isinstance(grid, LevelGrid)
        steps = grid.steps()
        assert [now for now, _ in steps] == grid.times.flip(0).tolist()
        assert [nxt for _, nxt in steps] == [*grid.times.flip(0).tolist()[1:], 0.0]
        assert grid.levels(CosineSchedule()) is grid  # its levels already carry γ and β


def test_a_plain_grid_becomes_the_levels_of_a_schedule() -> None:
    sched = CosineSchedule()
    levels = TimeGrid(torch.tensor([0.2, 0.5, 1.0])).levels(sched)
    gammas = sched.gamma(torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(levels.gammas, gammas)
    torch.testing.assert_close(levels.betas[1:], 1 - gammas[1:] / gammas[:-1])  # β_i = 1 − γ_i/γ_{i−1}
    torch.testing.assert_close(levels.betas[0], 1 - gammas[0])
    with pytest.raises(ValueError, match="td > 0"):
        TimeGrid.uniform(5, td=1.0).levels(sched)


def test_min_level_is_a_fraction_of_the_grid() -> None:
    assert TimeGrid.uniform(100).level_index(0.5) == 50  # the noisier half of 100 levels
    assert (
        TimeGrid.uniform(20).level_index(0.5) == 10
    )  # and of 20 (objects read 50 as an index: right on 100 levels only)
    assert TimeGrid.uniform(100).level_index(0.29) == 29  # 0.29·100 = 28.999999999999996 in floats
    assert TimeGrid.uniform(30).level_index(0.25) == 7  # ⌊7.5⌋
    assert TimeGrid.uniform(7).level_index(0.0) == 0 and TimeGrid.uniform(7).level_index(1.0) == 7
    # the same levels as the hundredths the guidance experiment converted, m·L // 100, on every grid
    for n in (1, 7, 20, 30, 99, 100, 101, 300):
        grid = TimeGrid.uniform(n)
        assert [grid.level_index(m / 100) for m in range(101)] == [m * n // 100 for m in range(101)]
    for bad in (-0.1, 1.5, 50):
        with pytest.raises(ValueError, match="fraction of the grid"):
            TimeGrid.uniform(10).level_index(bad)


def test_bad_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TimeGrid.uniform(0)
    with pytest.raises(ValueError, match="td must be finite"):
        TimeGrid.uniform(10, td=-1.0)
    with pytest.raises(ValueError, match="increase strictly"):
        TimeGrid(torch.tensor([0.5, 0.5, 1.0]))
    with pytest.raises(ValueError, match="increase strictly"):
        TimeGrid(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="next_times"):
        TimeGrid(torch.tensor([0.5, 1.0]), torch.tensor([0.0, 1.0]))
