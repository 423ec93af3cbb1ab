"""MCMC kernels for one level of an annealed diffusion path: ULA, MALA, U-HMC, HMC (Du et al. 2023, §2.5).

A kernel is a small frozen dataclass with ``step(model, x, level, state, *, generator) -> (x_new, state, info)``:

* ``model`` is a :class:`~bitcompose.core.model.DiffusionModel` (or composite); the kernel targets
  ``q̃_t ∝ exp(−model.energy(·, t))`` (score ``s = ∇ log q̃_t``) at the level's time ``t = level.t``.
* ``level`` is a :class:`~bitcompose.core.schedules.Level` of the model's grid (its ``β`` scales step sizes given
  as :class:`StepSize`); ``x`` is ``[B, *dims]``; every draw comes from ``generator``.
* ``state`` (:class:`KernelState`) carries the momentum (U-HMC/HMC) and a cache of energy/score at the current
  ``x`` (valid only for the same tensor object and level: never modify ``x`` in place between steps).
* ``info`` (:class:`KernelInfo`) holds the per-sample acceptance mask (``None`` without Metropolis), the number of
  model evaluations (NFE: calls of the (composite) model's ``score`` / ``energy_and_score`` on the batch) and the
  number of proposals rejected because their position, energy or score was not finite (such proposals are always
  rejected, never propagated).

Metropolis corrections need ``log q̃(x') − log q̃(x)``: ``energy_diff="exact"`` uses energies, ``"trapezoid"``
the line integral ``∫₀¹ s(x + τ(x'−x))·(x'−x) dτ`` with ``n_points`` trapezoid nodes (Sjöberg et al. 2023;
``n_points=2`` reuses the endpoint scores: no extra NFE), ``"path"`` (HMC only) the trapezoid rule along the
leapfrog path with the scores the integrator already computed, and ``"auto"`` picks ``exact`` when the model has
an energy and ``trapezoid`` otherwise. All updates are out of place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import Tensor

from bitcompose.core.model import DiffusionModel
from bitcompose.core.schedules import Level, LevelGrid
from bitcompose.core.tensors import all_finite as _finite
from bitcompose.core.tensors import batch_where as _where
from bitcompose.core.tensors import randn_like_from as _randn
from bitcompose.core.tensors import sum_except_batch as _sumb

__all__ = [
    "StepSize",
    "StepSizeLike",
    "resolve_step_size",
    "KernelState",
    "KernelInfo",
    "Kernel",
    "ULA",
    "MALA",
    "UHMC",
    "HMC",
    "KERNELS",
    "make_kernel",
    "noise_scaled_kernel",
]


@dataclass(frozen=True)
class StepSize:
    """A per-level size ``scale·β^power`` with the level's per-step ``β`` (``power=0``: the constant ``scale``).

    Examples: ``StepSize(1e-3)`` (a constant), ``StepSize(0.035, 1.0)`` (proportional to β).
    """

    scale: float
    power: float = 0.0

    def __call__(self, level: Level) -> float:
        if self.power == 0.0:
            return float(self.scale)
        return float(self.scale * level.beta**self.power)


StepSizeLike = float | StepSize | Callable[[int], float]


def resolve_step_size(spec: StepSizeLike, level: Level, what: str = "step size") -> float:
    """The size at ``level``: a float (constant), a :class:`StepSize`, or a callable ``level index -> float``."""
    if isinstance(spec, StepSize):
        v = spec(level)
    elif isinstance(spec, int | float):
        v = float(spec)
    elif callable(spec):
        v = float(spec(level.index))
    else:
        raise ValueError(
            f"{what} must be a float, a StepSize or a callable level index -> float, got {type(spec).__name__}"
        )
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{what} must be finite and > 0, got {v} at level {level.index}")
    return v


@dataclass(frozen=True)
class KernelState:
    """What a kernel carries between steps. ``x``/``t`` identify the point the cache belongs to."""

    momentum: Tensor | None = None
    x: Tensor | None = None
    t: float | None = None
    energy: Tensor | None = None
    score: Tensor | None = None


@dataclass(frozen=True)
class KernelInfo:
    """Diagnostics of one kernel step.

    Attributes:
        accepted: bool ``[B]`` (Metropolis kernels) or ``None``.
        nfe: model evaluations used by the step.
        rejected_nonfinite: proposals rejected because they were not finite.
        log_accept: float ``[B]`` log acceptance ratio ``log α`` (before ``min(0, ·)``; −inf for non-finite
            proposals), or ``None`` without Metropolis.
    """

    accepted: Tensor | None
    nfe: int
    rejected_nonfinite: int
    log_accept: Tensor | None = None

    @property
    def acceptance_rate(self) -> float:
        """Fraction of accepted proposals (NaN without Metropolis)."""
        return float("nan") if self.accepted is None else float(self.accepted.double().mean())


class Kernel(Protocol):
    """The kernel interface used by the annealed drivers."""

    metropolis: bool

    def step(
        self,
        model: DiffusionModel,
        x: Tensor,
        level: Level,
        state: KernelState,
        *,
        generator: torch.Generator,
    ) -> tuple[Tensor, KernelState, KernelInfo]: ...


# ---------------------------------------------------------------------------------------------------- helpers


def _rand(n: int, x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _resolve_diff(mode: str, model: DiffusionModel, kernel: str, allow_path: bool = False) -> str:
    allowed = ("auto", "exact", "trapezoid", "path") if allow_path else ("auto", "exact", "trapezoid")
    if mode not in allowed:
        raise ValueError(f"{kernel}: energy_diff must be one of {allowed}, got {mode!r}")
    if mode == "auto":
        return "exact" if model.has_energy else "trapezoid"
    if mode == "exact" and not model.has_energy:
        raise ValueError(
            f"{kernel}: energy_diff='exact' needs a model with an energy ({type(model).__name__} has none)"
        )
    return mode


def _current(
    model: DiffusionModel, x: Tensor, t: float, state: KernelState, need_energy: bool
) -> tuple[Tensor | None, Tensor, int]:
    """(energy or None, score, nfe) at ``x``, reusing the state's cache when it belongs to ``x`` and ``t``."""
    if (
        state.x is x
        and state.t == t
        and state.score is not None
        and (state.energy is not None or not need_energy)
    ):
        return state.energy, state.score, 0
    if need_energy:
        e, s = model.energy_and_score(x, t)
        return e, s, 1
    return None, model.score(x, t), 1


