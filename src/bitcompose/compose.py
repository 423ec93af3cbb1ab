"""Composition operators on diffusion models read as per-level EBMs (Du et al. 2023, section 2.3 of our note).

Every composite implements the model protocol of :mod:`bitcompose.energy` (``score``, ``energy``,
``energy_and_score``, ``has_energy``, ``schedule``), so composites nest: ``Mixture(Product(a, b), c)`` works.
All operators act on the level energies ``E_i(x, t) = −log q_t^i(x) + C_t^i``; the unknown constants ``C_t^i``
cancel in Metropolis ratios for products, negations and guidance, but NOT in mixtures (their weights are
implicitly off by ``exp(C_t^i − C_t^j)`` for learned energy models; exact for :class:`GaussianModel`).

Operators:

* :class:`Product`: ``Π_i q_i^{w_i}``: energies and scores add (weighted).
* :class:`Mixture`: ``Σ_i π_i q_i``: energy ``−logsumexp_i(log π_i − E_i)`` (needs energies).
* :class:`Negation`: ``q_1^{1+α} / q_2^{α}``: ``(1+α)E_1 − αE_2``.
* :class:`ClassifierGuidance`: ``q_t(x)·p(y | x, t)^w``.
* :class:`CFGConjunction`: ``ε̂ = ε_u + w Σ_i (ε_{c_i} − ε_u)`` with the consistent energy.

The product of noised marginals is not the noised product (note §2.2): reverse diffusion with these scores is
biased; sample them with the annealed MCMC drivers in :mod:`bitcompose.sampling.annealed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from bitcompose.energy import EnergyUnavailableError, LevelModel, TimeLike, time_index
from bitcompose.schedules import DiscreteSchedule

__all__ = ["Product", "Mixture", "Negation", "ClassifierGuidance", "CFGConjunction"]


def _common_schedule(models: Sequence[LevelModel], op: str) -> DiscreteSchedule:
    if len(models) == 0:
        raise ValueError(f"{op} needs at least one model")
    for i, m in enumerate(models):
        if not hasattr(m, "score") or not hasattr(m, "schedule"):
            raise ValueError(
                f"{op}: component {i} ({type(m).__name__}) does not implement the model protocol"
            )
    ref = models[0].schedule
    for i, m in enumerate(models[1:], start=1):
        s = m.schedule
        if s is not ref and (s.num_steps != ref.num_steps or not torch.allclose(s.betas, ref.betas)):
            raise ValueError(f"{op}: component {i} uses a different schedule ({s}) from component 0 ({ref})")
    return ref


class _Composite:
    """Shared plumbing: ``score`` via ``energy_and_score`` when energies exist, clear errors otherwise."""

    schedule: DiscreteSchedule
    has_energy: bool

    def _no_energy(self) -> EnergyUnavailableError:
        return EnergyUnavailableError(
            f"{type(self).__name__}: some component is score-only, so there is no energy"
        )

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def score(self, x: Tensor, t: TimeLike) -> Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class _Linear(_Composite):
    """``E = Σ_i c_i E_i``, ``s = Σ_i c_i s_i``: the common form of Product, Negation and CFGConjunction."""

    def __init__(self, models: Sequence[LevelModel], coeffs: Sequence[float], op: str) -> None:
        self.schedule = _common_schedule(models, op)
        if len(coeffs) != len(models):
            raise ValueError(f"{op}: got {len(coeffs)} weights for {len(models)} models")
        self.models = list(models)
        self.coeffs = [float(c) for c in coeffs]
        self.has_energy = all(bool(m.has_energy) for m in models)

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """``Σ_i c_i s_i(x, t)``, ``[B, *dims]``."""
        out = torch.zeros_like(x)
        for c, m in zip(self.coeffs, self.models, strict=True):
            if c != 0.0:
                out = out + c * m.score(x, t)
        return out

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``Σ_i c_i E_i`` ``[B]`` (differentiable w.r.t. ``x`` when the components' energies are)."""
        if not self.has_energy:
            raise self._no_energy()
        e = x.new_zeros(x.shape[0])
        for c, m in zip(self.coeffs, self.models, strict=True):
            if c != 0.0:
                e = e + c * m.energy(x, t)
        return e

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(Σ_i c_i E_i [B], Σ_i c_i s_i [B, *dims])``."""
        if not self.has_energy:
            raise self._no_energy()
        e = x.new_zeros(x.shape[0])
        s = torch.zeros_like(x)
        for c, m in zip(self.coeffs, self.models, strict=True):
            if c != 0.0:
                ei, si = m.energy_and_score(x, t)
                e, s = e + c * ei, s + c * si
        return e, s


class Product(_Linear):
    """Product of experts ``Π_i q_i^{w_i}`` (AND): ``E = Σ w_i E_i``, ``s = Σ w_i s_i``.

    Score-only components are allowed (then ``has_energy`` is False and only score-based or trapezoid-Metropolis
    samplers apply).

    Args:
        *models: component models (protocol of :mod:`bitcompose.energy`), all on the same schedule.
        weights: per-model exponents ``w_i`` (default all 1).
    """

    def __init__(self, *models: LevelModel, weights: Sequence[float] | None = None) -> None:
        super().__init__(models, [1.0] * len(models) if weights is None else list(weights), "Product")


class Negation(_Linear):
    """``q_1^{1+α} / q_2^{α}`` (NOT; "extrapolate away from model 2"): ``(1+α)E_1 − αE_2``, scores likewise.

    The released notebook uses α = 0.3 (exponents 1.3 and −0.3).
    """

    def __init__(self, m1: LevelModel, m2: LevelModel, alpha: float = 0.3) -> None:
        if alpha < 0:
            raise ValueError(f"Negation alpha must be >= 0, got {alpha}")
        super().__init__([m1, m2], [1.0 + alpha, -alpha], "Negation")
        self.alpha = float(alpha)


class CFGConjunction(_Linear):
    """Composable-Diffusion conjunction / classifier-free guidance (Liu et al. 2022):
    ``ε̂ = ε_u + Σ_i w_i (ε_{c_i} − ε_u)``, i.e. ``s = s_u + Σ_i w_i (s_{c_i} − s_u)``, with the **consistent**
    energy ``E = E_u + Σ_i w_i (E_{c_i} − E_u)``.

    (The released PyTorch code used ``E_u + w(Σ_i E_{c_i} − E_u)`` for Metropolis, which disagrees with its own
    ε composition for two or more concepts; we do not.) A negative weight gives the Composable-Diffusion NOT.

    Args:
        uncond: the unconditional model.
        conds: one conditional model per concept.
        weight: the guidance weight ``w`` (float, shared) or one per concept.
    """

    def __init__(
        self, uncond: LevelModel, conds: Sequence[LevelModel], weight: float | Sequence[float]
    ) -> None:
        conds = list(conds)
        if len(conds) == 0:
            raise ValueError("CFGConjunction needs at least one conditional model")
        ws = [float(weight)] * len(conds) if isinstance(weight, int | float) else [float(w) for w in weight]
        if len(ws) != len(conds):
            raise ValueError(f"CFGConjunction: got {len(ws)} weights for {len(conds)} conditional models")
        super().__init__([uncond, *conds], [1.0 - sum(ws), *ws], "CFGConjunction")
        self.weights = ws


class Mixture(_Composite):
    """Mixture ``Σ_i π_i q_i`` (OR). Needs energies: the weights of the component scores are densities.

    ``sharpen=None`` (default): the exact ``energy = −logsumexp_i(log π_i − E_i(x, t))`` of the unnormalised
    levels, ``score = Σ_i r_i s_i`` with ``r = softmax_i(log π_i − E_i)`` (its exact gradient).

    ``sharpen=k`` (a float; the notebook uses 3.5): the released notebook's **heuristic**, defined on the raw
    network energies ``e_i = σ_t E_i`` (for an :class:`~bitcompose.energy.EnergyModel` ``e_i = E_θ``):
    ``energy = −(1/σ_t)·logsumexp_i(log π_i − k·e_i)``, ``score = k·Σ_i r_i s_i`` with
    ``r = softmax_i(log π_i − k e_i)``. It is not ``log(q_1 + q_2)``: besides re-weighting the components it
    sharpens the whole density roughly like ``q^k`` near each mode. Kept only to reproduce the released figures.

    Either way, learned energies carry unknown per-model constants ``C_t^i``, so the effective mixture weights of
    learned models are not the nominal ``π_i``.

    Args:
        *models: components with energies (``has_energy``); a score-only one raises ``ValueError``.
        sharpen: ``None`` (exact) or the notebook factor ``k > 0``.
        weights: mixture weights ``π_i > 0`` (default all 1; need not sum to 1).
    """

    def __init__(
        self, *models: LevelModel, sharpen: float | None = None, weights: Sequence[float] | None = None
    ) -> None:
        self.schedule = _common_schedule(models, "Mixture")
        for i, m in enumerate(models):
            if not m.has_energy:
                raise ValueError(
                    f"Mixture: component {i} ({type(m).__name__}) is score-only; a mixture needs energies "
                    "(use an EnergyModel)"
                )
        if sharpen is not None and not sharpen > 0:
            raise ValueError(f"Mixture sharpen must be None or > 0, got {sharpen}")
        ws = [1.0] * len(models) if weights is None else [float(w) for w in weights]
        if len(ws) != len(models) or any(not w > 0 for w in ws):
            raise ValueError(f"Mixture weights must be {len(models)} positive numbers, got {weights}")
        self.models = list(models)
        self.sharpen = sharpen
        self.log_weights = torch.log(torch.tensor(ws, dtype=torch.float64))
        self.has_energy = True

    def _logits(self, e: Tensor, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor, float]:
        """(logits [B, n], energy [B], score scale) from the stacked component energies ``e`` [B, n]."""
        logw = self.log_weights.to(e)
        if self.sharpen is None:
            logits = logw - e
            return logits, -torch.logsumexp(logits, dim=1), 1.0
        sig = self.schedule.sigma(time_index(t, x, self.schedule).cpu()).to(e)[:, None]
        logits = logw - self.sharpen * sig * e
        return logits, -torch.logsumexp(logits, dim=1) / sig[:, 0], self.sharpen

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """The mixture energy ``[B]`` (differentiable w.r.t. ``x`` when the components' energies are)."""
        e = torch.stack([m.energy(x, t) for m in self.models], dim=1)
        return self._logits(e, x, t)[1]

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(energy [B], score [B, *dims])`` as described in the class docstring."""
        es, ss = zip(*(m.energy_and_score(x, t) for m in self.models), strict=True)
        e = torch.stack(es, dim=1)  # [B, n]
        s = torch.stack(ss, dim=1)  # [B, n, *dims]
        logits, energy, scale = self._logits(e, x, t)
        r = torch.softmax(logits, dim=1).reshape(*logits.shape, *([1] * (x.ndim - 1)))
        return energy, scale * (r * s).sum(1)

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """The mixture score ``[B, *dims]`` (needs the component energies)."""
        return self.energy_and_score(x, t)[1]


class ClassifierGuidance(_Composite):
    """Classifier guidance ``q_t(x)·p(y | x, t)^w`` with a noise-conditioned classifier.

    ``energy = E(x, t) − w·log p(y | x, t)``; ``score = s(x, t) + w·∇ₓ log p(y | x, t)`` (autograd on a detached
    copy of ``x``; works under ``torch.no_grad()``).

    Args:
        model: the base model.
        classifier: callable ``classifier(x [B, *dims], t LongTensor [B]) -> logits [B, num_classes]``.
        y: target class (int) or ``LongTensor [B]``.
        weight: guidance weight ``w``.
    """

    def __init__(
        self,
        model: LevelModel,
        classifier: Callable[[Tensor, Tensor], Tensor],
        y: int | Tensor,
        weight: float = 1.0,
    ) -> None:
        self.schedule = _common_schedule([model], "ClassifierGuidance")
        self.model = model
        self.classifier = classifier
        self.y = y
        self.weight = float(weight)
        self.has_energy = bool(model.has_energy)

    def log_prob_and_grad(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(log p(y | x, t) [B], ∇ₓ log p(y | x, t) [B, *dims])``."""
        idx = time_index(t, x, self.schedule)
        y = self._labels(x)
        with torch.enable_grad():
            xin = x.detach().requires_grad_(True)
            logits = self.classifier(xin, idx)
            if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"classifier must return logits [B, num_classes], got {tuple(logits.shape)}")
            logp = torch.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]
            (grad,) = torch.autograd.grad(logp.sum(), xin)
        return logp.detach(), grad.detach()

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """``s(x, t) + w ∇ log p(y | x, t)``, ``[B, *dims]``."""
        return self.model.score(x, t) + self.weight * self.log_prob_and_grad(x, t)[1]

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``E(x, t) − w log p(y | x, t)`` ``[B]`` (differentiable w.r.t. ``x`` when the model's energy is)."""
        if not self.has_energy:
            raise self._no_energy()
        idx = time_index(t, x, self.schedule)
        logp = torch.log_softmax(self.classifier(x, idx), dim=1).gather(1, self._labels(x)[:, None])[:, 0]
        return self.model.energy(x, t) - self.weight * logp

    def _labels(self, x: Tensor) -> Tensor:
        return torch.as_tensor(self.y, device=x.device).long().expand(x.shape[0])

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(E − w log p [B], s + w ∇ log p [B, *dims])``."""
        if not self.has_energy:
            raise self._no_energy()
        e, s = self.model.energy_and_score(x, t)
        lp, g = self.log_prob_and_grad(x, t)
        return e - self.weight * lp.to(e), s + self.weight * g
