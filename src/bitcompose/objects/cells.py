"""One cell of the objects experiment: place ``k`` objects by composing ``k`` position-conditioned models.

Each sample asks for ``k`` distinct grid cells (drawn uniformly, per sample, from the cell's seed). Its model is the
consistent CFG conjunction ``ε̂ = ε_u + Σ_j w (ε_{c_j} − ε_u)`` of the unconditional model (the null condition) and
the ``k`` conditional ones (``w = 4`` as in the paper's CLEVR code), sampled by reverse diffusion or by reverse steps
plus MCMC on the noisier levels (:mod:`bitcompose.objects.sampling`). A sample scores 1 when the evaluator finds an
object in every requested cell.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bitcompose.core.names import OBJECTS_WEIGHT
from bitcompose.data.objects import NUM_CELLS
from bitcompose.experiments.runner import CellResult
from bitcompose.nets.classifier import ImageClassifier
from bitcompose.objects.evaluator import load_or_train_evaluator, presence
from bitcompose.objects.models import PARAMS, load_or_train, test_scenes
from bitcompose.objects.sampling import MCMCSettings, check_request, sample_conjunction

__all__ = ["requested_cells", "all_present", "accuracy", "objects_cell", "yardsticks"]

MAX_K = 5


def requested_cells(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``long [n, k]``: ``k`` distinct cells per sample, uniformly at random."""
    if not 1 <= k <= NUM_CELLS:
        raise ValueError(f"k must lie in 1..{NUM_CELLS}, got {k}")
    return torch.rand(n, NUM_CELLS, generator=generator).argsort(dim=1)[:, :k]


def all_present(evaluator: ImageClassifier, images: Tensor, cells: Tensor) -> Tensor:
    """``bool [n]``: the evaluator finds an object in every requested cell (``cells`` ``long [n, k]``)."""
    found = presence(evaluator, images)[:, :NUM_CELLS]
    return found.gather(1, cells).all(1)


def accuracy(success: Tensor) -> tuple[float, float]:
    """The share of successes and its standard error ``√(p(1−p)/n)``."""
    n = int(success.numel())
    p = float(success.double().mean())
    return p, math.sqrt(p * (1 - p) / n)


def objects_cell(
    k: int,
    sampler: str,
    *,
    param: str = "score",
    n: int = 300,
    seed: int = 0,
    weight: float = OBJECTS_WEIGHT,
    mcmc: MCMCSettings | None = None,
    levels: int = 100,
    train_steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> CellResult:
    """Sample ``n`` images each asked for ``k`` objects at random cells and score them.

    Args:
        k: objects per image (1–5).
        sampler: ``reverse``, ``ula``, ``mala``, ``uhmc`` or ``hmc``.
        param: ``score`` (x0-predicting U-Net; trapezoid Metropolis corrections) or ``energy`` (exact ones).
        n: samples.
        seed: draws the requested cells and the sampler's noise.
        weight: the guidance weight ``w`` of every condition.
        mcmc: the MCMC settings (default :class:`~bitcompose.objects.sampling.MCMCSettings`).
        levels: levels of the annealing grid (100; more for reverse diffusion at an MCMC sampler's cost).
        train_steps: training steps of the model (default: the preset's).
        cache: the cache root of the models and the evaluator.
        progress: progress bars.

    Returns:
        the report (``k, sampler, param, n, accuracy, accuracy_se, nfe, seconds`` and more) and the tensors
        ``images`` ``long [n, 3, 16, 16]``, ``cells`` ``long [n, k]`` (the requested cells) and ``success``
        ``bool [n]`` (every requested cell holds an object).
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must lie in 1..{MAX_K} (scenes hold 1-5 objects), got {k}")
    if param not in PARAMS:
        raise ValueError(f"param must be one of {', '.join(PARAMS)}, got {param!r}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    mcmc = mcmc or MCMCSettings()
    check_request([sampler], param, mcmc)
    loaded = load_or_train("position", param, steps=train_steps, cache=cache, progress=progress)
    evaluator = load_or_train_evaluator(cache, progress=progress)
    gen = torch.Generator().manual_seed(seed)
    cells = requested_cells(n, k, gen)
    images, info = sample_conjunction(loaded, cells, weight, sampler, mcmc, gen, progress, levels)
    success = all_present(evaluator, images, cells)
    acc, se = accuracy(success)
    report: dict[str, Any] = {
        "k": k,
        "param": param,
        "n": n,
        "seed": seed,
        "accuracy": acc,
        "accuracy_se": se,
        **info,
        "weight": weight,
        "model_steps": loaded.step,
        "ema_weights": loaded.ema,
        "evaluator_cell_accuracy": evaluator.info.get("cell_accuracy"),
    }
    return CellResult(report, {"images": images, "cells": cells, "success": success})


def yardsticks(evaluator: ImageClassifier, k: int, seed: int = 0) -> dict[str, float]:
    """What the accuracy of ``k`` objects means, on held-out real scenes (never generated ones):

    * ``real_ceiling``: scenes with ``≥ k`` objects, ``k`` of their own cells requested: the evaluator's success
      rate (1 for a perfect evaluator; the best a perfect sampler scores).
    * ``chance``: ``k`` random cells requested of a random real scene: the share with all ``k`` occupied (what a
      sampler that ignores the conditions but matches the data scores; ``E[C(m, k)] / C(16, k)``).
    """
    scenes = test_scenes()
    found = presence(evaluator, torch.from_numpy(scenes.images).long())[:, :NUM_CELLS]
    gen = torch.Generator().manual_seed(seed)
    hits = []
    for i, obj in enumerate(scenes.objects):
        if len(obj.cells) >= k:
            pick = torch.randperm(len(obj.cells), generator=gen)[:k]
            hits.append(bool(found[i, torch.as_tensor(obj.cells)[pick]].all()))
    chance = sum(math.comb(len(o.cells), k) for o in scenes.objects) / (len(scenes) * math.comb(NUM_CELLS, k))
    return {"real_ceiling": sum(hits) / max(len(hits), 1), "chance": chance, "real_scenes": len(hits)}
