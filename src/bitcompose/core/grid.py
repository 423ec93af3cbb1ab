"""The one time-grid vocabulary of every sampler: :class:`TimeGrid`, and :class:`LevelGrid`, a time grid whose
levels also carry the schedule's ``γ`` and per-step ``β``.

A grid is data passed to a sampler (as k-diffusion passes its sigmas): ``L`` levels, least noisy first, level
``i`` at time ``times[i]``, and the time ``next_times[i]`` the reverse step from level ``i`` lands on.

* The diffusion samplers (DDIM, DDPM, DPM-Solver++(2M)) walk the steps ``(t_now, t_next)`` from the noisiest level
  down (:meth:`TimeGrid.steps`) and read ``γ`` from the model's schedule at those times.
  :meth:`TimeGrid.uniform` is Bit Diffusion's grid (official ``Scheduler.generate``): step ``k = 0 … T−1`` from
  ``t_now = 1 − k/T`` to ``t_next = max(1 − (k + 1 + td)/T, 0)``; ``td > 0`` are the paper's asymmetric time
  intervals (in units of steps): the model is queried at ``t_now`` and the sampler jumps further down.
* The annealed drivers (reverse diffusion, annealed MCMC) walk the levels of a :class:`LevelGrid`
  (``schedule.grid(L)``, ``model.grid()``): per level its time, ``γ`` and ``β_i = 1 − γ_i/γ_{i−1}``
  (``γ_{−1} = 1``, the data) of the ancestral step to the level below, which is where that step lands.
* "MCMC at the noisier part of the grid" is one unit everywhere: a fraction ``f ∈ [0, 1]`` of the grid, the
  levels with index ``≥ ⌊f·L⌋`` (:meth:`TimeGrid.level_index`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from bitcompose.core.schedules import Schedule

__all__ = ["Level", "LevelGrid", "TimeGrid"]

#: Slack of :meth:`TimeGrid.level_index` for fractions written in decimals (0.29·100 = 28.999999999999996).
_FRACTION_SLACK = 1e-9


def _level_below(times: Tensor) -> Tensor:
    """``[0, t_0, …, t_{L−2}]``: where each level's reverse step lands on a plain grid."""
    return torch.cat([times.new_zeros(1), times[:-1]])


