"""The Bit Diffusion denoiser wrapper and its training objective.

:class:`BitDenoiser` owns the parameterisation: it turns any network ``net(x_in, gamma, cond)`` into the protocol
``denoiser(x_t, t, self_cond=None, cond=None) -> x0_hat`` used by the samplers, concatenating the self-conditioning
estimate to ``x_t`` and converting the network output to an x0 estimate.

:func:`diffusion_loss` is the paper's objective (Chen, Zhang & Hinton 2023, Eq. 2 and Alg. 1):
``x_t = √γ(t)·x0 + √(1−γ(t))·ε`` with ``t ~ U(0, 1)``, a stop-gradient self-conditioning first pass for a random half
of the batch, and a per-element MSE (or the appendix's logistic loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.schedules import CosineSchedule

__all__ = ["BitDenoiser", "LossOutput", "diffusion_loss", "PREDICTIONS"]

Prediction = Literal["x0", "eps", "logistic"]
PREDICTIONS: tuple[str, ...] = ("x0", "eps", "logistic")


class BitDenoiser(nn.Module):
    """Wraps a network into an x0-predicting denoiser over analog bits.

    Args:
        net: a module called as ``net(x_in, gamma, cond)``; ``x_in`` is ``x_t`` (shape ``[B, C, ...]``) concatenated
            with the self-conditioning estimate along ``channel_dim`` when ``self_condition`` is on, ``gamma`` is
            ``γ(t)`` of shape ``[B]`` (the official code conditions on γ, not t), ``cond`` is passed through.
            It returns a tensor shaped like ``x_t``.
        scale: the analog-bit scale b (bits live in {−b, +b}); estimates are clipped to ``[−b, b]``.
        prediction: what the network predicts: ``"x0"`` (paper default), ``"eps"`` (x0 = (x_t − σ·ε)/α) or
            ``"logistic"`` (the appendix's sigmoid output: x0 = (2·sigmoid(f) − 1)·b).
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
        prediction: Prediction = "x0",
        self_condition: bool = True,
        schedule: CosineSchedule | None = None,
        channel_dim: int = 1,
    ) -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.net = net
        self.scale = float(scale)
        self.prediction: Prediction = prediction
        self.self_condition = bool(self_condition)
        self.schedule = schedule if schedule is not None else CosineSchedule()
        self.channel_dim = channel_dim

    def _check_time(self, x_t: Tensor, t: Tensor) -> Tensor:
        if t.ndim != 1 or t.shape[0] != x_t.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x_t.shape[0]}], got {tuple(t.shape)}")
        return t.to(device=x_t.device, dtype=torch.float32)

    def raw(self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None) -> Tensor:
        """The network's raw output for ``x_t`` ``[B, ...]`` at times ``t`` ``[B]``; same shape as ``x_t``."""
        t = self._check_time(x_t, t)
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
        return self.net(x_in, self.schedule.gamma(t), cond)

    def output_to_x0(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Convert a raw network output ``[B, ...]`` to an (unclipped) x0 estimate of the same shape."""
        if self.prediction == "x0":
            return out
        if self.prediction == "logistic":
            return (2.0 * torch.sigmoid(out) - 1.0) * self.scale
        shape = (-1,) + (1,) * (x_t.ndim - 1)
        alpha = self.schedule.alpha(t).reshape(shape)
        sigma = self.schedule.sigma(t).reshape(shape)
        return (x_t - sigma * out) / alpha

    def forward(self, x_t: Tensor, t: Tensor, self_cond: Tensor | None = None, cond: Any = None) -> Tensor:
        """The x0 estimate (not clipped) for ``x_t`` ``[B, ...]`` at times ``t`` ``[B]``; same shape as ``x_t``."""
        t = self._check_time(x_t, t)
        return self.output_to_x0(self.raw(x_t, t, self_cond, cond), x_t, t)


@dataclass(frozen=True)
class LossOutput:
    """What :func:`diffusion_loss` returns.

    Attributes:
        loss: scalar training loss.
        t: ``[B]`` the sampled times.
        self_cond_mask: ``[B]`` bool, which examples got a first-pass self-conditioning estimate.
    """

    loss: Tensor
    t: Tensor
    self_cond_mask: Tensor


def _select(cond: Any, mask: Tensor) -> Any:
    """Rows of a batched conditioning (tensor, or dict/tuple of tensors) selected by a bool mask."""
    if cond is None:
        return None
    if isinstance(cond, Tensor):
        return cond[mask]
    if isinstance(cond, dict):
        return {k: _select(v, mask) for k, v in cond.items()}
    if isinstance(cond, (tuple, list)):
        return type(cond)(_select(v, mask) for v in cond)
    raise ValueError(f"cannot batch-select conditioning of type {type(cond).__name__}")


def diffusion_loss(
    denoiser: BitDenoiser,
    x0: Tensor,
    *,
    cond: Any = None,
    generator: torch.Generator | None = None,
    self_cond_prob: float = 0.5,
    cond_drop_prob: float = 0.0,
    loss_type: Literal["mse", "logistic"] | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    self_cond_mask: Tensor | None = None,
    cond_drop_mask: Tensor | None = None,
) -> LossOutput:
    """The Bit Diffusion training loss on a batch of analog bits.

    Each example independently (probability ``self_cond_prob``) gets a stop-gradient first-pass estimate of x0,
    clipped to ``[−b, b]``, as self-conditioning input; the others get zeros. With ``cond_drop_prob > 0`` class labels
    (an integer tensor ``[B]``) are replaced by ``−1`` (the null class) for classifier-free guidance.

    All randomness comes from ``generator``; ``t``, ``noise`` and the two masks may instead be given explicitly
    (e.g. by a distributed trainer that derives them from global example indices).

    Args:
        denoiser: the model.
        x0: ``[B, ...]`` clean analog bits in {−b, +b}.
        cond: conditioning passed to the network (labels ``[B]`` long, images, ...), or None.
        generator: source of all randomness.
        self_cond_prob: probability that an example gets a self-conditioning estimate.
        cond_drop_prob: probability that an example's label is dropped (labels only).
        loss_type: ``"mse"`` on the parameterisation's target (x0 or ε) or ``"logistic"`` (−log σ(f·x0/b), for
            ``prediction="logistic"``); default follows the denoiser's prediction.
        t: optional ``[B]`` times in [0, 1]. noise: optional ``[B, ...]``. self_cond_mask / cond_drop_mask:
            optional ``[B]`` bool.

    Returns:
        :class:`LossOutput` with the scalar loss (mean over all elements).
    """
    if x0.ndim < 2:
        raise ValueError(f"x0 must be batched, shape [B, ...], got {tuple(x0.shape)}")
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a float tensor of analog bits, got {x0.dtype}")
    if not (0.0 <= self_cond_prob <= 1.0 and 0.0 <= cond_drop_prob <= 1.0):
        raise ValueError("self_cond_prob and cond_drop_prob must lie in [0, 1]")
    if loss_type is None:
        loss_type = "logistic" if denoiser.prediction == "logistic" else "mse"
    if loss_type == "logistic" and denoiser.prediction != "logistic":
        raise ValueError("loss_type='logistic' needs a denoiser with prediction='logistic'")
    batch, device = x0.shape[0], x0.device

    if t is None:
        t = torch.rand(batch, generator=generator, device=device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    if self_cond_mask is None:
        self_cond_mask = torch.rand(batch, generator=generator, device=device) < self_cond_prob
    if cond_drop_prob > 0 or cond_drop_mask is not None:
        if not (isinstance(cond, Tensor) and not cond.is_floating_point() and cond.ndim == 1):
            raise ValueError("label dropout needs integer class labels of shape [B] as cond")
        if cond_drop_mask is None:
            cond_drop_mask = torch.rand(batch, generator=generator, device=device) < cond_drop_prob
        cond = torch.where(cond_drop_mask, torch.full_like(cond, -1), cond)

    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha = denoiser.schedule.alpha(t).reshape(shape).to(x0.dtype)
    sigma = denoiser.schedule.sigma(t).reshape(shape).to(x0.dtype)
    x_t = alpha * x0 + sigma * noise

    self_cond: Tensor | None = None
    if denoiser.self_condition:
        self_cond = torch.zeros_like(x_t)
        if bool(self_cond_mask.any()):
            with torch.no_grad():
                m = self_cond_mask
                est = denoiser(x_t[m], t[m], None, _select(cond, m))
                self_cond[m] = est.clamp(-denoiser.scale, denoiser.scale).to(x_t.dtype)
    else:
        self_cond_mask = torch.zeros_like(self_cond_mask)

    out = denoiser.raw(x_t, t, self_cond, cond)
    if loss_type == "logistic":
        # −log σ(f·x0/b), written with softplus for numerical stability.
        loss = F.softplus(-out * x0 / denoiser.scale).mean()
    elif denoiser.prediction == "eps":
        loss = F.mse_loss(out, noise)
    else:
        loss = F.mse_loss(denoiser.output_to_x0(out, x_t, t), x0)
    return LossOutput(loss=loss, t=t, self_cond_mask=self_cond_mask)
