"""The Bit Diffusion training objective (Chen, Zhang & Hinton 2023, Eq. 2 and Alg. 1).

``x_t = √γ(t)·x0 + √(1−γ(t))·ε`` with ``t ~ U(0, 1)``, a stop-gradient self-conditioning first pass for a random
part of the batch, and a per-element MSE on the parameterisation's target (or the appendix's logistic loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from bitcompose.core.tensors import append_dims
from bitcompose.diffusion.denoiser import BitDenoiser

__all__ = ["LossDraws", "LossOutput", "diffusion_loss", "self_cond_input"]


@dataclass(frozen=True)
class LossDraws:
    """The random draws of one loss evaluation, given explicitly (a distributed trainer derives them from global
    example indices; a test fixes them); a field left ``None`` is drawn from the loss's generator.

    Attributes:
        t: ``[B]`` times in [0, 1].
        noise: ``[B, ...]`` the Gaussian noise, shaped like x0.
        self_cond_mask: ``[B]`` bool, the examples that get a first-pass self-conditioning estimate.
        cond_drop_mask: ``[B]`` bool, the examples whose label is dropped (classifier-free guidance).
    """

    t: Tensor | None = None
    noise: Tensor | None = None
    self_cond_mask: Tensor | None = None
    cond_drop_mask: Tensor | None = None


@dataclass(frozen=True)
class LossOutput:
    """What :func:`diffusion_loss` returns.

    Attributes:
        loss: scalar training loss.
        t: ``[B]`` the sampled times.
        self_cond_mask: ``[B]`` bool, which examples got a first-pass self-conditioning estimate.
        logits: the main pass's softmax-head logits (only with ``with_logits=True``), else ``None``.
    """

    loss: Tensor
    t: Tensor
    self_cond_mask: Tensor
    logits: Tensor | None = None


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
    target: Literal["x0", "eps"] | None = None,
    draws: LossDraws | None = None,
    with_logits: bool = False,
) -> LossOutput:
    """The Bit Diffusion training loss on a batch of analog bits.

    Each example independently (probability ``self_cond_prob``) gets a stop-gradient first-pass estimate of x0,
    clipped to ``[−b, b]``, as self-conditioning input; the others get zeros. With ``cond_drop_prob > 0`` class labels
    (an integer tensor ``[B]``) are replaced by ``−1`` (the null class) for classifier-free guidance.

    All randomness comes from ``generator``, except what ``draws`` gives explicitly.

    Args:
        denoiser: the model.
        x0: ``[B, ...]`` clean analog bits in {−b, +b}.
        cond: conditioning passed to the network (labels ``[B]`` long, images, ...), or None.
        generator: source of all randomness.
        self_cond_prob: probability that an example gets a self-conditioning estimate.
        cond_drop_prob: probability that an example's label is dropped (labels only).
        loss_type: ``"mse"`` on the parameterisation's target (x0 or ε) or ``"logistic"`` (−log σ(f·x0/b), for
            ``prediction="logistic"``); default follows the denoiser's prediction.
        target: what the MSE regresses: the x0 estimate on x0, or the ε estimate on the noise (their errors
            differ by the weight α²/σ² per level); default :attr:`BitDenoiser.loss_target`.
        draws: the times, noise and masks to use instead of drawing them (:class:`LossDraws`).
        with_logits: also return the main pass's softmax-head logits (for an auxiliary cross-entropy).

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
    t, noise, self_cond_mask, cond_drop_mask = _draw(draws or LossDraws(), x0, generator, self_cond_prob)
    if cond_drop_prob > 0 or cond_drop_mask is not None:
        cond = _drop_labels(cond, cond_drop_prob, cond_drop_mask, generator, x0.device)

    alpha = append_dims(denoiser.schedule.alpha(t), x0)
    sigma = append_dims(denoiser.schedule.sigma(t), x0)
    x_t = alpha * x0 + sigma * noise
    self_cond = self_cond_input(denoiser, x_t, t, cond, self_cond_mask)
    if not denoiser.self_condition:
        self_cond_mask = torch.zeros_like(self_cond_mask)

    logits: Tensor | None = None
    if with_logits:
        out, logits = denoiser.raw_with_logits(x_t, t, self_cond, cond)
    else:
        out = denoiser.raw(x_t, t, self_cond, cond)
    if loss_type == "logistic":
        # −log σ(f·x0/b), written with softplus for numerical stability.
        loss = F.softplus(-out * x0 / denoiser.scale).mean()
    elif (target or denoiser.loss_target) == "eps":
        loss = F.mse_loss(denoiser.prediction_of(out, x_t, t).eps, noise)
    else:
        loss = F.mse_loss(denoiser.output_to_x0(out, x_t, t), x0)
    return LossOutput(loss=loss, t=t, self_cond_mask=self_cond_mask, logits=logits)


def _draw(
    draws: LossDraws, x0: Tensor, generator: torch.Generator | None, self_cond_prob: float
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(t [B], noise [B, ...], self_cond_mask [B], cond_drop_mask [B] or None)``: the given draws, the missing
    ones from ``generator`` (in this order: t, noise, the self-conditioning mask)."""
    batch, device = x0.shape[0], x0.device
    t = torch.rand(batch, generator=generator, device=device) if draws.t is None else draws.t
    noise = draws.noise
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
    mask = draws.self_cond_mask
    if mask is None:
        mask = torch.rand(batch, generator=generator, device=device) < self_cond_prob
    return t, noise, mask, draws.cond_drop_mask


def _drop_labels(
    cond: Any, prob: float, mask: Tensor | None, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Class labels ``[B]`` with those of ``mask`` (default: each with probability ``prob``) replaced by the null
    class ``−1``."""
    if not (isinstance(cond, Tensor) and not cond.is_floating_point() and cond.ndim == 1):
        raise ValueError("label dropout needs integer class labels of shape [B] as cond")
    if mask is None:
        mask = torch.rand(cond.shape[0], generator=generator, device=device) < prob
    return torch.where(mask, torch.full_like(cond, -1), cond)


def self_cond_input(denoiser: BitDenoiser, x_t: Tensor, t: Tensor, cond: Any, mask: Tensor) -> Tensor | None:
    """The self-conditioning input ``[B, ...]``: a stop-gradient x0 estimate clipped to ``[−b, b]`` for the
    examples of ``mask``, zeros for the others (``None`` for a denoiser without self-conditioning)."""
    if not denoiser.self_condition:
        return None
    self_cond = torch.zeros_like(x_t)
    if bool(mask.any()):
        with torch.no_grad():
            est = denoiser(x_t[mask], t[mask], None, _select(cond, mask))
            self_cond[mask] = est.clamp(-denoiser.scale, denoiser.scale).to(x_t.dtype)
    return self_cond
