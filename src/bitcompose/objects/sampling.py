"""Sampling the CFG conjunctions of the objects experiment: per-sample conditions, reverse diffusion or MCMC."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from bitcompose.compose import CFGConjunction
from bitcompose.compose.composite_sampling import MCMCSettings, check_request, sample_composite
from bitcompose.diffusion.as_model import as_model
from bitcompose.images.model import LoadedModel

__all__ = ["check_request", "MCMCSettings", "condition_groups", "conjunction", "sample_conjunction"]


def conjunction(
    loaded: LoadedModel, conds: Tensor, weights: float | Sequence[float], levels: int = 100
) -> CFGConjunction:
    """The CFG conjunction ``ε_u + Σ_j w_j (ε_{c_j} − ε_u)`` of the unconditional model (the null condition) and
    one conditional model per column of ``conds`` (``long [n, m]``: one condition per sample and column), on a grid
    of ``levels`` levels. A negative weight asks for the absence of its condition (Composable Diffusion's NOT)."""
    den = loaded.denoiser
    parts = [as_model(den, cond=conds[:, j], num_levels=levels) for j in range(conds.shape[1])]
    return CFGConjunction(as_model(den, cond=None, num_levels=levels), parts, weights)


def condition_groups(conds: Tensor, weights: float | Sequence[float]) -> Tensor:
    """``long [n]``: one group per distinct target of :func:`conjunction`, for SMC resampling within a target.

    Samples whose rows of ``conds`` (``long [n, m]``) are equal share a group; when every weight is the same the
    conjunction does not depend on the order of the columns, so rows holding the same conditions in another order
    share it too. Every sample asking for the same conditions (a prompt row) gives a single group.
    """
    w = [float(weights)] * conds.shape[1] if isinstance(weights, int | float) else [float(v) for v in weights]
    rows = conds.sort(dim=1).values if len(set(w)) <= 1 else conds
    return torch.unique(rows, dim=0, return_inverse=True)[1]


def sample_conjunction(
    loaded: LoadedModel,
    conds: Tensor,
    weights: float | Sequence[float],
    sampler: str,
    mcmc: MCMCSettings,
    generator: torch.Generator,
    progress: bool = True,
    levels: int = 100,
) -> tuple[Tensor, dict[str, Any]]:
    """Samples ``long [n, C, H, W]`` of :func:`conjunction` (on ``levels`` levels) and ``{sampler, levels, nfe,
    network_evaluations, seconds, acceptance, ...}``; ``nfe`` counts evaluations of the composite,
    ``network_evaluations`` those of the U-Net (``nfe·(m+1)``)."""
    check_request([sampler], "energy" if loaded.denoiser.has_energy else "score", mcmc)
    n = conds.shape[0]
    spec = loaded.spec
    shape = (n, spec.channels * loaded.codec.num_bits, spec.image_size, spec.image_size)
    bits, info = sample_composite(
        conjunction(loaded, conds, weights, levels),
        shape,
        sampler,
        mcmc,
        generator=generator,
        resample_groups=condition_groups(conds, weights),
        progress=progress,
    )
    smc = mcmc.resample_ess is not None and sampler != "reverse"
    report = {
        "sampler": f"smc-{sampler}" if smc else sampler,
        "levels": levels,
        **info,
        "network_evaluations": info["nfe"] * (conds.shape[1] + 1),
        "mcmc": None if sampler == "reverse" else vars(mcmc),
    }
    return loaded.codec.decode_images(bits).cpu(), report
