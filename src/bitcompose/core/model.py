"""The one model protocol: a diffusion model in continuous time ``t ∈ [0, 1]``.

A model maps a batch ``x: [B, *dims]`` at times ``t`` (a python float for the whole batch, or a float tensor
``[B]``) to a :class:`Prediction`: the quantity its network was trained to output (x0, ε, or directly a
score), from which the other two are derived here, once, with ``alpha = √γ(t)`` and ``sigma = √(1 − γ(t))`` of
the model's schedule:

* ``x0 = (x − σ·ε)/α``, ``ε = (x − α·x0)/σ``, ``score = ∇ₓ log q_t(x) = −ε/σ``.

Models with an energy (``has_energy``) also give ``energy(x, t) -> [B]`` with ``q_t(x) ∝ exp(−energy)`` and
``−∇ₓ energy = score``. Self-conditioning (Bit Diffusion's previous clipped x0 estimate) is sampler state, not an
argument of the protocol: a sampler binds its current estimate with :meth:`DiffusionModel.with_self_cond`, which
gives a view of the model that reads it (models that do not use it return themselves). Conditioning (labels, images, prompts) is bound to a model
when it is built (``bitcompose.as_model(den, cond=...)``). Every composite is a model again.

``num_levels`` (or the schedule's own levels) gives :meth:`DiffusionModel.grid`, the default annealing path of
the samplers in :mod:`bitcompose.compose`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from bitcompose.core.schedules import LevelGrid, Schedule
from bitcompose.core.tensors import append_dims

__all__ = [
    "DiffusionModel",
    "EnergyUnavailableError",
    "Prediction",
    "PredictionKind",
    "TimeLike",
    "as_times",
    "check_model",
]

TimeLike = float | Tensor
PredictionKind = Literal["x0", "eps", "score"]
_KINDS = ("x0", "eps", "score")


class EnergyUnavailableError(ValueError):
    """Raised when an energy is requested from a model that only has a score."""


def as_times(t: TimeLike, x: Tensor) -> Tensor:
    """Times ``t`` as a float tensor ``[B]`` on ``x``'s device (float64 for a python number).

    Args:
        t: a python float (one time for the batch) or a float tensor of shape ``[]`` or ``[B]``.
        x: the batch ``[B, *dims]``.
    """
    if isinstance(t, bool) or (isinstance(t, Tensor) and t.dtype == torch.bool):
        raise ValueError("t must be a time in [0, 1], got a bool")
    if isinstance(t, int):
        raise ValueError(
            f"t must be a float time in [0, 1], got the int {t} (a level index is not a time: use "
            "model.grid()[i].t)"
        )
    tt = torch.as_tensor(t, dtype=torch.float64 if isinstance(t, float) else None, device=x.device)
    if not tt.is_floating_point():
        raise ValueError(f"t must be a float time in [0, 1], got dtype {tt.dtype} (levels are not times)")
    if tt.ndim == 0:
        tt = tt.expand(x.shape[0])
    if tt.ndim != 1 or tt.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a scalar or have shape [B]=[{x.shape[0]}], got shape {tuple(tt.shape)}")
    return tt


class Prediction:
    """What a model predicts at ``(x, t)``, convertible between x0, ε and the score.

    Args:
        kind: what ``value`` is: ``"x0"``, ``"eps"`` or ``"score"``.
        value: ``[B, *dims]``.
        x: the noisy input ``[B, *dims]``.
        alpha, sigma: ``√γ(t)`` and ``√(1 − γ(t))``, broadcastable against ``x`` (``[B, 1, …, 1]``).
    """

    __slots__ = ("kind", "value", "x", "alpha", "sigma")

    def __init__(self, kind: PredictionKind, value: Tensor, x: Tensor, alpha: Tensor, sigma: Tensor) -> None:
        if kind not in _KINDS:
            raise ValueError(f"prediction kind must be one of {_KINDS}, got {kind!r}")
        if value.shape != x.shape:
            raise ValueError(f"a model must return the shape of x {tuple(x.shape)}, got {tuple(value.shape)}")
        self.kind: PredictionKind = kind
        self.value = value
        self.x = x
        self.alpha = alpha
        self.sigma = sigma

    @property
    def x0(self) -> Tensor:
        """The (unclipped) estimate of the clean data, ``[B, *dims]``."""
        if self.kind == "x0":
            return self.value
        if self.kind == "eps":
            return (self.x - self.sigma * self.value) / self.alpha
        return (self.x + self.sigma**2 * self.value) / self.alpha

    @property
    def eps(self) -> Tensor:
        """The estimate of the noise, ``[B, *dims]``."""
        if self.kind == "eps":
            return self.value
        if self.kind == "x0":
            return (self.x - self.alpha * self.value) / self.sigma
        return -self.sigma * self.value

    @property
    def score(self) -> Tensor:
        """``∇ₓ log q_t(x) = −ε/σ``, ``[B, *dims]``."""
        if self.kind == "score":
            return self.value
        return -self.eps / self.sigma


class DiffusionModel:
    """Base class of every model and composite (see the module docstring).

    A subclass sets ``schedule`` and implements :meth:`predict`; energy models also implement
    :meth:`energy_and_score` and :meth:`energy` and set ``has_energy = True``.

    Attributes:
        schedule: the model's noise schedule (continuous times).
        num_levels: levels of the default annealing grid (``None``: the schedule's own, or 100).
        has_energy: whether :meth:`energy` exists.
        x0_clip: the data range ``b``: samplers clip x0 estimates to ``[−b, b]`` (``None``: no clipping).
        self_conditioned: whether the model reads a self-conditioning estimate (see :meth:`with_self_cond`).
    """

    schedule: Schedule
    num_levels: int | None = None
    has_energy: bool = False
    x0_clip: float | None = None
    self_conditioned: bool = False

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The model's prediction at ``x`` ``[B, *dims]`` and times ``t``."""
        raise NotImplementedError

    def with_self_cond(self, estimate: Tensor | None) -> DiffusionModel:
        """This model reading ``estimate`` ``[B, *dims]`` (the sampler's previous clipped x0 estimate) as its
        self-conditioning input; ``None``: the blind model (a zero estimate). Models that are not
        ``self_conditioned`` return themselves; composites bind every component."""
        return self

    def grid(self) -> LevelGrid:
        """The default annealing grid: ``schedule.grid(num_levels)``."""
        return self.schedule.grid(self.num_levels)

    def coefficients(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(alpha, sigma)`` of the schedule at ``t``, each ``[B, 1, …, 1]`` in ``x``'s dtype."""
        tt = as_times(t, x)
        g = self.schedule.gamma(tt)
        return append_dims(g.sqrt(), x), append_dims((1.0 - g).clamp_min(0.0).sqrt(), x)

    def x0(self, x: Tensor, t: TimeLike) -> Tensor:
        """Estimate of the clean data ``[B, *dims]`` (unclipped)."""
        return self.predict(x, t).x0

    def eps(self, x: Tensor, t: TimeLike) -> Tensor:
        """Estimate of the noise ``[B, *dims]``."""
        return self.predict(x, t).eps

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """``∇ₓ log q_t(x)``, ``[B, *dims]``."""
        return self.predict(x, t).score

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """The level energy ``[B]`` (``q_t ∝ exp(−energy)``); only where ``has_energy``."""
        raise EnergyUnavailableError(
            f"{type(self).__name__} is score-only and has no energy; use an energy-parameterised model, or a "
            "sampler without Metropolis correction or with energy_diff='trapezoid'"
        )

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(energy [B], score [B, *dims])`` in one pass (what Metropolis kernels call)."""
        return self.energy(x, t), self.score(x, t)


def check_model(model: object, where: str) -> DiffusionModel:
    """``model`` if it is a :class:`DiffusionModel`, else a ``ValueError`` saying how to make one."""
    if not isinstance(model, DiffusionModel):
        raise ValueError(
            f"{where}: {type(model).__name__} is not a model; wrap a denoiser with bitcompose.as_model(...) "
            "or subclass bitcompose.DiffusionModel"
        )
    return model
