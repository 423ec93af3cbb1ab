"""Noise schedules in continuous time, and the grids of levels that annealed samplers walk.

Every schedule maps a time ``t ∈ [0, 1]`` (0 = data, 1 = noise) to the signal variance ``γ(t)`` (ᾱ) of the
forward process ``x_t = √γ(t)·x0 + √(1 − γ(t))·ε``, and derives ``alpha = √γ``, ``sigma = √(1 − γ)`` and
``log_snr = log(γ/(1 − γ))`` from it.

* :class:`CosineSchedule` is Bit Diffusion's ``γ(t) = cos²(((t + ns)/(1 + ds))·π/2)`` (official
  ``cosine_schedule_simple``, ``ns = 2e-4``, ``ds = 2.5e-4``).
* :class:`DiscreteSchedule` is a T-step DDPM β schedule; level ``i ∈ {0, …, T−1}`` (with
  ``ᾱ_i = Π_{j≤i}(1 − β_j)``) sits at time ``t_i = (i + 1)/T``, and a time between levels is rounded to the
  nearest level (EDM's ``round_sigma``), so a model trained on T levels can be queried at any ``t``.

``schedule.grid(L)`` is the :class:`~bitcompose.core.grid.LevelGrid` an annealed sampler walks (per level its
time, ``γ`` and the per-step ``β_i = 1 − γ_i/γ_{i−1}``, ``γ_{−1} = 1`` the data, of the ancestral step); the time
grids themselves are defined in :mod:`bitcompose.core.grid`.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from bitcompose.core.grid import Level, LevelGrid

__all__ = ["Schedule", "CosineSchedule", "DiscreteSchedule", "Level", "LevelGrid"]


def _times(t: Tensor | float, check_range: bool = False) -> Tensor:
    """``t`` as a float tensor; integer input is refused (levels are not times), the range checked on request
    (a host sync: the continuous schedule, called on accelerators inside the network, does not ask)."""
    tt = torch.as_tensor(t)
    if not tt.is_floating_point():
        raise ValueError(
            f"schedules take float times t in [0, 1], got dtype {tt.dtype} "
            "(for level i of a DiscreteSchedule use schedule.times[i] or schedule.alphas_cumprod[i])"
        )
    if check_range and tt.numel() and bool(((tt < -1e-6) | (tt > 1 + 1e-6)).any()):
        raise ValueError(f"times must lie in [0, 1], got values in [{float(tt.min())}, {float(tt.max())}]")
    return tt


@runtime_checkable
class Schedule(Protocol):
    """What every schedule provides (all take float times ``t`` of any shape and return the same shape)."""

    def gamma(self, t: Tensor | float) -> Tensor: ...

    def alpha(self, t: Tensor | float) -> Tensor: ...

    def sigma(self, t: Tensor | float) -> Tensor: ...

    def grid(self, num_levels: int | None = None) -> LevelGrid: ...


class _Derived:
    """``alpha``, ``sigma`` and ``log_snr`` from ``gamma``."""

    def gamma(self, t: Tensor | float) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def alpha(self, t: Tensor | float) -> Tensor:
        """Signal scale √γ(t), same shape as ``t``."""
        return self.gamma(t).sqrt()

    def sigma(self, t: Tensor | float) -> Tensor:
        """Noise scale √(1 − γ(t)), same shape as ``t``."""
        return (1.0 - self.gamma(t)).clamp_min(0.0).sqrt()

    def log_snr(self, t: Tensor | float) -> Tensor:
        """log(γ/(1 − γ)), same shape as ``t``."""
        g = self.gamma(t)
        return torch.log(g) - torch.log1p(-g)


class CosineSchedule(_Derived):
    """The paper's continuous cosine schedule ``γ(t) = cos²(((t + ns)/(1 + ds))·π/2)``.

    Args:
        ns: time shift (official value 2e-4), keeps γ(0) just below 1.
        ds: time scale (official value 2.5e-4), keeps γ(1) just above 0 so 1/√γ stays finite.
    """

    def __init__(self, ns: float = 2e-4, ds: float = 2.5e-4) -> None:
        if not (0 <= ns < 1 and ds > ns - 1e-12):
            raise ValueError(f"CosineSchedule needs 0 <= ns < 1 and ds >= ns, got ns={ns}, ds={ds}")
        self.ns = ns
        self.ds = ds

    def _angle(self, t: Tensor | float) -> Tensor:
        return (_times(t) + self.ns) / (1.0 + self.ds) * (math.pi / 2)

    def gamma(self, t: Tensor | float) -> Tensor:
        """Signal variance γ(t). ``t``: float tensor of any shape in [0, 1]; returns the same shape."""
        return torch.cos(self._angle(t)) ** 2

    def log_snr(self, t: Tensor | float) -> Tensor:
        """log(γ/(1 − γ)) = −2·log tan(angle), same shape as ``t``."""
        return -2.0 * torch.log(torch.tan(self._angle(t)))

    def rate(self, t: Tensor | float) -> Tensor:
        """Instantaneous noise rate −d log γ/dt = π·tan(angle)/(1 + ds), same shape as ``t`` (not a per-step β)."""
        return math.pi * torch.tan(self._angle(t)) / (1.0 + self.ds)

    def grid(self, num_levels: int | None = None) -> LevelGrid:
        """``num_levels`` (default 100) equally spaced levels at ``t_i = (i + 1)/L``."""
        n = 100 if num_levels is None else num_levels
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"num_levels must be a positive integer, got {num_levels!r}")
        times = torch.arange(1, n + 1, dtype=torch.float64) / n
        return LevelGrid.from_gammas(times, self.gamma(times))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CosineSchedule) and (self.ns, self.ds) == (other.ns, other.ds)

    def __hash__(self) -> int:
        return hash((self.ns, self.ds))

    def __repr__(self) -> str:
        return f"CosineSchedule(ns={self.ns}, ds={self.ds})"


class DiscreteSchedule(_Derived):
    """A T-step DDPM schedule given by its β's; level ``i`` sits at time ``(i + 1)/T``.

    Args:
        betas: float tensor ``[T]`` with values in (0, 1).

    Attributes:
        betas: ``[T]`` per-step β; alphas_cumprod (ᾱ): ``[T]``; times: ``[T]`` the levels' times; num_steps: T.
    """

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.num_steps = int(betas.numel())
        self.times = torch.arange(1, self.num_steps + 1, dtype=torch.float64) / self.num_steps

    @classmethod
    def linear(cls, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
        """Ho et al. (2020) linear schedule, rescaled so that ``num_steps`` steps span the same noise range
        as 1000 steps would (β_start·1000/T to β_end·1000/T)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        scale = 1000.0 / num_steps
        return cls(torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> DiscreteSchedule:
        """Nichol & Dhariwal (2021) cosine schedule: ᾱ(u) = f(u)/f(0), f(u) = cos²((u + s)/(1 + s)·π/2),
        β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), max_beta)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(betas)

    def level(self, t: Tensor | float) -> Tensor:
        """The nearest level ``round(t·T) − 1`` (clamped to ``0 … T−1``) of times ``t``; LongTensor, same shape."""
        tt = _times(t, check_range=True)
        return (torch.round(tt.double() * self.num_steps) - 1).clamp(0, self.num_steps - 1).long()

    def gamma(self, t: Tensor | float) -> Tensor:
        """ᾱ of the level nearest to ``t`` (float64, same shape as ``t``, on the CPU)."""
        return self.alphas_cumprod[self.level(t).cpu()]

    def grid(self, num_levels: int | None = None) -> LevelGrid:
        """The schedule's own T levels (``num_levels`` must be ``None`` or T)."""
        if num_levels is not None and num_levels != self.num_steps:
            raise ValueError(
                f"a DiscreteSchedule has exactly {self.num_steps} levels, got num_levels={num_levels}"
            )
        return LevelGrid(self.times, self.alphas_cumprod, self.betas)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DiscreteSchedule) and (
            self is other or (self.num_steps == other.num_steps and torch.equal(self.betas, other.betas))
        )

    def __hash__(self) -> int:
        return hash((self.num_steps, float(self.betas.sum())))

    def __repr__(self) -> str:
        return f"DiscreteSchedule(num_steps={self.num_steps})"
