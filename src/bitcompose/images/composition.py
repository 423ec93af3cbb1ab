"""Composition of a trained class-conditional image model with itself: class A AND class B (a product of the two
conditional models) and A NOT B (a negation), sampled by reverse diffusion and by annealed MCMC on the analog bits.

Every model is ``as_model(denoiser, cond=label)`` over the run's EMA weights; the composites are
:class:`~bitcompose.Product` and :class:`~bitcompose.Negation`. The samplers run on the model's 100-level grid:
``reverse`` is ancestral reverse diffusion with the composed score; ``hmc`` (and ``ula``, ``mala``, ``uhmc``) is
the reverse step followed by ``K`` kernel steps at every level above ``mcmc_min_level`` (the paper's image
driver), with the step size ``c·σ_t`` proportional to the level's noise. The score-only models get Metropolis
corrections by the trapezoid rule. The evaluation classifier (trained separately on the data) says which class
each sample looks like.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bitcompose.compose import MCMCOptions, Negation, Product, annealed_mcmc, reverse_diffusion
from bitcompose.compose.kernels import noise_scaled_kernel
from bitcompose.core.model import DiffusionModel
from bitcompose.diffusion.as_model import as_model
from bitcompose.images.model import LoadedModel
from bitcompose.nets.classifier import ImageClassifier

__all__ = [
    "CompositionRow",
    "MCMCSettings",
    "SAMPLERS",
    "check_classes",
    "check_request",
    "compose_classes",
    "sample_composite",
]

SAMPLERS = ("reverse", "ula", "mala", "uhmc", "hmc")


@dataclass
class CompositionRow:
    """One row of the composition grid.

    Attributes:
        name: what was sampled (``"3"``, ``"3 AND 8 (hmc)"``, ...).
        images: integer images ``[n, C, H, W]``.
        metrics: NFE, seconds, acceptance, and the classifier's share of each class among the samples.
    """

    name: str
    images: Tensor
    metrics: dict[str, Any]


@dataclass(frozen=True)
class MCMCSettings:
    """How the MCMC samplers run (the reverse sampler ignores it).

    Attributes:
        steps_per_level: kernel steps after each reverse step.
        step: the kernel's step relative to the level's noise ``σ_t`` (leapfrog ``ε``; Langevin ``√η``).
        mcmc_min_level: MCMC only at levels ``≥`` this, in hundredths of the grid (the paper's CLEVR code: the noisier half).
        resample_ess: SMC instead: anneal from noise with resampling below this ESS fraction (energies only).
    """

    steps_per_level: int = 1
    step: float = 0.2
    mcmc_min_level: int = 50
    resample_ess: float | None = None


def check_request(samplers: Sequence[str], param: str, mcmc: MCMCSettings) -> None:
    """Refuse, before any model is loaded or trained, samplers and settings that cannot run with ``param``."""
    for s in samplers:
        if s not in SAMPLERS:
            raise ValueError(f"unknown sampler {s!r}; choose from {', '.join(SAMPLERS)}")
    if mcmc.resample_ess is not None and param != "energy":
        raise ValueError("SMC resampling needs energies: use an energy-parameterised model (--param energy)")


def sample_composite(
    model: DiffusionModel,
    shape: tuple[int, ...],
    sampler: str,
    *,
    steps_per_level: int,
    step: float,
    mcmc_min_level: int,
    generator: torch.Generator,
    resample_ess: float | None = None,
    resample_groups: Tensor | None = None,
    progress: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """Samples of a composite and ``{nfe, seconds, acceptance, rejected_nonfinite}``.

    ``reverse``: ancestral reverse diffusion. An MCMC kernel: the reverse step followed by ``steps_per_level``
    kernel steps (step ``step·σ_t``) at every level ``≥ mcmc_min_level``; with ``resample_ess`` instead pure
    annealing from noise with SMC resampling (energies needed) and the final step to the data. SMC needs
    ``resample_groups`` (integer ``[n]``, the target of each sample: equal values for samples with the same
    conditions; zeros when every sample has the same target): a particle is resampled only among its group, so it
    never lands in a slot that asks for another condition.
    """
    if resample_ess is not None and sampler != "reverse" and resample_groups is None:
        raise ValueError(
            "SMC needs each sample's condition (resample_groups) to resample only within a target"
        )
    start = time.perf_counter()
    if sampler == "reverse":
        res = reverse_diffusion(model, shape, generator=generator, progress=progress)
    else:
        grid = model.grid()
        smc = resample_ess is not None
        options = MCMCOptions(
            noise_scaled_kernel(sampler, grid, step),
            steps_per_level=steps_per_level,
            driver="anneal" if smc else "reverse",
            min_level=0.0 if smc else mcmc_min_level / len(grid),
            resample_ess=resample_ess,
            final_step=smc,
        )
        groups = resample_groups if smc else None
        res = annealed_mcmc(
            model, shape, grid, options, resample_groups=groups, generator=generator, progress=progress
        )
    acc = None
    if res.acceptance is not None and bool(torch.isfinite(res.acceptance).any()):
        acc = float(res.acceptance[torch.isfinite(res.acceptance)].mean())
    info = {
        "nfe": res.nfe,
        "seconds": round(time.perf_counter() - start, 2),
        "acceptance": acc,
        "rejected_nonfinite": res.rejected_nonfinite,
        "resampled": res.resampled,
    }
    return res.samples, info


def check_classes(loaded: LoadedModel, a: int, b: int, samplers: Sequence[str]) -> None:
    """Refuse (``ValueError``) what :func:`compose_classes` cannot do, before any work."""
    classes = loaded.spec.num_classes
    if classes < 2:
        raise ValueError("composing classes needs a class-conditional model")
    for label in (a, b):
        if not 0 <= label < classes:
            raise ValueError(f"class labels must lie in 0..{classes - 1}, got {label}")
    if a == b:
        raise ValueError("choose two different classes")
    for s in samplers:
        if s not in SAMPLERS:
            raise ValueError(f"unknown sampler {s!r}; choose from {SAMPLERS}")


def compose_classes(
    loaded: LoadedModel,
    a: int,
    b: int,
    *,
    samplers: tuple[str, ...] = ("reverse", "hmc"),
    n: int = 10,
    alpha: float = 0.5,
    steps_per_level: int = 2,
    step: float = 0.1,
    mcmc_min_level: int = 50,
    seed: int = 0,
    classifier: ImageClassifier | None = None,
) -> list[CompositionRow]:
    """Sample class ``a``, class ``b``, ``a AND b`` and ``a NOT b`` with each sampler.

    Args:
        loaded: a class-conditional image model (``bitcompose.images.model.load_model``).
        a, b: the two class labels.
        samplers: for the composites: ``reverse`` and/or MCMC kernels (``ula``, ``mala``, ``uhmc``, ``hmc``).
        n: samples per row.
        alpha: the negation's strength (``q_a^{1+α}/q_b^α``).
        steps_per_level: MCMC steps per level.
        step: the step size relative to the level's noise ``σ_t``.
        mcmc_min_level: MCMC only at levels ``≥`` this (of 100).
        seed: sampling seed (each row uses it).
        classifier: scores the samples (share of each class among them) when given.
    """
    check_classes(loaded, a, b, samplers)
    den = loaded.denoiser
    ma, mb = as_model(den, cond=a), as_model(den, cond=b)
    shape = (n, loaded.spec.channels * loaded.codec.num_bits, loaded.spec.image_size, loaded.spec.image_size)
    # Every slot has the same target here (scalar labels a and b): SMC, if it ran, would need no groups
    # (resample_groups = zeros); it does not run here.
    jobs: list[tuple[str, DiffusionModel, str]] = [(str(a), ma, "reverse"), (str(b), mb, "reverse")]
    for s in samplers:
        jobs.append((f"{a} AND {b} ({s})", Product(ma, mb), s))
    for s in samplers:
        jobs.append((f"{a} NOT {b} ({s})", Negation(ma, mb, alpha=alpha), s))
    rows = []
    with torch.no_grad():
        for name, model, sampler in jobs:
            bits, info = sample_composite(
                model,
                shape,
                sampler,
                steps_per_level=steps_per_level,
                step=step,
                mcmc_min_level=mcmc_min_level,
                generator=torch.Generator().manual_seed(seed),
            )
            images = loaded.codec.decode_images(bits).cpu()
            if classifier is not None:
                pred = classifier.predict(images)
                info["share_a"] = float((pred == a).double().mean())
                info["share_b"] = float((pred == b).double().mean())
            rows.append(CompositionRow(name, images, {"sampler": sampler, **info}))
    return rows
