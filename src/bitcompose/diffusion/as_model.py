"""Any continuous-time x0 denoiser as a composable model: :func:`as_model`.

A denoiser is a :class:`~bitcompose.diffusion.denoiser.BitDenoiser` or a plain callable
``fn(x_t, t, self_cond=None, cond=None) -> x̂0`` on the paper's γ(t) (``t`` a float tensor ``[B]`` in [0, 1]).
:class:`DenoiserModel` binds its conditioning and exposes it through the model protocol of
:mod:`bitcompose.core.model`, so it can be multiplied, negated, guided and sampled by every sampler.
:func:`cfg_model` binds a condition with classifier-free guidance (what :func:`~bitcompose.sample` samples).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bitcompose.core.composite import CFGConjunction
from bitcompose.core.model import DiffusionModel, EnergyUnavailableError, Prediction, TimeLike, as_times
from bitcompose.core.schedules import CosineSchedule, Schedule
from bitcompose.core.tensors import append_dims
from bitcompose.diffusion.denoiser import BitDenoiser
from bitcompose.diffusion.masked import MaskedDenoiser

__all__ = ["DenoiserModel", "as_model", "cfg_model", "DenoiserFn"]

DenoiserFn = Callable[..., Tensor]

_UNSET: Any = object()


class DenoiserModel(DiffusionModel):
    """A continuous-time denoiser with its conditioning bound (see :func:`as_model`).

    Attributes:
        denoiser: the wrapped denoiser.
        cond: the bound conditioning (``None``: unconditional / the null class).
        estimate: the bound self-conditioning estimate ``[B, *dims]`` (``None``: blind; see
            :meth:`with_self_cond`).
    """

    estimate: Tensor | None = None

    def __init__(
        self,
        denoiser: BitDenoiser | DenoiserFn,
        *,
        cond: Any = None,
        num_levels: int = 100,
        scale: float | None = _UNSET,
        schedule: Schedule | None = None,
        self_condition: bool | None = None,
    ) -> None:
        if not callable(denoiser):
            raise ValueError(
                f"as_model needs a BitDenoiser or a callable denoiser, got {type(denoiser).__name__}"
            )
        if isinstance(denoiser, DiffusionModel):
            raise ValueError("as_model got a model already; compose it directly")
        if isinstance(denoiser, MaskedDenoiser):
            raise ValueError(
                "a masked (absorbing-state) model predicts categorical logits, not x0: it has no score to compose "
                "or sample continuously; sample it with bitcompose.diffusion.masked.masked_sample"
            )
        if not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f"num_levels must be a positive integer, got {num_levels!r}")
        if isinstance(cond, bool) or (isinstance(cond, float)):
            raise ValueError(f"cond must be a class label (int), a tensor or None, got {cond!r}")
        self.denoiser = denoiser
        self.cond = cond
        self.num_levels = num_levels
        self.schedule = schedule or getattr(denoiser, "schedule", None) or CosineSchedule()
        b = getattr(denoiser, "scale", None) if scale is _UNSET else scale
        if b is not None and not b > 0:
            raise ValueError(f"scale must be positive or None, got {b}")
        self.x0_clip = None if b is None else float(b)
        if self_condition is None:
            self_condition = bool(getattr(denoiser, "self_condition", True))
        self.self_conditioned = self_condition
        self.has_energy = isinstance(denoiser, BitDenoiser) and denoiser.has_energy

    def with_self_cond(self, estimate: Tensor | None) -> DiffusionModel:
        """A view of this model whose denoiser reads ``estimate`` ``[B, *dims]`` as its self-conditioning input
        (itself when the denoiser is not self-conditioned)."""
        if not self.self_conditioned:
            return self
        bound = copy.copy(self)
        bound.estimate = estimate
        return bound

    def bound_cond(self, x: Tensor) -> Any:
        """The bound conditioning for a batch ``x`` ``[B, *dims]`` (an int label becomes ``LongTensor [B]``)."""
        if isinstance(self.cond, int):
            return torch.full((x.shape[0],), self.cond, dtype=torch.long, device=x.device)
        if isinstance(self.cond, Tensor) and self.cond.ndim >= 1 and self.cond.shape[0] != x.shape[0]:
            raise ValueError(
                f"the model's bound cond has batch size {self.cond.shape[0]}, but x has {x.shape[0]} samples"
            )
        return self.cond

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The denoiser's x0 (or, for an ε-trained :class:`BitDenoiser`, its ε) at ``x`` and times ``t``."""
        tt = as_times(t, x)
        cond = self.bound_cond(x)
        den = self.denoiser
        if isinstance(den, BitDenoiser):
            return den.prediction_of(den.raw(x, tt, self.estimate, cond), x, tt)
        x0 = den(x, tt, self.estimate, cond)
        alpha = append_dims(self.schedule.alpha(tt), x)
        return Prediction("x0", x0, x, alpha, append_dims(self.schedule.sigma(tt), x))

    def _energy_den(self) -> BitDenoiser:
        den = self.denoiser
        if not (isinstance(den, BitDenoiser) and den.has_energy):
            raise EnergyUnavailableError(
                "this denoiser is score-only (prediction x0/eps/logistic) and has no energy; train it with "
                "prediction='energy', or use a sampler without Metropolis correction or with energy_diff='trapezoid'"
            )
        return den

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``E_θ(x, t)/σ_t`` ``[B]`` of an energy-parameterised denoiser (differentiable w.r.t. ``x``)."""
        den = self._energy_den()
        tt = as_times(t, x)
        return den.energy(x, tt, self.estimate, self.bound_cond(x)) / den.schedule.sigma(tt).to(x.dtype)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(E_θ/σ_t [B], −∇ₓE_θ/σ_t [B, *dims])`` from one forward and one backward pass."""
        den = self._energy_den()
        tt = as_times(t, x)
        e, eps = den.energy_and_eps(x, tt, self.estimate, self.bound_cond(x))
        sigma = den.schedule.sigma(tt).to(x.dtype)
        return e.to(x.dtype) / sigma, -eps / append_dims(sigma, x)


