"""Noise schedules.

Two families share one small interface: ``gamma`` (ᾱ, the signal variance), ``alpha`` (√γ), ``sigma`` (√(1−γ)),
``log_snr`` (log γ/(1−γ)) and ``beta``.

* :class:`CosineSchedule` is the continuous-time schedule of Bit Diffusion (Chen et al. 2023, official
  ``cosine_schedule_simple``): ``γ(t) = cos²(((t + ns)/(1 + ds))·π/2)`` with ``ns = 2e-4``, ``ds = 2.5e-4`` and
  ``t ∈ [0, 1]``. Its methods take float times ``t``.
* :class:`DiscreteSchedule` is a T-step DDPM β schedule (linear, or the cosine of Nichol & Dhariwal with
  ``s = 0.008``), used by the composition side. Its methods take integer step indices ``i ∈ {0, …, T−1}``, where
  step ``i`` has ``ᾱ_i = Π_{j≤i} (1 − β_j)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CosineSchedule", "DiscreteSchedule"]


class CosineSchedule:
    """The paper's continuous cosine schedule ``γ(t) = cos²(((t + ns)/(1 + ds))·π/2)``.

    Args:
        ns: time shift (official value 2e-4), keeps γ(0) just below 1.
        ds: time scale (official value 2.5e-4), keeps γ(1) just above 0 so 1/√γ stays finite.
    """

    def __init__(self, ns: float = 2e-4, ds: float = 2.5e-4) -> None:
        if not (0 <= ns < 1 and ds > ns - 1e-12):
            raise ValueError(f"CosineSchedule needs 0 <= ns < 1 and ds >= ns, got ns={ns}, ds={ds}")
        self.ns = ns
        self.ds = ds

    def _angle(self, t: Tensor) -> Tensor:
        return (t + self.ns) / (1.0 + self.ds) * (math.pi / 2)

    def gamma(self, t: Tensor) -> Tensor:
        """Signal variance γ(t). ``t``: float tensor of any shape in [0, 1]; returns the same shape."""
        return torch.cos(self._angle(t)) ** 2

    def alpha(self, t: Tensor) -> Tensor:
        """Signal scale √γ(t), same shape as ``t``."""
        return self.gamma(t).sqrt()

    def sigma(self, t: Tensor) -> Tensor:
        """Noise scale √(1 − γ(t)), same shape as ``t``."""
        return (1.0 - self.gamma(t)).clamp_min(0.0).sqrt()

    def log_snr(self, t: Tensor) -> Tensor:
        """log(γ/(1 − γ)) = −2·log tan(angle), same shape as ``t``."""
        return -2.0 * torch.log(torch.tan(self._angle(t)))

    def beta(self, t: Tensor) -> Tensor:
        """Instantaneous noise rate β(t) = −d log γ / dt = π·tan(angle)/(1 + ds), same shape as ``t``."""
        return math.pi * torch.tan(self._angle(t)) / (1.0 + self.ds)

    def __repr__(self) -> str:
        return f"CosineSchedule(ns={self.ns}, ds={self.ds})"


class DiscreteSchedule:
    """A T-step DDPM schedule given by its β's.

    Args:
        betas: float tensor ``[T]`` with values in (0, 1).

    Attributes:
        betas: ``[T]``; alphas_cumprod (ᾱ): ``[T]``; num_steps: T.
    """

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.num_steps = int(betas.numel())

    @classmethod
    def linear(cls, num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteSchedule:
        """Ho et al. (2020) linear schedule, rescaled so that ``num_steps`` steps span the same noise range
        as 1000 steps would (β_start·1000/T to β_end·1000/T)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        scale = 1000.0 / num_steps
        return cls(torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> DiscreteSchedule:
        """Nichol & Dhariwal (2021) cosine schedule: ᾱ(u) = f(u)/f(0), f(u) = cos²((u + s)/(1 + s)·π/2),
        β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), max_beta)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(betas)

    def _index(self, i: Tensor | int) -> Tensor:
        idx = torch.as_tensor(i)
        if idx.is_floating_point():
            raise ValueError("DiscreteSchedule takes integer step indices, got a float tensor")
        if bool(((idx < 0) | (idx >= self.num_steps)).any()):
            raise ValueError(f"step index out of range [0, {self.num_steps})")
        return idx.long()

    def gamma(self, i: Tensor | int) -> Tensor:
        """ᾱ_i for integer step indices ``i`` (any shape); float64 tensor of the same shape."""
        return self.alphas_cumprod[self._index(i)]

    def alpha(self, i: Tensor | int) -> Tensor:
        """√ᾱ_i, same shape as ``i``."""
        return self.gamma(i).sqrt()

    def sigma(self, i: Tensor | int) -> Tensor:
        """√(1 − ᾱ_i), same shape as ``i``."""
        return (1.0 - self.gamma(i)).sqrt()

    def log_snr(self, i: Tensor | int) -> Tensor:
        """log(ᾱ_i/(1 − ᾱ_i)), same shape as ``i``."""
        g = self.gamma(i)
        return torch.log(g) - torch.log1p(-g)

    def beta(self, i: Tensor | int) -> Tensor:
        """β_i, same shape as ``i``."""
        return self.betas[self._index(i)]

    def __repr__(self) -> str:
        return f"DiscreteSchedule(num_steps={self.num_steps})"
