"""Absorbing-state (masked) discrete diffusion over categorical symbols: the categorical baseline beside Bit
Diffusion (D3PM-absorbing, Austin et al. 2021, in the continuous-time form of MDLM, Sahoo et al. 2024).

Forward process: each symbol is replaced by the mask state independently with probability ``t`` (the linear
schedule ``α_t = 1 − t``). The network sees the one-hot code of the symbols (``BitCodec(K, "onehot")``: ``+b`` at
the value, ``−b`` elsewhere) with a masked symbol written as all zeros, at time input ``γ(t)`` of the denoiser's
schedule (a monotone relabelling of ``t``), and returns ``K`` logits per symbol in the same layout.

Loss: the continuous-time ELBO with carry-over of unmasked symbols,
``E_t [ (1/t) Σ_{i masked} −log p_θ(x0_i | x_t) ] / (number of symbols)`` (nats per symbol; the 1/t weight is
the ELBO's ``−α'_t / (1 − α_t)``).

Sampling (ancestral, one network evaluation per step on the grid ``t_k = 1 − k/steps``): from ``t`` to
``s < t`` every masked symbol is revealed with probability ``(t − s)/t``, its value drawn from ``p_θ(· | x_t)``
(drawn only for the symbols revealed in that step); revealed symbols never change. The last step (``s = 0``)
reveals all.

Layout: images ``[B, C·K, H, W]`` (the ``K`` channels of image channel ``c`` contiguous, as the codec lays them
out); the symbols are ``[B, C, H, W]``.

The model is :class:`MaskedDenoiser`, a class of its own: it has no x0 estimate, no self-conditioning and no
energy, so it is not a :class:`~bitcompose.diffusion.denoiser.BitDenoiser` and no continuous sampler accepts it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from bitcompose.core.precision import autocast
from bitcompose.core.schedules import CosineSchedule

__all__ = [
    "MIN_TIME",
    "MaskedDenoiser",
    "mask_inputs",
    "masked_loss",
    "masked_sample",
    "normal_to_uniform",
]

#: Smallest training time: the ELBO weight 1/t is capped at 1000.
MIN_TIME = 1e-3


def _groups(x: Tensor, num_values: int) -> Tensor:
    """``[B, C·K, H, W]`` → ``[B, C, K, H, W]``."""
    b, ck, *rest = x.shape
    if ck % num_values:
        raise ValueError(f"{ck} channels are not a multiple of num_values={num_values}")
    return x.reshape(b, ck // num_values, num_values, *rest)


def normal_to_uniform(z: Tensor) -> Tensor:
    """Standard normal draws → uniform draws on (0, 1) (the normal CDF), element by element."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def mask_inputs(x0: Tensor, masked: Tensor, num_values: int) -> Tensor:
    """One-hot codes ``x0`` ``[B, C·K, H, W]`` with the symbols where ``masked`` ``[B, C, H, W]`` (bool) zeroed."""
    codes = _groups(x0, num_values)
    return (codes * (~masked).unsqueeze(2).to(codes.dtype)).reshape(x0.shape)


