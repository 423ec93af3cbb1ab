"""The exact model of Gaussian data: every level in closed form, for tests and closed-form checks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bitcompose.core.model import DiffusionModel, Prediction, TimeLike, as_times
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.core.tensors import append_dims

__all__ = ["GaussianModel"]


class GaussianModel(DiffusionModel, nn.Module):
    """Exact model of Gaussian data ``N(μ, Σ)`` noised by the DDPM forward process.

    Level ``i`` (time ``(i+1)/T``) is ``N(√ᾱ_i μ, ᾱ_i Σ + (1 − ᾱ_i) I)``; ``energy`` is the exact −log-density
    (normaliser included) and ``score`` its exact gradient. Data have shape ``[B, D]``. Stored in float64,
    evaluated in ``x``'s dtype.

    Args:
        mean: ``[D]``.
        cov: full covariance ``[D, D]`` (symmetric positive definite), or ``None`` when ``std`` is given.
        schedule: the DDPM schedule.
        std: scalar or ``[D]`` standard deviations (diagonal Σ), alternative to ``cov``.
    """

    schedule: DiscreteSchedule

    has_energy = True

    def __init__(
        self,
        mean: Tensor | float | list[float],
        cov: Tensor | None = None,
        schedule: DiscreteSchedule | None = None,
        *,
        std: Tensor | float | list[float] | None = None,
    ) -> None:
        super().__init__()
        if schedule is None:
            raise ValueError("GaussianModel needs a schedule")
        mu = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        d = mu.numel()
        if (cov is None) == (std is None):
            raise ValueError("GaussianModel needs exactly one of cov or std")
        if cov is not None:
            sig = torch.as_tensor(cov, dtype=torch.float64)
            if sig.shape != (d, d):
                raise ValueError(f"cov must have shape [{d}, {d}], got {tuple(sig.shape)}")
        else:
            s = torch.as_tensor(std, dtype=torch.float64).reshape(-1).expand(d)
            if bool((s <= 0).any()):
                raise ValueError("std must be positive")
            sig = torch.diag(s**2)
        if not torch.allclose(sig, sig.T) or bool((torch.linalg.eigvalsh(sig) <= 0).any()):
            raise ValueError("cov must be symmetric positive definite")
        self.schedule = schedule
        self.mean = mu
        self.cov = sig
        abar = schedule.alphas_cumprod
        covs = abar[:, None, None] * sig + (1 - abar)[:, None, None] * torch.eye(d, dtype=torch.float64)
        self._means = abar.sqrt()[:, None] * mu  # [T, D]
        self._prec = torch.linalg.inv(covs)  # [T, D, D]
        self._lognorm = 0.5 * torch.logdet(covs) + 0.5 * d * math.log(2 * math.pi)  # [T]

    def level_mean_cov(self, level: int) -> tuple[Tensor, Tensor]:
        """Exact mean ``[D]`` and covariance ``[D, D]`` (float64) of level ``level`` (an index, not a time)."""
        abar = self.schedule.alphas_cumprod[level]
        return abar.sqrt() * self.mean, abar * self.cov + (1 - abar) * torch.eye(
            self.mean.numel(), dtype=torch.float64
        )

    def _parts(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor, Tensor]:
        """``(x − mean, precision·(x − mean), levels)`` at times ``t``."""
        if x.ndim != 2 or x.shape[1] != self.mean.numel():
            raise ValueError(
                f"GaussianModel expects x of shape [B, {self.mean.numel()}], got {tuple(x.shape)}"
            )
        if isinstance(t, float):  # one level for the whole batch: a single matrix product
            i = int(self.schedule.level(t))
            diff = x - self._means[i].to(x)
            return diff, diff @ self._prec[i].to(x).T, torch.full((x.shape[0],), i)
        idx = self.schedule.level(as_times(t, x)).cpu()
        diff = x - self._means[idx].to(x)
        pd = torch.einsum("bij,bj->bi", self._prec[idx].to(x), diff)
        return diff, pd, idx

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """The exact score as a :class:`Prediction`."""
        _, pd, idx = self._parts(x, t)
        g = self.schedule.alphas_cumprod[idx]
        return Prediction("score", -pd, x, append_dims(g.sqrt(), x), append_dims((1 - g).sqrt(), x))

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """Exact ∇ₓ log q_t(x), ``[B, D]``."""
        return -self._parts(x, t)[1]

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """Exact −log q_t(x), ``[B]``."""
        diff, pd, idx = self._parts(x, t)
        return 0.5 * (diff * pd).sum(1) + self._lognorm[idx].to(x)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """Exact ``(−log q_t(x) [B], ∇ₓ log q_t(x) [B, D])``."""
        return self.energy(x, t), self.score(x, t)