def as_model(
    denoiser: BitDenoiser | DenoiserFn,
    *,
    cond: Any = None,
    num_levels: int = 100,
    scale: float | None = _UNSET,
    schedule: Schedule | None = None,
    self_condition: bool | None = None,
) -> DenoiserModel:
    """A continuous-time x0 denoiser as a composable model.

    Args:
        denoiser: a :class:`~bitcompose.diffusion.denoiser.BitDenoiser` or a callable
            ``fn(x_t, t, self_cond=None, cond=None) -> x̂0``.
        cond: the conditioning to bind: a class label (int), a tensor with the batch first (labels ``[B]``,
            images, prompt tokens), or ``None`` (the null condition).
        num_levels: levels of the default annealing grid (``t_i = (i + 1)/num_levels``).
        scale: the data range ``b``: samplers clip x0 estimates to ``[−b, b]`` (default the denoiser's
            ``scale``; ``None``: no clipping).
        schedule: the continuous schedule (default the denoiser's, else the paper's cosine γ).
        self_condition: whether the denoiser reads a self-conditioning estimate (default its ``self_condition``
            attribute, else true); samplers bind theirs with ``model.with_self_cond(x0)``.

    Example:
        >>> three, seven = as_model(den, cond=3), as_model(den, cond=7)
        >>> both = Product(three, seven)
        >>> res = annealed_mcmc(both, (16, 5, 8, 8), both.grid(), MCMCOptions(kernel=HMC(step_size=0.01)))
    """
    return DenoiserModel(
        denoiser,
        cond=cond,
        num_levels=num_levels,
        scale=scale,
        schedule=schedule,
        self_condition=self_condition,
    )


def cfg_model(
    denoiser: BitDenoiser | DenoiserFn | DiffusionModel, cond: Any = None, guidance: float = 0.0
) -> DiffusionModel:
    """A denoiser bound to ``cond`` with classifier-free guidance ``g``: ``x̂0 = (1 + g)·x̂0(cond) − g·x̂0(null)``,
    the :class:`~bitcompose.CFGConjunction` of the null model (``cond=None``) and the conditional one with
    ``w = 1 + g``; the bound model itself for ``g = 0``. The clip range is the denoiser's ``scale`` (1.0 if it has
    none). A model is returned as it is (it carries its own conditioning: ``cond`` and ``guidance`` are refused).

    Args:
        denoiser: the x0 predictor (a :class:`~bitcompose.diffusion.denoiser.BitDenoiser` or a callable), or a
            model.
        cond: conditioning passed to the denoiser (class labels ``[B]``, images, ...).
        guidance: the guidance weight ``g >= 0`` (needs ``cond``).
    """
    if not guidance >= 0 or not math.isfinite(guidance):
        raise ValueError(f"guidance must be finite and >= 0, got {guidance}")
    if guidance > 0 and cond is None:
        raise ValueError("classifier-free guidance needs cond (the labels to guide towards)")
    if isinstance(denoiser, DiffusionModel):
        if cond is not None or guidance > 0:
            raise ValueError("a model carries its own conditioning; compose guidance with CFGConjunction")
        return denoiser
    b = float(getattr(denoiser, "scale", 1.0))
    model = as_model(denoiser, cond=cond, scale=b)
    if guidance > 0:
        return CFGConjunction(as_model(denoiser, cond=None, scale=b), [model], weight=1.0 + guidance)
    return model