def _evaluate(model: DiffusionModel, x: Tensor, t: float, need_energy: bool) -> tuple[Tensor | None, Tensor]:
    if need_energy:
        return model.energy_and_score(x, t)
    return None, model.score(x, t)


def _trapezoid(
    model: DiffusionModel, x0: Tensor, x1: Tensor, s0: Tensor, s1: Tensor, t: float, n_points: int
) -> tuple[Tensor, int]:
    """Trapezoid estimate of ``log q(x1) − log q(x0) = ∫₀¹ s(x0 + τd)·d dτ``, ``d = x1 − x0``; ([B], extra NFE)."""
    d = x1 - x0
    vals = [_sumb(s0 * d)]
    for k in range(1, n_points - 1):
        tau = k / (n_points - 1)
        vals.append(_sumb(model.score(x0 + tau * d, t) * d))
    vals.append(_sumb(s1 * d))
    h = 1.0 / (n_points - 1)
    total = 0.5 * (vals[0] + vals[-1]) + sum(vals[1:-1], torch.zeros_like(vals[0]))
    return h * total, n_points - 2


def _metropolis(
    log_alpha: Tensor, ok: Tensor, x: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(accept mask, cleaned log α), per sample: accept iff ``log u < log α``; non-finite proposals (``~ok``)
    get log α = −inf; a finite proposal from a current point whose energy is not finite (log α NaN) gets +inf."""
    log_alpha = torch.where(torch.isnan(log_alpha) & ok, torch.full_like(log_alpha, math.inf), log_alpha)
    log_alpha = torch.where(ok, log_alpha, torch.full_like(log_alpha, -math.inf))
    u = _rand(x.shape[0], x, generator)
    return ok & (torch.log(u) < log_alpha), log_alpha


# ---------------------------------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class ULA:
    """Unadjusted Langevin: ``x ← x + η s(x) + √(2η) ξ`` (score only; 1 NFE per step).

    A sample whose score is not finite keeps its position (counted in ``rejected_nonfinite``).
    """

    step_size: StepSizeLike = 1e-3
    metropolis = False

    def step(
        self,
        model: DiffusionModel,
        x: Tensor,
        level: Level,
        state: KernelState,
        *,
        generator: torch.Generator,
    ) -> tuple[Tensor, KernelState, KernelInfo]:
        t = level.t
        eta = resolve_step_size(self.step_size, level)
        s = model.score(x, t)
        prop = x + eta * s + math.sqrt(2 * eta) * _randn(x, generator)
        ok = _finite(prop)
        x_new = _where(ok, prop, x)
        return x_new, replace(state, x=None, energy=None, score=None), KernelInfo(None, 1, int((~ok).sum()))


@dataclass(frozen=True)
class MALA:
    """Metropolis-adjusted Langevin with per-sample accept.

    Proposal ``x' = x + η s(x) + √(2η) ξ``, i.e. ``N(x'; x + η s(x), 2η I)``; log acceptance
    ``log q̃(x') − log q̃(x) − ‖x − x' − η s(x')‖²/(4η) + ‖x' − x − η s(x)‖²/(4η)``, decided per sample.

    Args:
        step_size: η (float, :class:`StepSize` or callable level index -> η).
        energy_diff: ``"auto"``, ``"exact"`` or ``"trapezoid"``.
        n_points: trapezoid nodes (≥ 2; ``n − 2`` extra NFE).
    """

    step_size: StepSizeLike = 1e-3
    energy_diff: str = "auto"
    n_points: int = 2
    metropolis = True

    def step(
        self,
        model: DiffusionModel,
        x: Tensor,
        level: Level,
        state: KernelState,
        *,
        generator: torch.Generator,
    ) -> tuple[Tensor, KernelState, KernelInfo]:
        t = level.t
        if self.n_points < 2:
            raise ValueError(f"MALA n_points must be >= 2, got {self.n_points}")
        mode = _resolve_diff(self.energy_diff, model, "MALA")
        exact = mode == "exact"
        eta = resolve_step_size(self.step_size, level)
        e0, s0, nfe = _current(model, x, t, state, exact)
        prop = x + eta * s0 + math.sqrt(2 * eta) * _randn(x, generator)
        e1, s1 = _evaluate(model, prop, t, exact)
        nfe += 1
        if exact:
            assert e0 is not None and e1 is not None
            dlogq = e0 - e1
        else:
            dlogq, extra = _trapezoid(model, x, prop, s0, s1, t, self.n_points)
            nfe += extra
        fwd = _sumb((prop - x - eta * s0) ** 2) / (4 * eta)
        bwd = _sumb((x - prop - eta * s1) ** 2) / (4 * eta)
        log_alpha = dlogq - bwd + fwd
        # only the proposal's own quantities decide: a non-finite *current* energy must not trap the chain
        ok = _finite(prop) & _finite(s1) & (torch.isfinite(e1) if e1 is not None else torch.isfinite(dlogq))
        acc, log_alpha = _metropolis(log_alpha, ok, x, generator)
        x_new = _where(acc, prop, x)
        s_new = _where(acc, s1, s0)
        e_new = None if e0 is None or e1 is None else torch.where(acc, e1, e0)
        new_state = replace(state, x=x_new, t=t, energy=e_new, score=s_new)
        return x_new, new_state, KernelInfo(acc, nfe, int((~ok).sum()), log_alpha)


def _leapfrog(
    model: DiffusionModel,
    x: Tensor,
    v: Tensor,
    s: Tensor,
    t: float,
    eps: float,
    mass: float,
    n_steps: int,
    energy: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, int]:
    """``n_steps`` leapfrog steps of ``v += (ε/2)s; x += εv/M; v += (ε/2)s`` (out of place).

    Returns (x, v, energy at the end or None, score at the end, path trapezoid of ∫ s·dx [B], nfe).
    """
    path = x.new_zeros(x.shape[0])
    e: Tensor | None = None
    for k in range(n_steps):
        v = v + 0.5 * eps * s
        x_next = x + eps * v / mass
        if k == n_steps - 1 and energy:
            e, s_next = model.energy_and_score(x_next, t)
        else:
            s_next = model.score(x_next, t)
        path = path + 0.5 * _sumb((s + s_next) * (x_next - x))
        x, s = x_next, s_next
        v = v + 0.5 * eps * s
    return x, v, e, s, path, n_steps


@dataclass(frozen=True)
class UHMC:
    """Unadjusted (underdamped) HMC: partial momentum refresh
    ``v' = γv + √(1−γ²)·√M·ξ`` then ``n_leapfrog`` leapfrog steps with mass ``M``; no accept/reject.

    The momentum lives in the state and is carried across levels by the drivers unless told otherwise
    (``carry_momentum``). ``M`` is the momentum variance (``√M = β`` is ``mass=StepSize(1.0, 2.0)``).

    Args:
        step_size: leapfrog ε.
        n_leapfrog: L (3).
        damping: γ in [0, 1].
        mass: M (float, StepSize or callable level index -> M).
    """

    step_size: StepSizeLike = 0.03
    n_leapfrog: int = 3
    damping: float = 0.5
    mass: StepSizeLike = 1.0
    metropolis = False

    def _refresh(self, x: Tensor, state: KernelState, mass: float, generator: torch.Generator) -> Tensor:
        if not 0.0 <= self.damping <= 1.0:
            raise ValueError(f"damping must lie in [0, 1], got {self.damping}")
        if self.n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be >= 1, got {self.n_leapfrog}")
        v = state.momentum
        if v is None or v.shape != x.shape:
            v = math.sqrt(mass) * _randn(x, generator)
        g = self.damping
        return g * v + math.sqrt(1 - g * g) * math.sqrt(mass) * _randn(x, generator)

    def step(
        self,
        model: DiffusionModel,
        x: Tensor,
        level: Level,
        state: KernelState,
        *,
        generator: torch.Generator,
    ) -> tuple[Tensor, KernelState, KernelInfo]:
        t = level.t
        eps = resolve_step_size(self.step_size, level)
        mass = resolve_step_size(self.mass, level, "mass")
        v = self._refresh(x, state, mass, generator)
        _, s0, nfe = _current(model, x, t, state, False)
        x1, v1, _, s1, _, n = _leapfrog(model, x, v, s0, t, eps, mass, self.n_leapfrog, False)
        ok = _finite(x1) & _finite(v1) & _finite(s1)
        x_new = _where(ok, x1, x)
        new_state = replace(
            state, momentum=_where(ok, v1, v), x=x_new, t=t, energy=None, score=_where(ok, s1, s0)
        )
        return x_new, new_state, KernelInfo(None, nfe + n, int((~ok).sum()))


@dataclass(frozen=True)
class HMC(UHMC):
    """Metropolis-adjusted U-HMC (generalised HMC of Horowitz).

    After the refresh ``v'`` and the leapfrog ``(x*, v*)``: accept per sample with
    ``log α = [log q̃(x*) − ½‖v*‖²/M] − [log q̃(x) − ½‖v'‖²/M]``. On reject the momentum is **flipped**
    (``v ← −v'``), which makes the kernel exactly invariant for γ > 0; ``flip_on_reject=False`` keeps ``v'``
    (not invariant; for comparisons with code that does so).

    Args:
        energy_diff: ``"auto"``, ``"exact"``, ``"trapezoid"`` (straight line x → x*, ``n_points`` nodes) or
            ``"path"`` (trapezoid along the leapfrog path, no extra NFE).
        n_points: trapezoid nodes for ``"trapezoid"``.
        flip_on_reject: see above.
    """

    energy_diff: str = "auto"
    n_points: int = 2
    flip_on_reject: bool = True
    metropolis = True

    def step(
        self,
        model: DiffusionModel,
        x: Tensor,
        level: Level,
        state: KernelState,
        *,
        generator: torch.Generator,
    ) -> tuple[Tensor, KernelState, KernelInfo]:
        t = level.t
        if self.n_points < 2:
            raise ValueError(f"HMC n_points must be >= 2, got {self.n_points}")
        mode = _resolve_diff(self.energy_diff, model, "HMC", allow_path=True)
        exact = mode == "exact"
        eps = resolve_step_size(self.step_size, level)
        mass = resolve_step_size(self.mass, level, "mass")
        v = self._refresh(x, state, mass, generator)
        e0, s0, nfe = _current(model, x, t, state, exact)
        x1, v1, e1, s1, path, n = _leapfrog(model, x, v, s0, t, eps, mass, self.n_leapfrog, exact)
        nfe += n
        if exact:
            assert e0 is not None and e1 is not None
            dlogq = e0 - e1
        elif mode == "path":
            dlogq = path
        else:
            dlogq, extra = _trapezoid(model, x, x1, s0, s1, t, self.n_points)
            nfe += extra
        log_alpha = dlogq - 0.5 * _sumb(v1**2) / mass + 0.5 * _sumb(v**2) / mass
        ok = (
            _finite(x1)
            & _finite(v1)
            & _finite(s1)
            & (torch.isfinite(e1) if e1 is not None else torch.isfinite(dlogq))
        )
        acc, log_alpha = _metropolis(log_alpha, ok, x, generator)
        x_new = _where(acc, x1, x)
        v_rej = -v if self.flip_on_reject else v
        e_new = None if e0 is None or e1 is None else torch.where(acc, e1, e0)
        new_state = replace(
            state, momentum=_where(acc, v1, v_rej), x=x_new, t=t, energy=e_new, score=_where(acc, s1, s0)
        )
        return x_new, new_state, KernelInfo(acc, nfe, int((~ok).sum()), log_alpha)


KERNELS: dict[str, type] = {"ula": ULA, "mala": MALA, "uhmc": UHMC, "hmc": HMC}


def noise_scaled_kernel(
    name: str, grid: LevelGrid, step: float, n_leapfrog: int = 3, damping: float = 0.5
) -> Kernel:
    """A kernel whose step follows the noise of each level: leapfrog ``ε = step·σ_t`` (U-HMC, HMC) or Langevin
    ``η = (step·σ_t)²`` (ULA, MALA). The width of a level's density scales like σ_t where the data are sharp
    (analog bits), so a fixed ``step`` gives a similar acceptance at every level."""
    sizes = [step * grid[i].sigma for i in range(len(grid))]
    if name in ("ula", "mala"):
        return make_kernel(name, step_size=lambda i: sizes[i] ** 2)
    if name in ("uhmc", "hmc"):
        return make_kernel(name, step_size=lambda i: sizes[i], n_leapfrog=n_leapfrog, damping=damping)
    raise ValueError(f"unknown MCMC kernel {name!r}; choose from {sorted(KERNELS)}")


def make_kernel(name: str, **options: object) -> Kernel:
    """A kernel by name (``"ula"``, ``"mala"``, ``"uhmc"``, ``"hmc"``; case-insensitive) with dataclass options,
    e.g. ``make_kernel("hmc", step_size=0.03, n_leapfrog=3, damping=0.5, flip_on_reject=False)``."""
    cls = KERNELS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown MCMC kernel {name!r}; choose from {sorted(KERNELS)}")
    try:
        return cls(**options)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ValueError(f"bad options for kernel {name!r}: {exc}") from None
