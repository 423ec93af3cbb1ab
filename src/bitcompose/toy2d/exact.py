"""Exact level densities of the 2-D data sets: the benchmark's ``exact`` parameterisation (no network).

With ``x_t = a_t x_0 + σ_t ε`` (``a_t = √ᾱ_t``) every level of the 2-D data sets has a closed form:

* Gaussian ring (K equal components ``N(μ_k, s² I)``): ``q_t = (1/K) Σ_k N(x; a_t μ_k, (a_t² s² + σ_t²) I)``;
* uniform on disjoint rectangles ``r`` (total area ``A``):
  ``q_t(x) = Σ_r (|r|/A) Π_d [Φ((a_t hi_d − x_d)/σ_t) − Φ((a_t lo_d − x_d)/σ_t)] / (a_t (hi_d − lo_d))``.

:class:`ExactToyModel` implements the model protocol of :mod:`bitcompose.core.model` with these densities
(``energy = −log q_t`` exactly, normalised; ``score`` by autograd in float64), so every composition of the benchmark
can be sampled with *perfect* component models. That separates sampler error from model error: what a correct
sampler returns for ``Product(ExactToyModel(ring), ExactToyModel(bar))`` is the composed target of the paper's
argument with no learning involved.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.special import log_ndtr

from bitcompose.core.model import DiffusionModel, Prediction, TimeLike, as_times
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.core.tensors import append_dims
from bitcompose.data.toy2d import GaussianRing, UniformRects

__all__ = ["ExactToyModel", "log_diff_ndtr"]


def log_diff_ndtr(u: Tensor, v: Tensor) -> Tensor:
    """``log(Φ(u) − Φ(v))`` for ``u > v`` elementwise, stable in both tails (and with finite gradients).

    Where ``v > 0`` the identity ``Φ(u) − Φ(v) = Φ(−v) − Φ(−u)`` keeps both arguments in the accurate lower tail.
    """
    flip = v > 0
    hi = torch.where(flip, -v, u)
    lo = torch.where(flip, -u, v)
    lhi, llo = log_ndtr(hi), log_ndtr(lo)
    return lhi + torch.log(-torch.expm1(llo - lhi))


class ExactToyModel(DiffusionModel):
    """The exact level densities of a 2-D data set (ring or union of rectangles) under a DDPM schedule.

    Args:
        dist: a :class:`~bitcompose.data.toy2d.GaussianRing` or :class:`~bitcompose.data.toy2d.UniformRects`.
        schedule: the discrete schedule that defines the levels (the benchmark's: 100 cosine steps).

    ``energy(x [B, 2], t) -> [B]`` is exactly ``−log q_t(x)``; ``score(x, t) -> [B, 2]`` its negative gradient.
    """

    schedule: DiscreteSchedule

    has_energy = True

    def __init__(self, dist: GaussianRing | UniformRects, schedule: DiscreteSchedule) -> None:
        if not isinstance(dist, GaussianRing | UniformRects):
            raise ValueError(f"ExactToyModel needs a GaussianRing or UniformRects, got {type(dist).__name__}")
        self.dist = dist
        self.schedule = schedule

    def _levels(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        if x.ndim != 2 or x.shape[1] != 2:
            raise ValueError(f"ExactToyModel expects x of shape [B, 2], got {tuple(x.shape)}")
        idx = self.schedule.level(as_times(t, x)).cpu()
        abar = self.schedule.alphas_cumprod[idx].to(device=x.device)
        return abar.sqrt()[:, None], (1 - abar).sqrt()[:, None]  # a_t, σ_t: [B, 1]

    def _log_prob64(self, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
        """``log q_t(x)`` in float64, ``[B]`` (``x`` float64 ``[B, 2]``; ``a``, ``s`` ``[B, 1]``)."""
        if isinstance(self.dist, GaussianRing):
            ring = self.dist
            var = a**2 * ring.std**2 + s**2  # [B, 1]
            means = ring.means.to(x)  # [K, 2]
            d2 = ((x[:, None, :] - a[:, :, None] * means[None]) ** 2).sum(-1)  # [B, K]
            return torch.logsumexp(-0.5 * d2 / var, dim=1) - torch.log(ring.n * 2 * math.pi * var[:, 0])
        parts = []
        total = self.dist.area
        for r in self.dist.rects:
            lo = torch.tensor([r.x0, r.y0], dtype=torch.float64, device=x.device)
            hi = torch.tensor([r.x1, r.y1], dtype=torch.float64, device=x.device)
            per_dim = log_diff_ndtr((a * hi - x) / s, (a * lo - x) / s) - torch.log(a * (hi - lo))  # [B, 2]
            parts.append(per_dim.sum(1) + math.log(r.area / total))
        return torch.logsumexp(torch.stack(parts, dim=1), dim=1)

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """Exact ``−log q_t(x)``, ``[B]`` (in ``x``'s dtype)."""
        a, s = self._levels(x, t)
        return -self._log_prob64(x.detach().double(), a, s).to(x.dtype)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """Exact energy ``[B]`` and score ``∇ log q_t`` ``[B, 2]``."""
        a, s = self._levels(x, t)
        with torch.enable_grad():
            xd = x.detach().double().requires_grad_(True)
            logp = self._log_prob64(xd, a, s)
            (grad,) = torch.autograd.grad(logp.sum(), xd)
        return -logp.detach().to(x.dtype), grad.to(x.dtype)

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """Exact ``∇ₓ log q_t(x)``, ``[B, 2]``."""
        return self.energy_and_score(x, t)[1]

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The exact score as a :class:`~bitcompose.core.model.Prediction`."""
        a, s = self._levels(x, t)
        return Prediction("score", self.score(x, t), x, append_dims(a[:, 0], x), append_dims(s[:, 0], x))
