"""How Bit Diffusion's samplers step: :class:`SamplingOptions`, the one options object of
:func:`~bitcompose.diffusion.samplers.sample_model` (the time grid says where the steps go, the model what is
sampled)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bitcompose.core.names import DIFFUSION_SAMPLERS
from bitcompose.core.precision import PRECISIONS

__all__ = ["DDPM_VARIANCES", "SAMPLERS", "SELF_GUIDANCE_FORMS", "SamplingOptions"]

SAMPLERS: tuple[str, ...] = DIFFUSION_SAMPLERS
#: The two conventions of Appendix G's self-guidance (see :class:`SamplingOptions`).
SELF_GUIDANCE_FORMS: tuple[str, ...] = ("cfg", "scale")
DDPM_VARIANCES: tuple[str, ...] = ("large", "small")


@dataclass(frozen=True)
class SamplingOptions:
    """The settings of a DDIM, DDPM or DPM-Solver++(2M) run, each checked with a one-line ``ValueError``.

    Attributes:
        sampler: ``"ddim"`` (η = 0, deterministic), ``"ddpm"`` (ancestral) or ``"dpmpp2m"`` (second-order
            multistep, deterministic; for few steps).
        ddpm_variance: ``"large"`` (σ² = 1 − α, the paper's default) or ``"small"`` (the posterior variance).
        self_condition: feed the previous clipped estimate back (only to self-conditioned models).
        precision: ``fp32``, ``bf16`` or ``auto`` (:mod:`bitcompose.core.precision`): autocast of the model
            evaluations only; the state, the coefficients and the x0 estimates stay fp32.
        momentum: Appendix G's momentum estimate ``m ∈ [0, 1)`` (0: the default sampler; self-conditioned
            models only).
        self_guidance: Appendix G's self-guidance weight ``w ≥ 0`` (0: off, else two passes per step;
            self-conditioned models only; the paper: 3–5).
        self_guidance_form: how the self-conditioned estimate ``x̂`` and the blind one ``x̂∅`` (zero input) combine,
            in the two conventions of classifier-free guidance: ``"cfg"`` ``x̂ + w·(x̂ − x̂∅)`` (Ho & Salimans; w = 0
            is no guidance) or ``"scale"`` ``x̂∅ + w·(x̂ − x̂∅)`` (the guidance-scale convention; w = 1 is none).
            The paper says only "similar to classifier-free guidance".
    """

    sampler: str = "ddim"
    ddpm_variance: str = "large"
    self_condition: bool = True
    precision: str = "fp32"
    momentum: float = 0.0
    self_guidance: float = 0.0
    self_guidance_form: str = "cfg"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; expected one of {SAMPLERS}")
        if self.ddpm_variance not in DDPM_VARIANCES:
            raise ValueError(f"ddpm_variance must be 'large' or 'small', got {self.ddpm_variance!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if not (self.self_guidance >= 0.0 and math.isfinite(self.self_guidance)):
            raise ValueError(f"self_guidance must be finite and >= 0, got {self.self_guidance}")
        if self.self_guidance_form not in SELF_GUIDANCE_FORMS:
            raise ValueError(
                f"self_guidance_form must be one of {', '.join(SELF_GUIDANCE_FORMS)}, got {self.self_guidance_form!r}"
            )
