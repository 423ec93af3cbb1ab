"""The base of every composite model, linear combinations of models, and classifier-free guidance.

A composite is a :class:`~bitcompose.core.model.DiffusionModel` again. :class:`LinearComposite` is
``E = Σ_i c_i E_i``, ``s = Σ_i c_i s_i``: the common form of the product and negation of
:mod:`bitcompose.compose.operators` and of :class:`CFGConjunction`, which lives here, below both the Bit
Diffusion samplers (``sample(..., guidance=g)``) and the composition operators, so that neither imports upward.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor

from bitcompose.core.model import DiffusionModel, EnergyUnavailableError, Prediction, TimeLike, check_model

__all__ = ["CFGConjunction", "Composite", "LinearComposite"]


class Composite(DiffusionModel):
    """Shared plumbing of the operators: components on one schedule, common grid and clip range.

    Args:
        models: the components.
        op: the operator's name (for messages).
    """

    def __init__(self, models: Sequence[DiffusionModel], op: str) -> None:
        if len(models) == 0:
            raise ValueError(f"{op} needs at least one model")
        self.models = [check_model(m, f"{op}: component {i}") for i, m in enumerate(models)]
        ref = self.models[0]
        for i, m in enumerate(self.models[1:], start=1):
            if m.schedule != ref.schedule:
                raise ValueError(
                    f"{op}: component {i} uses a different schedule ({m.schedule}) from component 0 ({ref.schedule})"
                )
            if len(m.grid()) != len(ref.grid()):
                raise ValueError(
                    f"{op}: component {i} has {len(m.grid())} levels, component 0 has {len(ref.grid())}"
                )
        self.schedule = ref.schedule
        self.num_levels = ref.num_levels
        clips = {m.x0_clip for m in self.models}
        self.x0_clip = clips.pop() if len(clips) == 1 else None
        self.self_conditioned = any(m.self_conditioned for m in self.models)
        self.op = op

    def with_self_cond(self, estimate: Tensor | None) -> DiffusionModel:
        """A copy whose components read ``estimate`` ``[B, *dims]`` (see :meth:`DiffusionModel.with_self_cond`)."""
        if not self.self_conditioned:
            return self
        bound = copy.copy(self)
        bound.models = [m.with_self_cond(estimate) for m in self.models]
        return bound

    def _check_energy(self) -> None:
        if not self.has_energy:
            raise EnergyUnavailableError(f"{self.op}: some component is score-only, so there is no energy")


class LinearComposite(Composite):
    """``E = Σ_i c_i E_i``, ``s = Σ_i c_i s_i``: the common form of Product, Negation and CFGConjunction."""

    def __init__(self, models: Sequence[DiffusionModel], coeffs: Sequence[float], op: str) -> None:
        super().__init__(models, op)
        if len(coeffs) != len(models):
            raise ValueError(f"{op}: got {len(coeffs)} weights for {len(models)} models")
        self.coeffs = [float(c) for c in coeffs]
        if not all(torch.isfinite(torch.tensor(self.coeffs))):
            raise ValueError(f"{op}: weights must be finite, got {self.coeffs}")
        self.has_energy = all(bool(m.has_energy) for m in self.models)

    def _active(self) -> list[tuple[float, DiffusionModel]]:
        return [(c, m) for c, m in zip(self.coeffs, self.models, strict=True) if c != 0.0]

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The components' predictions combined in their common space (x0, ε, else the score).

        In x0 space ``x0 = Σ c_i x0_i + (1 − Σ c_i)·x/α``, the same as ``s = Σ c_i s_i``.
        """
        preds = [(c, m.predict(x, t)) for c, m in self._active()]
        if not preds:
            alpha, sigma = self.coefficients(x, t)
            return Prediction("score", torch.zeros_like(x), x, alpha, sigma)
        first = preds[0][1]
        kinds = {p.kind for _, p in preds}
        kind = kinds.pop() if len(kinds) == 1 else "score"
        if kind == "score":
            value = sum((c * p.score for c, p in preds), torch.zeros_like(x))
        else:
            value = sum((c * (p.x0 if kind == "x0" else p.eps) for c, p in preds), torch.zeros_like(x))
            rest = 1.0 - sum(c for c, _ in preds)
            if kind == "x0" and rest != 0.0:
                value = value + rest * x / first.alpha
        return Prediction(kind, value, x, first.alpha, first.sigma)

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """``Σ_i c_i s_i(x, t)``, ``[B, *dims]``."""
        out = torch.zeros_like(x)
        for c, m in self._active():
            out = out + c * m.score(x, t)
        return out

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``Σ_i c_i E_i`` ``[B]`` (differentiable w.r.t. ``x`` when the components' energies are)."""
        self._check_energy()
        e = x.new_zeros(x.shape[0])
        for c, m in self._active():
            e = e + c * m.energy(x, t)
        return e

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(Σ_i c_i E_i [B], Σ_i c_i s_i [B, *dims])``."""
        self._check_energy()
        e = x.new_zeros(x.shape[0])
        s = torch.zeros_like(x)
        for c, m in self._active():
            ei, si = m.energy_and_score(x, t)
            e, s = e + c * ei, s + c * si
        return e, s


class CFGConjunction(LinearComposite):
    """Composable-Diffusion conjunction / classifier-free guidance (Liu et al. 2022):
    ``ε̂ = ε_u + Σ_i w_i (ε_{c_i} − ε_u)``, i.e. ``s = s_u + Σ_i w_i (s_{c_i} − s_u)``, with the **consistent**
    energy ``E = E_u + Σ_i w_i (E_{c_i} − E_u)``. A negative weight gives the Composable-Diffusion NOT.

    Bit Diffusion's ``sample(..., guidance=g)`` is the one-concept case with ``w = 1 + g``.

    Args:
        uncond: the unconditional model.
        conds: one conditional model per concept.
        weight: the guidance weight ``w`` (float, shared) or one per concept.
    """

    def __init__(
        self, uncond: DiffusionModel, conds: Sequence[DiffusionModel], weight: float | Sequence[float]
    ) -> None:
        conds = list(conds)
        if len(conds) == 0:
            raise ValueError("CFGConjunction needs at least one conditional model")
        ws = [float(weight)] * len(conds) if isinstance(weight, int | float) else [float(w) for w in weight]
        if len(ws) != len(conds):
            raise ValueError(f"CFGConjunction: got {len(ws)} weights for {len(conds)} conditional models")
        super().__init__([uncond, *conds], [1.0 - sum(ws), *ws], "CFGConjunction")
        self.weights = ws
