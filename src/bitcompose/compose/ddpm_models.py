"""Networks trained on a T-level DDPM schedule, as models: ε-parameterised and energy-parameterised.

A network here is any module ``net(x [B, *dims], level LongTensor [B]) -> [B, *dims]`` trained with
:func:`eps_loss` on a :class:`~bitcompose.core.schedules.DiscreteSchedule`. Queried at a time ``t``, a model uses
the level nearest to ``t`` (level ``i`` sits at ``t = (i + 1)/T``).

* :class:`EpsModel`: the network predicts ε; ``score = −ε/σ_t``; no energy.
* :class:`EnergyModel` (Du et al. 2023): a scalar ``E_θ(x, t)`` built from the network's vector output,
  ``ε := ∇ₓE_θ``, and the level energy ``E_θ/σ_t`` (``log q_t ≈ −E_θ/σ_t + C_t``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bitcompose.core.model import DiffusionModel, Prediction, TimeLike, as_times
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.core.tensors import append_dims

__all__ = [
    "EpsModel",
    "EnergyModel",
    "eps_loss",
    "denoising_loss",
    "functional_denoising_loss",
    "ENERGY_KINDS",
]

ENERGY_KINDS = ("diff", "norm")


def _level_sigma(schedule: DiscreteSchedule, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor, Tensor]:
    """``(levels LongTensor [B], alpha [B], sigma [B])`` of times ``t`` on the schedule, in ``x``'s dtype."""
    idx = schedule.level(as_times(t, x))
    g = schedule.alphas_cumprod[idx.cpu()]
    return (
        idx,
        g.sqrt().to(device=x.device, dtype=x.dtype),
        (1.0 - g).sqrt().to(device=x.device, dtype=x.dtype),
    )


class EpsModel(DiffusionModel, nn.Module):
    """ε-prediction model: ``score = −net(x, level)/σ_t``. Has no energy.

    Args:
        net: any module with the signature ``net(x [B, *dims], level LongTensor [B]) -> [B, *dims]``.
        schedule: the DDPM schedule the net was trained with.
    """

    schedule: DiscreteSchedule

    def __init__(self, net: nn.Module, schedule: DiscreteSchedule) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """ε̂(x, t) as a :class:`Prediction`."""
        idx, alpha, sigma = _level_sigma(self.schedule, x, t)
        return Prediction("eps", self.net(x, idx), x, append_dims(alpha, x), append_dims(sigma, x))

    def train_eps(self, x: Tensor, levels: Tensor) -> Tensor:
        """ε̂ at integer ``levels`` ``[B]`` with the autograd graph kept (for :func:`eps_loss`)."""
        return self.net(x, levels)


