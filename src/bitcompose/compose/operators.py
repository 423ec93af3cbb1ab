"""Composition operators on diffusion models read as per-level energy-based models (Du et al. 2023).

Every operator is a :class:`~bitcompose.core.model.DiffusionModel` again, so composites nest
(``Mixture(Product(a, b), c)``) and every sampler takes them. All operators act on the level energies
``E_i(x, t) = −log q_t^i(x) + C_t^i``; the unknown constants ``C_t^i`` cancel in Metropolis ratios of products,
negations and guidance, but not in mixtures of learned models (see docs/composition.md).

* :class:`Product`: ``Π_i q_i^{w_i}`` (AND): energies and scores add (weighted).
* :class:`Mixture`: ``Σ_i π_i q_i`` (OR): energy ``−logsumexp_i(log π_i − E_i)`` (needs energies).
* :class:`Negation`: ``q_1^{1+α} / q_2^{α}`` (NOT): ``(1+α)E_1 − αE_2``.
* :class:`ClassifierGuidance`: ``q_t(x)·p(y | x, t)^w``.
* :class:`CFGConjunction`: ``ε̂ = ε_u + Σ_i w_i (ε_{c_i} − ε_u)`` with the consistent energy (defined in
  :mod:`bitcompose.core.composite`, below the Bit Diffusion samplers that use it for guidance).

The product of noised marginals is not the noised product: reverse diffusion with these scores is biased; sample
them with the annealed MCMC drivers of :mod:`bitcompose.compose.drivers`.

Self-conditioning: ``composite.with_self_cond(x0)`` binds the sampler's previous clipped x0 estimate to every
component.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from bitcompose.core.composite import CFGConjunction, Composite, LinearComposite
from bitcompose.core.model import DiffusionModel, Prediction, TimeLike, as_times

__all__ = ["Product", "Mixture", "Negation", "ClassifierGuidance", "CFGConjunction", "Composite"]


class Product(LinearComposite):
    """Product of experts ``Π_i q_i^{w_i}`` (AND): ``E = Σ w_i E_i``, ``s = Σ w_i s_i``.

    Score-only components are allowed (then ``has_energy`` is False and only score-based or trapezoid-Metropolis
    samplers apply).

    Args:
        *models: component models, all on the same schedule.
        weights: per-model exponents ``w_i`` (default all 1; finite).
    """

    def __init__(self, *models: DiffusionModel, weights: Sequence[float] | None = None) -> None:
        super().__init__(models, [1.0] * len(models) if weights is None else list(weights), "Product")


class Negation(LinearComposite):
    """``q_1^{1+α} / q_2^{α}`` (NOT; "extrapolate away from model 2"): ``(1+α)E_1 − αE_2``, scores likewise."""

    def __init__(self, m1: DiffusionModel, m2: DiffusionModel, alpha: float = 0.3) -> None:
        if not alpha >= 0:
            raise ValueError(f"Negation alpha must be >= 0, got {alpha}")
        super().__init__([m1, m2], [1.0 + alpha, -alpha], "Negation")
        self.alpha = float(alpha)


class Mixture(Composite):
    """Mixture ``Σ_i π_i q_i`` (OR). Needs energies: the weights of the component scores are densities.

    ``sharpen=None`` (default): the exact ``energy = −logsumexp_i(log π_i − E_i(x, t))`` of the unnormalised
    levels, ``score = Σ_i r_i s_i`` with ``r = softmax_i(log π_i − E_i)`` (its exact gradient).

    ``sharpen=k`` (a float, e.g. 3.5): a sharpened heuristic on the raw network
    energies ``e_i = σ_t E_i``: ``energy = −(1/σ_t)·logsumexp_i(log π_i − k·e_i)``, ``score = k·Σ_i r_i s_i`` with
    ``r = softmax_i(log π_i − k e_i)``. It is not ``log(q_1 + q_2)`` (see docs/composition.md).

    Args:
        *models: components with energies (``has_energy``); a score-only one raises ``ValueError``.
        sharpen: ``None`` (exact) or the factor ``k > 0`` of the heuristic.
        weights: mixture weights ``π_i > 0`` (default all 1; need not sum to 1).
    """

    has_energy = True

    def __init__(
        self, *models: DiffusionModel, sharpen: float | None = None, weights: Sequence[float] | None = None
    ) -> None:
        super().__init__(models, "Mixture")
        for i, m in enumerate(self.models):
            if not m.has_energy:
                raise ValueError(
                    f"Mixture: component {i} ({type(m).__name__}) is score-only; a mixture needs energies "
                    "(use an energy-parameterised model)"
                )
        if sharpen is not None and not sharpen > 0:
            raise ValueError(f"Mixture sharpen must be None or > 0, got {sharpen}")
        ws = [1.0] * len(models) if weights is None else [float(w) for w in weights]
        if len(ws) != len(models) or any(not (w > 0 and w < float("inf")) for w in ws):
            raise ValueError(f"Mixture weights must be {len(models)} finite positive numbers, got {weights}")
        self.sharpen = sharpen
        self.log_weights = torch.log(torch.tensor(ws, dtype=torch.float64))

    def _logits(self, e: Tensor, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor, float]:
        """(logits [B, n], energy [B], score scale) from the stacked component energies ``e`` [B, n]."""
        logw = self.log_weights.to(e)
        if self.sharpen is None:
            logits = logw - e
            return logits, -torch.logsumexp(logits, dim=1), 1.0
        sig = self.schedule.sigma(as_times(t, x).cpu()).to(e)[:, None]
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

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The mixture score as a :class:`Prediction`."""
        alpha, sigma = self.coefficients(x, t)
        return Prediction("score", self.score(x, t), x, alpha, sigma)


