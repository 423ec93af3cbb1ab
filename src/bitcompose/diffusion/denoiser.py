"""The Bit Diffusion denoiser: a network ``net(x_in, gamma, cond)`` as an x0 predictor over analog bits.

:class:`BitDenoiser` owns the parameterisation: it concatenates the self-conditioning estimate to ``x_t`` and
converts the network's output (x0, ε or the logistic output) to an x0 estimate, giving the continuous-time
denoiser ``denoiser(x_t, t, self_cond=None, cond=None) -> x0_hat`` that :func:`bitcompose.as_model` turns into a
composable model.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bitcompose.core.model import Prediction
from bitcompose.core.names import BIT_PREDICTIONS
from bitcompose.core.names import ENERGIES as NAMED_ENERGIES
from bitcompose.core.schedules import CosineSchedule
from bitcompose.core.tensors import append_dims

__all__ = ["BitDenoiser", "PREDICTIONS", "ENERGIES"]

PredictionType = Literal["x0", "eps", "logistic", "energy"]
PREDICTIONS: tuple[str, ...] = BIT_PREDICTIONS
ENERGIES: tuple[str, ...] = NAMED_ENERGIES


class BitDenoiser(nn.Module):
    """Wraps a network into an x0-predicting denoiser over analog bits.

    Args:
        net: a module called as ``net(x_in, gamma, cond)``; ``x_in`` is ``x_t`` (shape ``[B, C, ...]``) concatenated
            with the self-conditioning estimate along ``channel_dim`` when ``self_condition`` is on, ``gamma`` is
            ``γ(t)`` of shape ``[B]`` (the official code conditions on γ, not t), ``cond`` is passed through.
            It returns a tensor shaped like ``x_t``.
        scale: the analog-bit scale b (bits live in {−b, +b}); estimates are clipped to ``[−b, b]``.
        prediction: what the network predicts: ``"x0"`` (paper default), ``"eps"`` (x0 = (x_t − σ·ε)/α),
            ``"logistic"`` (the appendix's sigmoid output: x0 = (2·sigmoid(f) − 1)·b) or ``"energy"``: a scalar
            ``E_θ`` built from the network output ``f`` (see ``energy``) with ``ε̂ = ∇ₓE_θ`` by autograd (Du et al.
            2023; trained by double backprop), so the model has a level energy ``E_θ/σ_t``. (The absorbing-state
            categorical baseline is a class of its own: :class:`~bitcompose.diffusion.masked.MaskedDenoiser`.)
        energy: the energy's form for ``prediction="energy"`` (summed over non-batch dims; ``f`` the network output,
            ``α, σ`` of the time): ``"x0"``, ``E = ‖x_t − α·f‖²/(2σ)``, whose gradient gives the x0
            estimate ``f + J_fᵀ(x_t − α·f)`` (``f`` itself where the network is flat in ``x_t``; trained on the x0
            MSE, see docs/composition.md); ``"diff"``, ``E = ‖f − x_t‖²`` (ε-like: ε̂ = 2(f − x_t) + …), or
            ``"norm"``, ``E = ½‖f‖²`` (trained on the ε MSE); default ``"x0"`` (it denoises as well as the x0
            score model trained the same way; the ε forms do not, see docs/composition.md).
        self_condition: whether the network takes the previous x0 estimate as extra input channels.
        schedule: the continuous noise schedule (default: the paper's cosine γ).
        channel_dim: where ``x_t`` and the estimate are concatenated: 1 for images ``[B, C, H, W]``, −1 for
            sequences ``[B, L, num_bits]``.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        scale: float = 1.0,
        prediction: PredictionType = "x0",
        self_condition: bool = True,
        schedule: CosineSchedule | None = None,
        channel_dim: int = 1,
        energy: str = "x0",
    ) -> None:
        super().__init__()
        if prediction == "masked":
            raise ValueError(
                "the masked (absorbing-state) model is its own class: bitcompose.diffusion.masked.MaskedDenoiser"
            )
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
        if energy not in ENERGIES:
            raise ValueError(f"unknown energy {energy!r}; expected one of {ENERGIES}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.net = net
        self.scale = float(scale)
        self.prediction: PredictionType = prediction
        self.self_condition = bool(self_condition)
        self.schedule = schedule if schedule is not None else CosineSchedule()
        self.channel_dim = channel_dim
        self.energy_kind = energy

    def _check_time(self, x_t: Tensor, t: Tensor) -> Tensor:
        if t.ndim != 1 or t.shape[0] != x_t.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x_t.shape[0]}], got {tuple(t.shape)}")
        return t.to(device=x_t.device, dtype=torch.float32)

    def _input(self, x_t: Tensor, self_cond: Tensor | None) -> Tensor:
        if self.self_condition:
            if self_cond is None:
                self_cond = torch.zeros_like(x_t)
            elif self_cond.shape != x_t.shape:
                raise ValueError(
                    f"self_cond must have the shape of x_t {tuple(x_t.shape)}, got {tuple(self_cond.shape)}"
                )
            x_in = torch.cat([x_t, self_cond], dim=self.channel_dim)
        else:
            if self_cond is not None:
                raise ValueError("self_cond was given to a denoiser built with self_condition=False")
            x_in = x_t
        return x_in

    @property
    def loss_target(self) -> str:
        """What :func:`~bitcompose.diffusion.loss.diffusion_loss` regresses by default: ``"x0"`` (x0, logistic
        and the x0-form energy) or ``"eps"`` (ε and the ε-form energies ``diff``/``norm``)."""
        if self.prediction == "eps" or (self.prediction == "energy" and self.energy_kind != "x0"):
            return "eps"
        return "x0"

    @property
    def has_energy(self) -> bool:
        """Whether the denoiser is energy-parameterised."""
        return self.prediction == "energy"

    def energy(self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None) -> Tensor:
        """The network energy ``E_θ(x_t, t)`` ``[B]`` (``prediction="energy"``); differentiable w.r.t. ``x_t``."""
        if not self.has_energy:
            raise ValueError(f"a denoiser with prediction={self.prediction!r} has no energy")
        t = self._check_time(x_t, t)
        f = self.net(self._input(x_t, self_cond), self.schedule.gamma(t), cond)
        dtype = torch.promote_types(
            x_t.dtype, torch.float32
        )  # the energy in at least fp32 (also under autocast)
        f = f.to(dtype)
        x = x_t.to(dtype)
        if self.energy_kind == "x0":
            alpha, sigma = append_dims(self.schedule.alpha(t), x), append_dims(self.schedule.sigma(t), x)
            return ((x - alpha.to(dtype) * f).pow(2) / (2 * sigma.to(dtype))).flatten(1).sum(1)
        if self.energy_kind == "diff":
            return (f - x).pow(2).flatten(1).sum(1)
        return 0.5 * f.pow(2).flatten(1).sum(1)

    def energy_and_eps(
        self,
        x_t: Tensor,
        t: Tensor,
        self_cond: Tensor | None = None,
        cond: Any = None,
        *,
        create_graph: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """``(E_θ [B], ε̂ = ∇ₓE_θ [B, ...])`` from one forward and one backward pass; ``create_graph`` keeps the
        graph of ε̂ for training. Works under ``torch.no_grad()`` (autograd runs on a copy of ``x_t``)."""
        # double backprop (create_graph) needs the math attention kernel: the fused ones have no second derivative
        kernels = sdpa_kernel([SDPBackend.MATH]) if create_graph else nullcontext()
        with torch.enable_grad(), kernels:
            x = x_t.detach().requires_grad_(True)
            e = self.energy(x, t, self_cond, cond)
            (eps,) = torch.autograd.grad(e.sum(), x, create_graph=create_graph)
        if not create_graph:
            e, eps = e.detach(), eps.detach()
        return e, eps.to(x_t.dtype)

    def raw(self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None) -> Tensor:
        """The network's raw output for ``x_t`` ``[B, ...]`` at times ``t`` ``[B]``; same shape as ``x_t``
        (for ``prediction="energy"``, ``ε̂ = ∇ₓE_θ``, with its graph when training with grad enabled)."""
        if self.has_energy:
            training = self.training and torch.is_grad_enabled()
            return self.energy_and_eps(x_t, t, self_cond, cond, create_graph=training)[1]
        t = self._check_time(x_t, t)
        return self.net(self._input(x_t, self_cond), self.schedule.gamma(t), cond)

    def raw_with_logits(
        self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None
    ) -> tuple[Tensor, Tensor]:
        """``(raw output, head logits)`` of a network with a softmax head (``net.forward_with_logits``)."""
        t = self._check_time(x_t, t)
        forward = getattr(self.net, "forward_with_logits", None)
        if forward is None:
            raise ValueError(f"{type(self.net).__name__} has no softmax head logits (forward_with_logits)")
        out, logits = forward(self._input(x_t, self_cond), self.schedule.gamma(t), cond)
        return out, logits

    def prediction_of(self, out: Tensor, x_t: Tensor, t: Tensor) -> Prediction:
        """A raw network output ``[B, ...]`` as a :class:`~bitcompose.core.model.Prediction` (x0 or ε)."""
        alpha = append_dims(self.schedule.alpha(t), x_t)
        sigma = append_dims(self.schedule.sigma(t), x_t)
        if self.prediction in ("eps", "energy"):
            return Prediction("eps", out, x_t, alpha, sigma)
        if self.prediction == "logistic":
            out = (2.0 * torch.sigmoid(out) - 1.0) * self.scale
        return Prediction("x0", out, x_t, alpha, sigma)

    def output_to_x0(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Convert a raw network output ``[B, ...]`` to an (unclipped) x0 estimate of the same shape."""
        return self.prediction_of(out, x_t, t).x0

    def forward(self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None) -> Tensor:
        """The x0 estimate (not clipped) for ``x_t`` ``[B, ...]`` at times ``t`` ``[B]``; same shape as ``x_t``."""
        t = self._check_time(x_t, t)
        return self.output_to_x0(self.raw(x_t, t, self_cond, cond), x_t, t)
