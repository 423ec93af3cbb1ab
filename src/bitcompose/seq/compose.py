"""Composed property requests on a property-conditioned molecule model: reverse diffusion or annealed MCMC.

A request ``a_1 AND … AND [NOT] a_m`` (:func:`~bitcompose.seq.properties.parse_request`) is the Composable-Diffusion
conjunction of the model's conditionals (:class:`~bitcompose.compose.CFGConjunction`,
``ε̂ = ε_∅ + Σ_j w_j (ε_{a_j} − ε_∅)`` with ``w_j = −w`` for a NOT), sampled as the image experiments sample theirs
(:func:`~bitcompose.compose.composite_sampling.sample_composite`: reverse diffusion on the level grid, or annealed
ULA / MALA / U-HMC / HMC; the models are score models, so the Metropolis tests are the trapezoid ones). The decoded
molecules are scored by RDKit's own property functions: the share that is valid AND satisfies every term. With a
property guide (:mod:`bitcompose.seq.guide`) the terms are classifier-guidance factors ``p_φ(a_j | x_t)^{±w}`` on
the unconditional model instead.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch

from bitcompose.compose import CFGConjunction
from bitcompose.compose.composite_sampling import MCMCSettings, check_request, sample_composite
from bitcompose.compose.operators import ClassifierGuidance
from bitcompose.core.model import DiffusionModel
from bitcompose.diffusion import BitDenoiser
from bitcompose.diffusion.as_model import as_model
from bitcompose.seq.guide import PropertyGuide
from bitcompose.seq.model import SeqModel
from bitcompose.seq.properties import ATTRIBUTES, Request, property_values, satisfied
from bitcompose.seq.tokenizer import END
from bitcompose.seq.train import make_denoiser

__all__ = ["compose_molecules", "request_share"]


def request_share(smiles: list[str], request: Request) -> tuple[float, float]:
    """``(share, s.e.)`` of ``smiles`` that are valid and satisfy ``request``."""
    ok = satisfied(smiles, request)
    p = float(ok.double().mean())
    return p, math.sqrt(p * (1 - p) / len(smiles))


def _data_share(model: SeqModel, request: Request, m: int) -> dict[str, Any]:
    if m == 0:
        return {"data_share": None, "data_share_n": 0}
    from bitcompose.seq.data import load_sequences

    held_out = load_sequences(model.run.data, seed=model.run.seed).test[:m]
    return {"data_share": request_share(held_out, request)[0], "data_share_n": len(held_out)}


def compose_molecules(
    model: SeqModel,
    request: Request,
    n: int,
    *,
    sampler: str = "reverse",
    weight: float = 1.0,
    levels: int = 100,
    mcmc: MCMCSettings | None = None,
    generator: torch.Generator | None = None,
    guide: PropertyGuide | None = None,
    reference: int = 2000,
    progress: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """``n`` molecules of the composed ``request`` and the report ``{request, sampler, n, weight, levels, nfe,
    network_evaluations, seconds, acceptance, valid, satisfied, satisfied_se, term_shares, data_share,
    invalid_codes, ...}``; ``data_share`` is the share of ``reference`` held-out molecules of the run's data that
    satisfy the request (what a sampler that matches the data but ignores the request scores).

    Args:
        model: a bits model trained with ``condition="properties"``.
        request: the attributes to compose.
        n: molecules.
        sampler: ``reverse`` or an annealed-MCMC kernel (``ula``, ``mala``, ``uhmc``, ``hmc``).
        weight: the guidance weight ``w`` of every term (1: the plain product of the conditionals over ``p(x)``
            for one term).
        levels: levels of the annealing grid (reverse steps).
        mcmc: the MCMC settings (default :class:`MCMCSettings`).
        generator: the source of all noise (default seed 0).
        guide: classifier guidance instead of the product of conditionals: ``p(x)·Π_j p_φ(a_j | x_t)^{±w}`` with
            the noise-conditioned property predictor (:func:`~bitcompose.seq.guide.load_or_train_guide`); the model
            may then be unconditional (a conditional one is used with its null label).
        reference: held-out molecules for ``data_share`` (0: none).
        progress: a progress bar.

    Raises:
        ValueError: an unconditional model, an unknown sampler, ``n`` or ``levels`` below 1.
    """
    cfg = model.net_config
    if guide is None and (model.run.condition != "properties" or cfg.num_classes == 0):
        raise ValueError(
            "a product of conditionals needs a property-conditioned model (train it with --condition "
            "properties), or use classifier guidance (a property guide)"
        )
    if model.kind != "bits":
        raise ValueError("composition needs the bits model (the absorbing-state model has no score)")
    if n < 1 or levels < 1:
        raise ValueError(f"n and levels must be >= 1, got {n}, {levels}")
    mcmc = mcmc or MCMCSettings()
    check_request([sampler], "score", mcmc)
    den = make_denoiser(model.net, cfg)
    assert isinstance(den, BitDenoiser)  # the condition check admits only the bits model
    weights = [-weight if neg else weight for _, neg in request.terms]
    composite: DiffusionModel = as_model(den, cond=None, num_levels=levels)
    if guide is None:
        parts = [as_model(den, cond=torch.full((n,), a), num_levels=levels) for a, _ in request.terms]
        composite = CFGConjunction(composite, parts, weights)
    else:
        for (a, _), w in zip(request.terms, weights, strict=True):
            attr = ATTRIBUTES[a]
            within = a - next(i for i, b in enumerate(ATTRIBUTES) if b.prop == attr.prop)  # its bin's column
            composite = ClassifierGuidance(
                composite, partial(guide.property_logits, prop=attr.prop), within, w
            )
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    with torch.no_grad():
        bits, info = sample_composite(
            composite,
            (n, cfg.max_len, cfg.codec.num_bits),
            sampler,
            mcmc,
            generator=gen,
            resample_groups=torch.zeros(n, dtype=torch.long),  # one request: every sample has the same target
            progress=progress,
        )
    ids, invalid = cfg.codec.decode_sequence(bits, return_invalid=True)
    texts = model.tokenizer.decode(torch.where(invalid, torch.full_like(ids, END), ids))
    share, se = request_share(texts, request)
    valid = ~property_values(texts).isnan().any(dim=1)
    term_shares = {}
    for a, neg in request.terms:
        single = Request(((a, neg),))
        term_shares[single.text] = float(satisfied(texts, single).double().mean())
    report = {
        "request": request.text,
        "method": "product" if guide is None else "guidance",
        "sampler": f"smc-{sampler}" if (mcmc.resample_ess is not None and sampler != "reverse") else sampler,
        "n": n,
        "weight": weight,
        "levels": levels,
        **info,
        # denoiser passes: the null and each term's conditional (product), or the null alone plus the guide
        "network_evaluations": info["nfe"] * (len(request.terms) + 1 if guide is None else 1),
        "guide_evaluations": 0 if guide is None else info["nfe"] * len(request.terms),
        "valid": float(valid.double().mean()),
        "satisfied": share,
        "satisfied_se": se,
        "term_shares": term_shares,
        **_data_share(model, request, reference),
        "invalid_codes": float(invalid.double().mean()),
        "mcmc": None if sampler == "reverse" else vars(mcmc),
        "run": None if model.path is None else str(model.path),
    }
    return texts, report