class EnergyModel(DiffusionModel, nn.Module):
    """Energy parameterisation: a scalar ``E_θ(x, t)`` built from a vector net, with ``ε̂ := ∇ₓE_θ``.

    ``kind="diff"``: ``E = ‖f(x, t) − x‖²`` summed over non-batch dims (a zero-initialised last layer is fine: the
    model starts as ``‖x‖²``). ``kind="norm"``: ``E = ½‖f(x, t)‖²`` (do **not** zero-init the last layer: f = 0
    gives zero gradients everywhere).

    ``ε̂`` is computed by ``torch.autograd.grad`` on a detached copy of ``x`` with grad enabled locally, so it works
    under ``torch.no_grad()``; training (:func:`eps_loss`) keeps the graph for double backprop.

    Args:
        net: module ``net(x [B, *dims], level LongTensor [B]) -> [B, *dims]``.
        schedule: the DDPM schedule.
        kind: ``"diff"`` or ``"norm"``.
    """

    schedule: DiscreteSchedule

    has_energy = True

    def __init__(self, net: nn.Module, schedule: DiscreteSchedule, kind: str = "diff") -> None:
        super().__init__()
        if kind not in ENERGY_KINDS:
            raise ValueError(f"EnergyModel kind must be 'diff' or 'norm', got {kind!r}")
        self.net = net
        self.schedule = schedule
        self.kind = kind

    def raw_energy(self, x: Tensor, levels: Tensor) -> Tensor:
        """The network energy ``E_θ`` ``[B]`` (unscaled) at integer ``levels`` ``[B]``."""
        f = self.net(x, levels)
        if self.kind == "diff":
            return (f - x).pow(2).flatten(1).sum(1)
        return 0.5 * f.pow(2).flatten(1).sum(1)

    def _raw_energy_and_eps(self, x: Tensor, levels: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            xin = x if create_graph else x.detach().requires_grad_(True)
            e = self.raw_energy(xin, levels)
            (eps,) = torch.autograd.grad(e.sum(), xin, create_graph=create_graph)
        if not create_graph:
            e, eps = e.detach(), eps.detach()
        return e, eps

    def train_eps(self, x: Tensor, levels: Tensor) -> Tensor:
        """ε̂ = ∇ₓE_θ at integer ``levels`` with the graph kept for double backprop (for :func:`eps_loss`)."""
        xin = x.detach().requires_grad_(True)
        return self._raw_energy_and_eps(xin, levels, create_graph=torch.is_grad_enabled())[1]

    def predict(self, x: Tensor, t: TimeLike) -> Prediction:
        """ε̂ = ∇ₓE_θ(x, t) as a :class:`Prediction`."""
        idx, alpha, sigma = _level_sigma(self.schedule, x, t)
        eps = self._raw_energy_and_eps(x, idx, create_graph=False)[1]
        return Prediction("eps", eps, x, append_dims(alpha, x), append_dims(sigma, x))

    def energy(self, x: Tensor, t: TimeLike) -> Tensor:
        """``E_θ(x, t)/σ_t`` (= −log q_t(x) + const), ``[B]``; differentiable w.r.t. ``x`` if it requires grad."""
        idx, _, sigma = _level_sigma(self.schedule, x, t)
        return self.raw_energy(x, idx) / sigma

    def energy_and_score(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """``(E_θ/σ_t [B], −∇ₓE_θ/σ_t [B, *dims])`` from one forward and one backward pass."""
        idx, _, sigma = _level_sigma(self.schedule, x, t)
        e, eps = self._raw_energy_and_eps(x, idx, create_graph=False)
        return e / sigma, -eps / append_dims(sigma, x)

    def score(self, x: Tensor, t: TimeLike) -> Tensor:
        """−∇ₓE_θ/σ_t, ``[B, *dims]``."""
        return self.energy_and_score(x, t)[1]


def eps_loss(
    model: EpsModel | EnergyModel,
    x0: Tensor,
    *,
    generator: torch.Generator,
    loss_fn: Callable[..., Tensor] | None = None,
) -> Tensor:
    """Denoising ε-MSE (``loss_type='simple'``): level ``i ~ U{0..T−1}``, ``x_i = √ᾱ_i x0 + σ_i ε``,
    ``mean((ε̂(x_i, i) − ε)²)`` over batch and dims; double backprop for energy models when grad is enabled.

    Args:
        model: an :class:`EpsModel` or :class:`EnergyModel`.
        x0: clean data ``[B, *dims]``.
        generator: the source of every random draw.
        loss_fn: what computes the loss from ``(model, x0, levels, noise, abar)`` (default
            :func:`denoising_loss`; e.g. ``torch.compile(functional_denoising_loss)``).

    Returns:
        The scalar loss.
    """
    schedule = model.schedule
    b = x0.shape[0]
    levels = torch.randint(0, schedule.num_steps, (b,), generator=generator, device=generator.device)
    levels = levels.to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    abar = append_dims(schedule.alphas_cumprod[levels.cpu()], x0)
    return (loss_fn or denoising_loss)(model, x0, levels, noise, abar)


def denoising_loss(
    model: EpsModel | EnergyModel, x0: Tensor, levels: Tensor, noise: Tensor, abar: Tensor
) -> Tensor:
    """``mean((ε̂(x_i, i) − ε)²)`` for given levels ``[B]``, noise ``[B, *dims]`` and ``ᾱ`` ``[B, 1, …]``."""
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    return (model.train_eps(x_t, levels) - noise).pow(2).mean()


def functional_denoising_loss(
    model: EpsModel | EnergyModel, x0: Tensor, levels: Tensor, noise: Tensor, abar: Tensor
) -> Tensor:
    """:func:`denoising_loss` with the energy gradient taken by ``torch.func.grad``: the same value, but a graph
    ``torch.compile`` can trace whole (the second derivative becomes ordinary forward operations, which the
    compiler fuses; eager, the autograd version is faster)."""
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    if isinstance(model, EnergyModel):
        eps = torch.func.grad(lambda xx: model.raw_energy(xx, levels).sum())(x_t)
    else:
        eps = model.train_eps(x_t, levels)
    return (eps - noise).pow(2).mean()
