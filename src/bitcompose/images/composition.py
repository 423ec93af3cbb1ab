"""Composition of a trained class-conditional image model with itself: class A AND class B (a product of the two
conditional models) and A NOT B (a negation), sampled by reverse diffusion and by annealed MCMC on the analog bits.

Every model is ``as_model(denoiser, cond=label)`` over the run's EMA weights; the composites are
:class:`~bitcompose.Product` and :class:`~bitcompose.Negation`, sampled on the model's 100-level grid by
:func:`~bitcompose.compose.composite_sampling.sample_composite`: ``reverse`` is ancestral reverse diffusion with the
composed score; ``hmc`` (and ``ula``, ``mala``, ``uhmc``) is the reverse step followed by ``K`` kernel steps at
every level of the noisier part of the grid (``min_level``, a fraction), with the step size ``c·σ_t``
proportional to the level's noise. The evaluation classifier (trained separately on the data) says which class
each sample looks like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bitcompose.compose import Negation, Product
from bitcompose.compose.composite_sampling import SAMPLERS, MCMCSettings, sample_composite
from bitcompose.core.model import DiffusionModel
from bitcompose.diffusion.as_model import as_model
from bitcompose.images.model import LoadedModel
from bitcompose.nets.classifier import ImageClassifier

__all__ = ["CompositionRow", "check_classes", "compose_classes"]

#: The composites' settings of :func:`compose_classes` unless given (2 HMC steps per level, step 0.1·σ_t).
CLASS_MCMC = MCMCSettings(steps_per_level=2, step=0.1)


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
    mcmc: MCMCSettings = CLASS_MCMC,
    seed: int = 0,
    classifier: ImageClassifier | None = None,
    progress: bool = False,
) -> list[CompositionRow]:
    """Sample class ``a``, class ``b``, ``a AND b`` and ``a NOT b`` with each sampler.

    Args:
        loaded: a class-conditional image model (``bitcompose.images.model.load_model``).
        a, b: the two class labels.
        samplers: for the composites: ``reverse`` and/or MCMC kernels (``ula``, ``mala``, ``uhmc``, ``hmc``).
        n: samples per row.
        alpha: the negation's strength (``q_a^{1+α}/q_b^α``).
        mcmc: steps per level, the step relative to the level's noise ``σ_t`` and ``min_level`` (a fraction of
            the grid; every slot has the same target here, so no SMC: ``resample_ess`` must be None).
        seed: sampling seed (each row uses it).
        classifier: scores the samples (share of each class among them) when given.
        progress: a progress bar per row (on stderr).
    """
    check_classes(loaded, a, b, samplers)
    if mcmc.resample_ess is not None:
        raise ValueError("composing classes samples without SMC: use MCMCSettings(resample_ess=None)")
    den = loaded.denoiser
    ma, mb = as_model(den, cond=a), as_model(den, cond=b)
    shape = (n, loaded.spec.channels * loaded.codec.num_bits, loaded.spec.image_size, loaded.spec.image_size)
    jobs: list[tuple[str, DiffusionModel, str]] = [(str(a), ma, "reverse"), (str(b), mb, "reverse")]
    for s in samplers:
        jobs.append((f"{a} AND {b} ({s})", Product(ma, mb), s))
    for s in samplers:
        jobs.append((f"{a} NOT {b} ({s})", Negation(ma, mb, alpha=alpha), s))
    rows = []
    with torch.no_grad():
        for name, model, sampler in jobs:
            bits, info = sample_composite(
                model, shape, sampler, mcmc, generator=torch.Generator().manual_seed(seed), progress=progress
            )
            images = loaded.codec.decode_images(bits).cpu()
            if classifier is not None:
                pred = classifier.predict(images)
                info["share_a"] = float((pred == a).double().mean())
                info["share_b"] = float((pred == b).double().mean())
            rows.append(CompositionRow(name, images, {"sampler": sampler, **info}))
    return rows