class TimeGrid:
    """The path of a sampler: ``L`` levels, least noisy first, and where the reverse step from each lands.

    Args:
        times: float ``[L]``, strictly increasing, in ``(0, 1]``.
        next_times: float ``[L]`` with ``0 <= next_times[i] < times[i]`` (default: the level below, 0 below
            level 0).
        td: the asymmetric time difference the next times were made with, in steps (recorded; 0: a plain grid).
    """

    def __init__(self, times: Tensor, next_times: Tensor | None = None, *, td: float = 0.0) -> None:
        self.times = torch.as_tensor(times, dtype=torch.float64)
        n = self.times.numel()
        if n < 1 or self.times.shape != (n,):
            raise ValueError(
                f"a time grid needs times of shape [L] with L >= 1, got {tuple(self.times.shape)}"
            )
        t = self.times
        if not bool(torch.isfinite(t).all() & (t > 0).all() & (t <= 1).all() & (t[1:] > t[:-1]).all()):
            raise ValueError("grid times must increase strictly and lie in (0, 1]")
        nxt = _level_below(t) if next_times is None else torch.as_tensor(next_times, dtype=torch.float64)
        if nxt.shape != (n,) or not bool(((nxt >= 0) & (nxt < t)).all()):
            raise ValueError("next_times must have the shape of times, with 0 <= next_times[i] < times[i]")
        if not (td >= 0 and math.isfinite(td)):
            raise ValueError(f"td must be finite and >= 0 (in units of steps), got {td}")
        self.next_times = nxt
        self.td = float(td)

    @classmethod
    def uniform(cls, steps: int, td: float = 0.0) -> TimeGrid:
        """Bit Diffusion's ``steps`` steps ``t_now = 1 − k/T → t_next = max(1 − (k + 1 + td)/T, 0)``.

        Args:
            steps: number of sampling steps T (>= 1).
            td: asymmetric time difference in units of steps (>= 0; paper: 0 – 0.5 for images, ≈ 7 for captions).
        """
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if not (td >= 0 and math.isfinite(td)):
            raise ValueError(f"td must be finite and >= 0 (in units of steps), got {td}")
        ks = range(steps - 1, -1, -1)  # least noisy level first
        times = [1.0 - k / steps for k in ks]
        next_times = [max(1.0 - (k + 1 + td) / steps, 0.0) for k in ks]
        return cls(
            torch.tensor(times, dtype=torch.float64), torch.tensor(next_times, dtype=torch.float64), td=td
        )

    def __len__(self) -> int:
        return int(self.times.numel())

    def steps(self) -> list[tuple[float, float]]:
        """The steps ``(t_now, t_next)``, noisiest first: what the diffusion samplers walk."""
        return [(float(self.times[i]), float(self.next_times[i])) for i in range(len(self) - 1, -1, -1)]

    def level_index(self, fraction: float) -> int:
        """The lowest level index ``⌊f·L⌋`` of the fraction ``f ∈ [0, 1]`` of the grid: ``f = 0`` is every level,
        ``f = 0.5`` the noisier half, ``f = 1`` none (index ``L``)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"a fraction of the grid must lie in [0, 1], got {fraction}")
        return min(math.floor(fraction * len(self) + _FRACTION_SLACK), len(self))

    def levels(self, schedule: Schedule) -> LevelGrid:
        """This grid's times as the levels of ``schedule`` (``γ`` there, ``β`` from consecutive ``γ``), for the
        annealed drivers, which step from each level to the one below (so the grid must have no ``td``)."""
        if not torch.equal(self.next_times, _level_below(self.times)):
            raise ValueError(
                "reverse diffusion and annealed MCMC step from each level to the one below: a grid with td > 0 "
                "(asymmetric time intervals) is for the diffusion samplers"
            )
        return LevelGrid.from_gammas(self.times, schedule.gamma(self.times))

    def __repr__(self) -> str:
        td = f", td={self.td:g}" if self.td else ""
        return f"{type(self).__name__}(L={len(self)}, t={float(self.times[0]):.4g}..{float(self.times[-1]):.4g}{td})"


@dataclass(frozen=True)
class Level:
    """One level of a :class:`LevelGrid`.

    Attributes:
        index: position on the grid (0 = least noisy).
        t: its time in [0, 1].
        gamma: signal variance γ (ᾱ) at ``t``.
        beta: per-step β of the ancestral step from this level to the one below (to the data for index 0).
    """

    index: int
    t: float
    gamma: float
    beta: float

    @property
    def alpha(self) -> float:
        """√γ."""
        return math.sqrt(self.gamma)

    @property
    def sigma(self) -> float:
        """√(1 − γ)."""
        return math.sqrt(max(1.0 - self.gamma, 0.0))


class LevelGrid(TimeGrid):
    """The levels of an annealing path, least noisy first: a :class:`TimeGrid` (each reverse step lands on the
    level below) whose levels carry ``γ`` and ``β`` of a schedule.

    Args:
        times: float ``[L]`` increasing times in (0, 1].
        gammas: ``[L]`` γ at those times (decreasing).
        betas: ``[L]`` per-step β of each level (``β_0 = 1 − γ_0``, ``β_i = 1 − γ_i/γ_{i−1}``).
    """

    def __init__(self, times: Tensor, gammas: Tensor, betas: Tensor) -> None:
        super().__init__(times)
        self.gammas = torch.as_tensor(gammas, dtype=torch.float64)
        self.betas = torch.as_tensor(betas, dtype=torch.float64)
        n = self.times.numel()
        if self.gammas.shape != (n,) or self.betas.shape != (n,):
            raise ValueError("a LevelGrid needs times, gammas and betas of one shape [L] with L >= 1")
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError("LevelGrid betas must lie in (0, 1)")

    @classmethod
    def from_gammas(cls, times: Tensor, gammas: Tensor) -> LevelGrid:
        """A grid from its times and γ's, with ``β_i = 1 − γ_i/γ_{i−1}`` (``γ_{−1} = 1``)."""
        g = torch.as_tensor(gammas, dtype=torch.float64)
        prev = torch.cat([g.new_ones(1), g[:-1]])
        betas = (1.0 - g / prev).clamp(1e-12, 1.0 - 1e-12)
        return cls(times, g, betas)

    def levels(self, schedule: Schedule) -> LevelGrid:
        """The grid itself (its levels already carry ``γ`` and ``β``)."""
        return self

    def __getitem__(self, index: int) -> Level:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"level {index} out of range for a grid of {n} levels")
        i = index % n
        return Level(i, float(self.times[i]), float(self.gammas[i]), float(self.betas[i]))

    def __iter__(self) -> Iterator[Level]:
        return (self[i] for i in range(len(self)))

    def descending(self) -> Iterator[Level]:
        """The levels from the noisiest (index L−1) down to index 0."""
        return (self[i] for i in range(len(self) - 1, -1, -1))