class MaskedDenoiser(nn.Module):
    """A network giving ``K`` logits per symbol for partly masked one-hot codes: the absorbing-state model.

    Args:
        net: a module called as ``net(x_t, gamma, cond)`` with ``x_t`` ``[B, C·K, H, W]`` (masked symbols all
            zeros) and ``gamma = γ(t)`` ``[B]`` of ``schedule`` (a monotone relabelling of the mask rate ``t``);
            it returns the logits in the same layout.
        num_values: ``K``, the symbol values.
        scale: the one-hot code's ``b`` (``+b`` at the value, ``−b`` elsewhere), as the codec writes it.
        schedule: gives the network's time input (default the paper's cosine γ, as for the bit models).

    Attributes:
        has_energy, self_condition: both false (the experiment code asks every image model).
    """

    has_energy = False
    self_condition = False

    def __init__(
        self, net: nn.Module, *, num_values: int, scale: float = 1.0, schedule: CosineSchedule | None = None
    ) -> None:
        super().__init__()
        if not isinstance(num_values, int) or num_values < 2:
            raise ValueError(f"num_values must be an integer >= 2, got {num_values!r}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.net = net
        self.num_values = num_values
        self.scale = float(scale)
        self.schedule = schedule if schedule is not None else CosineSchedule()

    def logits(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """The logits ``[B, C, K, H, W]`` (fp32) for the partly masked codes ``x_t`` ``[B, C·K, H, W]`` at mask
        rates ``t`` ``[B]``."""
        if t.ndim != 1 or t.shape[0] != x_t.shape[0]:
            raise ValueError(f"t must have shape [B] = [{x_t.shape[0]}], got {tuple(t.shape)}")
        gamma = self.schedule.gamma(t.to(device=x_t.device, dtype=torch.float32))
        return _groups(self.net(x_t, gamma, cond), self.num_values).float()

    def forward(self, x_t: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        """Same as :meth:`logits`."""
        return self.logits(x_t, t, cond)


def masked_loss(
    denoiser: MaskedDenoiser,
    x0: Tensor,
    *,
    t: Tensor,
    uniforms: Tensor,
    cond: Any = None,
) -> Tensor:
    """The absorbing-state ELBO of a batch (scalar, nats per symbol).

    Args:
        denoiser: the absorbing-state model.
        x0: ``[B, C·K, H, W]`` one-hot codes of the clean symbols.
        t: ``[B]`` times in [0, 1] (raised to :data:`MIN_TIME`); a symbol is masked with probability ``t``.
        uniforms: ``[B, C, H, W]`` uniform draws; symbol ``i`` is masked where ``uniforms_i < t``.
        cond: class labels ``[B]`` or None.
    """
    num_values = denoiser.num_values
    t = t.clamp_min(MIN_TIME)
    masked = uniforms < t.view(-1, *([1] * (uniforms.ndim - 1)))
    logits = denoiser.logits(mask_inputs(x0, masked, num_values), t, cond)
    target = _groups(x0, num_values).argmax(dim=2)
    nll = torch.nn.functional.cross_entropy(logits.movedim(2, 1), target, reduction="none")  # [B, C, H, W]
    weight = masked.float() / t.view(-1, *([1] * (nll.ndim - 1)))
    return (nll * weight).mean()


@torch.no_grad()
def masked_sample(
    denoiser: MaskedDenoiser,
    shape: tuple[int, ...],
    *,
    steps: int,
    cond: Any = None,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
    device: torch.device | str | None = None,
) -> Tensor:
    """Ancestral sampling of the absorbing-state model: ``steps`` network evaluations.

    Args:
        denoiser: the absorbing-state model.
        shape: ``[B, C·K, H, W]`` of the codes.
        steps: number of steps (= network evaluations).
        cond: class labels ``[B]`` or None.
        generator: the source of all randomness.
        precision: ``fp32`` or ``bf16`` (autocast of the network).
        device: where to sample.

    Returns:
        ``[B, C·K, H, W]`` one-hot codes (``±b``, :class:`~bitcompose.core.bits.BitCodec` ``"onehot"`` decodes
        them); no symbol is left masked.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    num_values = denoiser.num_values
    b, ck, *rest = shape
    c = ck // num_values
    if c * num_values != ck:
        raise ValueError(f"{ck} channels are not a multiple of num_values={num_values}")
    scale = denoiser.scale
    symbols = torch.zeros((b, c, *rest), dtype=torch.long, device=device)
    masked = torch.ones((b, c, *rest), dtype=torch.bool, device=device)
    # the network input, kept up to date: ±b codes of the revealed symbols, zeros where masked
    codes = torch.zeros((b, c, *rest, num_values), device=device)
    for k in range(steps):
        t, s = 1.0 - k / steps, 1.0 - (k + 1) / steps
        x_t = codes.movedim(-1, 2).reshape(shape)
        with autocast(precision, x_t.device):
            logits = denoiser.logits(x_t, torch.full((b,), t, device=x_t.device), cond)
        reveal = masked & (torch.rand(symbols.shape, generator=generator, device=x_t.device) < (t - s) / t)
        if bool(reveal.any()):  # categories are drawn only for the symbols revealed now
            chosen = logits.movedim(2, -1)[reveal]  # [R, K]
            drawn = torch.multinomial(chosen.softmax(-1), 1, generator=generator).squeeze(1)
            symbols = symbols.masked_scatter(reveal, drawn)
            codes[reveal] = torch.nn.functional.one_hot(drawn, num_values).float() * (2 * scale) - scale
        masked = masked & ~reveal
    onehot = torch.nn.functional.one_hot(symbols, num_values).movedim(-1, 2).float() * (2 * scale) - scale
    return onehot.reshape(shape)
