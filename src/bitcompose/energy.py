"""Diffusion models read as energy-based models at every noise level (Du et al. 2023, "Reduce, Reuse, Recycle").

Everything on the composition side speaks one small **model protocol** (:class:`LevelModel`): at an integer
DDPM level ``t`` (python ``int`` or ``LongTensor [B]``) and a batch ``x: [B, *dims]``,

* ``score(x, t) -> [B, *dims]``: ∇ₓ log q_t(x);
* ``energy(x, t) -> [B]``: the energy of the level-t density, q_t(x) ∝ exp(−energy) (only where ``has_energy``);
* ``energy_and_score(x, t) -> ([B], [B, *dims])``: both in one pass (what Metropolis samplers call);
* ``has_energy: bool`` and ``schedule`` (a :class:`~bitcompose.schedules.DiscreteSchedule`).

Trained networks become models through :class:`EpsModel` (ε-prediction, score only) or :class:`EnergyModel`
(scalar energy, ε := ∇ₓE); :class:`GaussianModel` is an exact analytic model for tests and closed-form checks.
Composites (``bitcompose.compose``) implement the same protocol and nest.

Conventions: ``σ_t = √(1 − ᾱ_t)``; ``score = −ε/σ_t``; for energy models ``log q_t(x) ≈ −E_θ(x, t)/σ_t + C_t``
(the released notebook's ``p_energy`` scaling), so ``energy(x, t) = E_θ(x, t)/σ_t`` up to an unknown constant.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from bitcompose.schedules import DiscreteSchedule

__all__ = [
    "LevelModel",
    "EnergyUnavailableError",
    "EpsModel",
    "EnergyModel",
    "GaussianModel",
    "eps_loss",
    "time_index",
    "per_sample",
    "TimeLike",
]

TimeLike = int | Tensor


class EnergyUnavailableError(ValueError):
    """Raised when an energy is requested from a model that only has a score."""


@runtime_checkable
class LevelModel(Protocol):
    """The protocol every composable model (and composite) implements; see the module docstring."""

    schedule: DiscreteSchedule
    has_energy: bool

    def score(self, x: Tensor, t: TimeLike) -> Tensor: ...

    def energy(self, x: Tensor, t: TimeLike) -> Tensor: ...

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]: ...


def time_index(t: TimeLike, x: Tensor, schedule: DiscreteSchedule) -> Tensor:
    """Integer level(s) ``t`` as a ``LongTensor [B]`` on ``x``'s device (validated against ``schedule``).

    Args:
        t: python int or integer tensor of shape ``[]`` or ``[B]``.
        x: the batch ``[B, *dims]``.
        schedule: the discrete schedule whose range ``0..T-1`` ``t`` must lie in.
    """
    idx = torch.as_tensor(t, device=x.device)
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise ValueError(f"t must be an integer level index (int or LongTensor), got dtype {idx.dtype}")
    if idx.ndim == 0:
        idx = idx.expand(x.shape[0])
    if idx.ndim != 1 or idx.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a scalar or have shape [B]={x.shape[0]}, got shape {tuple(idx.shape)}")
    if bool(((idx < 0) | (idx >= schedule.num_steps)).any()):
        raise ValueError(f"level index t out of range [0, {schedule.num_steps})")
    return idx.long()


def per_sample(v: Tensor, x: Tensor) -> Tensor:
    """Reshape a ``[B]`` tensor to ``[B, 1, ..., 1]`` broadcastable against ``x`` (and cast to its dtype)."""
    return v.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _sigma(schedule: DiscreteSchedule, idx: Tensor, x: Tensor) -> Tensor:
    return schedule.sigma(idx.cpu()).to(device=x.device, dtype=x.dtype)


class EpsModel(nn.Module):
    """ε-prediction model: ``net(x, t_long[B]) -> ε̂ [B, *dims]``; ``score = −ε̂/σ_t``. Has no energy.

    Args:
        net: any module with the signature ``net(x [B, *dims], t LongTensor [B]) -> [B, *dims]``.
        schedule: the DDPM schedule the net was trained with.
    """

    has_energy = False

    def __init__(self, net: nn.Module, schedule: DiscreteSchedule) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule

    def eps(self, x: Tensor, t: TimeLike, *, create_graph: bool | None = None) -> Tensor:
        """ε̂(x, t), ``[B, *dims]`` (``create_graph`` is accepted for symmetry with EnergyModel and ignored)."""
        return self.net(x, time_index(t, x, self.schedule))

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """∇ₓ log q_t(x) = −ε̂/σ_t, ``[B, *dims]``."""
        idx = time_index(t, x, self.schedule)
        return -self.net(x, idx) / per_sample(_sigma(self.schedule, idx, x), x)

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        raise EnergyUnavailableError(
            "EpsModel is score-only (ε-parameterised) and has no energy; use EnergyModel, or a sampler "
            "without Metropolis correction / with energy_diff='trapezoid'"
        )

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        return self.energy(x, t), self.score(x, t)


class EnergyModel(nn.Module):
    """Energy parameterisation: a scalar ``E_θ(x, t)`` built from a vector net, with ``ε̂ := ∇ₓE_θ``.

    ``kind="diff"`` (released 2D notebook): ``E = ‖f(x, t) − x‖²`` summed over non-batch dims (a zero-initialised
    last layer is fine: the model starts as ``‖x‖²``). ``kind="norm"`` (released PyTorch HEAD):
    ``E = ½‖f(x, t)‖²`` (do **not** zero-init the last layer: f = 0 gives zero gradients everywhere).

    ``ε̂`` is computed by ``torch.autograd.grad`` on a detached copy of ``x`` with grad enabled locally, so it works
    under ``torch.no_grad()``. ``create_graph`` (double backprop, needed to train) defaults to
    ``self.training and torch.is_grad_enabled()``; :func:`eps_loss` always asks for it when grad is enabled.

    Args:
        net: module ``net(x [B, *dims], t LongTensor [B]) -> [B, *dims]``.
        schedule: the DDPM schedule.
        kind: ``"diff"`` or ``"norm"``.
    """

    has_energy = True

    def __init__(self, net: nn.Module, schedule: DiscreteSchedule, kind: str = "diff") -> None:
        super().__init__()
        if kind not in ("diff", "norm"):
            raise ValueError(f"EnergyModel kind must be 'diff' or 'norm', got {kind!r}")
        self.net = net
        self.schedule = schedule
        self.kind = kind

    def raw_energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """The network energy ``E_θ(x, t)`` (unscaled), ``[B]``."""
        f = self.net(x, time_index(t, x, self.schedule))
        if self.kind == "diff":
            return (f - x).pow(2).flatten(1).sum(1)
        return 0.5 * f.pow(2).flatten(1).sum(1)

    def _raw_energy_and_eps(self, x: Tensor, t: TimeLike, create_graph: bool | None) -> tuple[Tensor, Tensor]:
        if create_graph is None:
            create_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            xin = x.detach().requires_grad_(True)
            e = self.raw_energy(xin, t)
            (eps,) = torch.autograd.grad(e.sum(), xin, create_graph=create_graph)
        if not create_graph:
            e, eps = e.detach(), eps.detach()
        return e, eps

    def eps(self, x: Tensor, t: TimeLike, *, create_graph: bool | None = None) -> Tensor:
        """ε̂ = ∇ₓE_θ(x, t), ``[B, *dims]``."""
        return self._raw_energy_and_eps(x, t, create_graph)[1]

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """−∇ₓE_θ/σ_t, ``[B, *dims]``."""
        return self.energy_and_score(x, t)[1]

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``E_θ(x, t)/σ_t`` (= −log q_t(x) + const), ``[B]``; differentiable w.r.t. ``x`` if it requires grad."""
        idx = time_index(t, x, self.schedule)
        return self.raw_energy(x, idx) / _sigma(self.schedule, idx, x)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(E_θ/σ_t [B], −∇ₓE_θ/σ_t [B, *dims])`` from one forward and one backward pass."""
        idx = time_index(t, x, self.schedule)
        e, eps = self._raw_energy_and_eps(x, idx, None)
        sig = _sigma(self.schedule, idx, x)
        return e / sig, -eps / per_sample(sig, x)


class GaussianModel(nn.Module):
    """Exact model of Gaussian data ``N(μ, Σ)`` noised by the DDPM forward process.

    Level t is ``N(√ᾱ_t μ, ᾱ_t Σ + (1 − ᾱ_t) I)``; ``energy`` is the exact −log-density (normaliser included) and
    ``score`` its exact gradient. Data have shape ``[B, D]``. Stored in float64, evaluated in ``x``'s dtype.

    Args:
        mean: ``[D]``.
        cov: full covariance ``[D, D]`` (symmetric positive definite), or ``None`` when ``std`` is given.
        schedule: the DDPM schedule.
        std: scalar or ``[D]`` standard deviations (diagonal Σ), alternative to ``cov``.
    """

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

    def level_mean_cov(self, t: int) -> tuple[Tensor, Tensor]:
        """Exact mean ``[D]`` and covariance ``[D, D]`` (float64) of level ``t``."""
        abar = self.schedule.gamma(t)
        return abar.sqrt() * self.mean, abar * self.cov + (1 - abar) * torch.eye(
            self.mean.numel(), dtype=torch.float64
        )

    def _parts(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        if x.ndim != 2 or x.shape[1] != self.mean.numel():
            raise ValueError(
                f"GaussianModel expects x of shape [B, {self.mean.numel()}], got {tuple(x.shape)}"
            )
        if isinstance(t, int):  # one level for the whole batch: a single matrix product
            time_index(t, x[:1], self.schedule)
            diff = x - self._means[t].to(x)
            return diff, diff @ self._prec[t].to(x).T
        idx = time_index(t, x, self.schedule).cpu()
        diff = x - self._means[idx].to(x)
        pd = torch.einsum("bij,bj->bi", self._prec[idx].to(x), diff)
        return diff, pd

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """Exact ∇ₓ log q_t(x), ``[B, D]``."""
        return -self._parts(x, t)[1]

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """Exact −log q_t(x), ``[B]``."""
        diff, pd = self._parts(x, t)
        lognorm = (
            self._lognorm[t] if isinstance(t, int) else self._lognorm[time_index(t, x, self.schedule).cpu()]
        )
        return 0.5 * (diff * pd).sum(1) + lognorm.to(x)

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        return self.energy(x, t), self.score(x, t)

    def eps(self, x: Tensor, t: TimeLike, *, create_graph: bool | None = None) -> Tensor:
        """The optimal ε-prediction −σ_t·score, ``[B, D]``."""
        idx = time_index(t, x, self.schedule)
        return -per_sample(_sigma(self.schedule, idx, x), x) * self.score(x, idx)


def eps_loss(model: nn.Module, x0: Tensor, *, generator: torch.Generator) -> Tensor:
    """Denoising ε-MSE (``loss_type='simple'``): ``t ~ U{0..T−1}``, ``x_t = √ᾱ_t x0 + σ_t ε``,
    ``mean((ε̂(x_t, t) − ε)²)`` over batch and dims. Works for :class:`EpsModel` and :class:`EnergyModel`
    (double backprop is requested whenever grad is enabled).

    Args:
        model: an object with ``eps(x, t, create_graph=...)`` and ``schedule``.
        x0: clean data ``[B, *dims]``.
        generator: the source of every random draw.

    Returns:
        The scalar loss.
    """
    schedule: DiscreteSchedule = model.schedule  # type: ignore[assignment]
    b = x0.shape[0]
    t = torch.randint(0, schedule.num_steps, (b,), generator=generator, device=generator.device).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    abar = per_sample(schedule.gamma(t.cpu()), x0)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    pred = model.eps(x_t, t, create_graph=torch.is_grad_enabled())  # type: ignore[operator]
    return (pred - noise).pow(2).mean()