class ClassifierGuidance(Composite):
    """Classifier guidance ``q_t(x)·p(y | x, t)^w`` with a noise-conditioned classifier.

    ``energy = E(x, t) − w·log p(y | x, t)``; ``score = s(x, t) + w·∇ₓ log p(y | x, t)`` (autograd on a detached
    copy of ``x``; works under ``torch.no_grad()``).

    Args:
        model: the base model.
        classifier: callable ``classifier(x [B, *dims], t [B] float times) -> logits [B, num_classes]``.
        y: target class (int) or ``LongTensor [B]``.
        weight: guidance weight ``w`` (finite).
    """

    def __init__(
        self,
        model: DiffusionModel,
        classifier: Callable[[Tensor, Tensor], Tensor],
        y: int | Tensor,
        weight: float = 1.0,
    ) -> None:
        super().__init__([model], "ClassifierGuidance")
        if not torch.isfinite(torch.tensor(float(weight))):
            raise ValueError(f"ClassifierGuidance weight must be finite, got {weight}")
        self.classifier = classifier
        self.y = y
        self.weight = float(weight)
        self.has_energy = bool(self.model.has_energy)

    @property
    def model(self) -> DiffusionModel:
        """The base model."""
        return self.models[0]

    def _labels(self, x: Tensor) -> Tensor:
        return torch.as_tensor(self.y, device=x.device).long().expand(x.shape[0])

    def _log_prob(self, x: Tensor, t: TimeLike) -> Tensor:
        logits = self.classifier(x, as_times(t, x))
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"classifier must return logits [B, num_classes], got {tuple(logits.shape)}")
        return torch.log_softmax(logits, dim=1).gather(1, self._labels(x)[:, None])[:, 0]

    def log_prob_and_grad(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(log p(y | x, t) [B], ∇ₓ log p(y | x, t) [B, *dims])``."""
        with torch.enable_grad():
            xin = x.detach().requires_grad_(True)
            logp = self._log_prob(xin, t)
            (grad,) = torch.autograd.grad(logp.sum(), xin)
        return logp.detach(), grad.detach()

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The guided score as a :class:`Prediction`."""
        alpha, sigma = self.coefficients(x, t)
        return Prediction("score", self.score(x, t), x, alpha, sigma)

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """``s(x, t) + w ∇ log p(y | x, t)``, ``[B, *dims]``."""
        return self.model.score(x, t) + self.weight * self.log_prob_and_grad(x, t)[1]

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``E(x, t) − w log p(y | x, t)`` ``[B]`` (differentiable w.r.t. ``x`` when the model's energy is)."""
        self._check_energy()
        return self.model.energy(x, t) - self.weight * self._log_prob(x, t)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(E − w log p [B], s + w ∇ log p [B, *dims])``."""
        self._check_energy()
        e, s = self.model.energy_and_score(x, t)
        lp, g = self.log_prob_and_grad(x, t)
        return e - self.weight * lp.to(e), s + self.weight * g
