"""One cell of the guidance experiment: ``n`` class-guided samples of an unconditional model, scored.

Each sample asks for a class (balanced over the classes: ``0, 1, …, 9, 0, …``). Its model is classifier guidance
``q_t(x)·p_φ(y | x_t, t)^w`` (:class:`~bitcompose.compose.ClassifierGuidance`: score ``s + w·∇ log p_φ``, energy
``E − w·log p_φ``) of the unconditional model and the noise-conditioned guide, sampled by reverse diffusion or by
reverse steps plus MCMC on the noisier levels. The evaluation classifier, trained on clean images only, says
whether a sample shows its class; the classifier FID (its features) against the train split, with a bootstrap
s.e., sits beside the real-vs-real floor of held-out images.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bitcompose.compose import ClassifierGuidance
from bitcompose.compose.composite_sampling import MCMCSettings, check_request, sample_composite
from bitcompose.diffusion.as_model import as_model
from bitcompose.experiments.classifier import load_or_train_classifier
from bitcompose.experiments.runner import CellResult
from bitcompose.guidance.data import DATASETS, guidance_dataset, splits
from bitcompose.guidance.guide import load_or_train_guide
from bitcompose.guidance.models import PARAMS, load_or_train
from bitcompose.images.evaluate import balanced_labels
from bitcompose.images.model import LoadedModel
from bitcompose.metrics.image_scores import classifier_fid_with_se, fid_floor
from bitcompose.nets.classifier import ImageClassifier
from bitcompose.nets.noisy_classifier import NoisyClassifier

__all__ = ["check_cell", "evaluator", "guidance_cell", "guided_samples"]


def check_cell(dataset: str, scale: float, sampler: str, param: str, n: int, mcmc: MCMCSettings) -> None:
    """Refuse (``ValueError``) a cell that cannot run, before any model is loaded or trained."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"the guidance scale must be finite and >= 0, got {scale}")
    if param not in PARAMS:
        raise ValueError(f"param must be one of {', '.join(PARAMS)}, got {param!r}")
    if n < 2:
        raise ValueError(f"n must be at least 2 (the FID needs two samples), got {n}")
    check_request([sampler], param, mcmc)


def evaluator(dataset: str, cache: str | Path | None = None, progress: bool = True) -> ImageClassifier:
    """The evaluation classifier of ``dataset``: trained on the clean train split only, never on samples."""
    return load_or_train_classifier(guidance_dataset(dataset), cache=cache, progress=progress)


def guided_samples(
    loaded: LoadedModel,
    guide: NoisyClassifier,
    labels: Tensor,
    scale: float,
    sampler: str,
    mcmc: MCMCSettings,
    generator: torch.Generator,
    *,
    levels: int = 100,
    progress: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """Analog-bit samples ``[n, C·bits, H, W]`` of ``q_t(x)·p_φ(labels | x, t)^scale`` and the sampler's report
    (``nfe``: evaluations of the guided model, each one U-Net pass and one guide pass with its gradient).

    Args:
        loaded: the unconditional model.
        guide: the noise-conditioned classifier.
        labels: ``long [n]`` the requested classes.
        scale: the guidance scale ``w`` (0: the unconditional model).
        sampler: ``reverse``, ``ula``, ``mala``, ``uhmc`` or ``hmc``.
        mcmc: the MCMC settings.
        generator: the source of all noise.
        levels: levels of the annealing grid (reverse steps).
        progress: a progress bar.
    """
    spec = loaded.spec
    shape = (len(labels), spec.channels * loaded.codec.num_bits, spec.image_size, spec.image_size)
    model = ClassifierGuidance(as_model(loaded.denoiser, num_levels=levels), guide, labels, weight=scale)
    return sample_composite(
        model,
        shape,
        sampler,
        mcmc,  # min_level is a fraction of the grid: the same levels on a grid of any size
        generator=generator,
        resample_groups=labels,  # each slot asks for its own class: SMC resamples among the same class only
        progress=progress,
    )


def guidance_cell(
    dataset: str,
    scale: float,
    sampler: str,
    *,
    param: str = "score",
    n: int = 300,
    seed: int = 0,
    mcmc: MCMCSettings | None = None,
    levels: int = 100,
    train_steps: int | None = None,
    guide_steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> CellResult:
    """Sample ``n`` images, each guided towards a class, and score them.

    Args:
        dataset: ``mnist``, ``fashion_mnist`` or ``digits``.
        scale: the guidance scale ``w ≥ 0``.
        sampler: ``reverse``, ``ula``, ``mala``, ``uhmc`` or ``hmc``.
        param: ``score`` (x0-predicting U-Net; trapezoid Metropolis corrections) or ``energy`` (exact ones).
        n: samples.
        seed: the sampler's noise (the requested classes are the same for every seed).
        mcmc: the MCMC settings (default :class:`~bitcompose.compose.composite_sampling.MCMCSettings`;
            ``min_level`` is a fraction of the grid).
        levels: levels of the annealing grid (100; more for a reverse baseline at the NFE of MCMC).
        train_steps: training steps of the diffusion model (default: the preset's).
        guide_steps: training steps of the guide (default :data:`~bitcompose.guidance.guide.GUIDE_STEPS`).
        cache: the cache root of the models and classifiers.
        progress: progress bars.
    """
    mcmc = mcmc or MCMCSettings()
    check_cell(dataset, scale, sampler, param, n, mcmc)
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    loaded = load_or_train(dataset, param, steps=train_steps, cache=cache, progress=progress)
    guide = load_or_train_guide(dataset, steps=guide_steps, cache=cache, progress=progress)
    judge = evaluator(dataset, cache, progress)
    train, held_out = splits(dataset)
    labels = balanced_labels(n, train.num_classes)
    gen = torch.Generator().manual_seed(seed)
    bits, info = guided_samples(
        loaded, guide, labels, scale, sampler, mcmc, gen, levels=levels, progress=progress
    )
    images, invalid = loaded.codec.decode_images(bits.cpu(), return_invalid=True)
    hits = judge.predict(images) == labels
    acc = float(hits.double().mean())
    with torch.no_grad():
        zero = torch.zeros(n)
        guide_acc = float(
            (guide(loaded.codec.encode_images(images), zero).argmax(1) == labels).double().mean()
        )
    fid, fid_se = classifier_fid_with_se(judge, images, train.images, seed=seed)
    floor_n = min(n, len(held_out))
    report: dict[str, Any] = {
        "dataset": dataset,
        "sampler": sampler if mcmc.resample_ess is None or sampler == "reverse" else f"smc-{sampler}",
        "param": param,
        "scale": scale,
        "n": n,
        "seed": seed,
        "num_values": loaded.spec.num_values,
        "accuracy": acc,
        "accuracy_se": math.sqrt(acc * (1 - acc) / n),
        "guide_accuracy": guide_acc,
        "classifier_fid": fid,
        "classifier_fid_se": fid_se,
        "classifier_fid_floor": fid_floor(judge, guidance_dataset(dataset), max_images=floor_n),
        "floor_n": floor_n,
        "invalid_fraction": float(invalid.double().mean()),
        **info,
        "levels": levels,
        "mcmc": None if sampler == "reverse" else vars(mcmc),
        "model_steps": loaded.step,
        "ema_weights": loaded.ema,
        "evaluator_val_accuracy": judge.info.get("val_accuracy"),
    }
    return CellResult(report, {"images": images, "labels": labels})
