"""One cell of the Bit Diffusion study: ``n`` class-conditional samples of a cached model, scored.

The data: MNIST / Fashion-MNIST at 14×14 with all 256 grey levels (8 bits per pixel), or the 8×8 digits with
their 17 levels (:func:`~bitcompose.data.small_images.small_dataset`), split once 90/10 (seed 0); or
``fashion_mnist_28``, Fashion-MNIST at 28×28 and 256 levels with its official split (60,000 train, 10,000 test
held out). Every model trains on the train split; the evaluation classifier too (on 90 % of it, seed 0). The samples ask for the classes ``0, 1, …, 9, 0, …``; the
evaluation classifier says whether each shows its class, its features give the classifier FID against the train
split (with a bootstrap s.e.) beside the real-vs-real floor of as many held-out images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from bitcompose.core.names import STUDY_DATASETS
from bitcompose.data.images import ImageDataset, load_image_dataset
from bitcompose.data.small_images import small_dataset
from bitcompose.experiments.classifier import load_or_train_classifier
from bitcompose.experiments.image_models import cached_model, train_seconds
from bitcompose.experiments.image_models import model_key as cached_model_key
from bitcompose.experiments.runner import CellResult
from bitcompose.images.config import SampleConfig, TrainConfig
from bitcompose.images.evaluate import generate
from bitcompose.images.likelihood import image_bpd
from bitcompose.images.model import LoadedModel
from bitcompose.metrics.fid import feature_statistics, kernel_inception_distance
from bitcompose.metrics.image_scores import classifier_fid_with_se, image_subset, level_tv, real_fid
from bitcompose.nets.classifier import ImageClassifier
from bitcompose.study.grid import MODELS, StudyCell, StudyModel, model_config

__all__ = [
    "FASHION_28",
    "HELD_OUT",
    "SPLIT_SEED",
    "STUDY_DATASETS",
    "TRAIN_STEPS",
    "evaluator",
    "load_or_train",
    "model_bound",
    "real_floor",
    "study_cell",
]

HELD_OUT, SPLIT_SEED = 0.1, 0
#: Fashion-MNIST at 28×28 and 256 levels with its official 60,000 / 10,000 split (``make data`` installs it).
FASHION_28 = "fashion_mnist_28"
#: Optimiser steps per model (≤ 20 min each on 2 CPU cores for the 14×14 models; ≈ 1–2 min for the digits; the
#: 28×28 models, about 4× the work per step, are not timed yet on a quiet machine: a GPU run is the first one).
TRAIN_STEPS = {"digits": 1500, "mnist": 4000, "fashion_mnist": 4000, FASHION_28: 4000}


def _check_dataset(dataset: str) -> None:
    if dataset not in STUDY_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(STUDY_DATASETS)}, got {dataset!r}")


@functools.cache
def study_data(dataset: str) -> ImageDataset:
    """The images the evaluation classifier trains on (its own 90/10 split, seed 0): all images of a small data
    set (256 levels at 14×14, or the digits' 17 at 8×8), or the 60,000 training images of ``fashion_mnist_28``."""
    _check_dataset(dataset)
    if dataset == FASHION_28:
        return replace(load_image_dataset("fashion_mnist"), name="fashion_mnist-28px-256lv")
    return small_dataset(dataset)


@functools.cache
def splits(dataset: str) -> tuple[ImageDataset, ImageDataset]:
    """``(train, held_out)``: the one split of the study (Fashion-MNIST 28×28: the official train and test sets)."""
    if dataset == FASHION_28:
        test = load_image_dataset("fashion_mnist-test")
        return study_data(dataset), replace(test, name="fashion_mnist-28px-256lv-test")
    return study_data(dataset).split(HELD_OUT, SPLIT_SEED)


def held_out_subset(dataset: str, m: int | None = None) -> Tensor:
    """The held-out images ``[m, C, H, W]`` a floor of ``m`` images uses: all of them, or a random subset (seed 0)."""
    return image_subset(splits(dataset)[1].images, m, SPLIT_SEED)


def real_floor(judge: ImageClassifier, dataset: str, m: int | None = None) -> float:
    """The real-vs-real classifier FID: ``m`` held-out images (:func:`held_out_subset`; all by default) against the
    train split."""
    train, held_out = splits(dataset)
    return real_fid(judge, held_out.images, train.images, max_images=m, seed=SPLIT_SEED)


def load_or_train(
    model: StudyModel,
    dataset: str,
    *,
    steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> LoadedModel:
    """The trained ``model`` on ``dataset``'s train split: from the cache (``<cache>/study``), or trained there."""
    config, train = _recipe(model, dataset, steps)
    return cached_model(config, train, kind="study", cache=cache, progress=progress)


def model_key(model: StudyModel, dataset: str, steps: int | None = None) -> str:
    """The cache key of the model :func:`load_or_train` gives."""
    return cached_model_key(*_recipe(model, dataset, steps))


def _recipe(model: StudyModel, dataset: str, steps: int | None) -> tuple[TrainConfig, ImageDataset]:
    train = splits(dataset)[0]
    steps = TRAIN_STEPS[dataset] if steps is None else steps
    return model_config(model, dataset, train.image_shape[1], steps), train


def evaluator(dataset: str, cache: str | Path | None = None, progress: bool = True) -> ImageClassifier:
    """The evaluation classifier of ``dataset``: trained on the clean train split only, never on samples."""
    return load_or_train_classifier(study_data(dataset), cache=cache, progress=progress)


def level_scores(dataset: str, images: Tensor) -> dict[str, float]:
    """The grey-level histogram distance of ``images`` (``long [m, C, H, W]``) to the train split, beside the same
    distance for the ``m`` held-out images the FID floor uses."""
    train = splits(dataset)[0]
    real = held_out_subset(dataset, len(images))
    return {
        "level_tv": level_tv(images, train.images, train.num_values),
        "level_tv_floor": level_tv(real, train.images, train.num_values),
    }


@functools.cache
def _inception_train_statistics(dataset: str) -> tuple[Any, Any, Any, Tensor]:
    """The Inception network, the mean and covariance of its features of ``dataset``'s train split, and the
    features themselves ``[N, 2048]`` (for the KID)."""
    from bitcompose.metrics.inception import InceptionFeatures

    net = InceptionFeatures()
    train = splits(dataset)[0]
    feats = net(train.images, train.num_values)
    return net, *feature_statistics(feats), feats


def inception_scores(dataset: str, images: Tensor, floor_n: int) -> dict[str, float]:
    """Inception FID and KID of ``images`` (``long [m, C, H, W]``) against the train split, each beside its floor
    with ``floor_n`` held-out images (needs the ``fid`` extra; ``FileNotFoundError`` with the install command
    otherwise). The KID is the unbiased MMD² of the cubic kernel, mean over 100 subsets of ``min(1000, m)`` rows
    (:func:`~bitcompose.metrics.fid.kernel_inception_distance`, seed 0), with its spread over the subsets."""
    from bitcompose.metrics.inception import fid_with_floor

    net, mu, cov, train_feats = _inception_train_statistics(dataset)
    held_out = splits(dataset)[1].images[:floor_n]
    k = splits(dataset)[0].num_values
    feats, real = net(images, k), net(held_out, k)
    fid, floor = fid_with_floor(feats, real, (mu, cov))
    kid, kid_std = kernel_inception_distance(feats, train_feats, seed=0)
    kid_floor, _ = kernel_inception_distance(real, train_feats, seed=0)
    return {
        "inception_fid": fid,
        "inception_fid_floor": floor,
        "inception_kid": kid,
        "inception_kid_std": kid_std,
        "inception_kid_floor": kid_floor,
    }


_BOUNDS: dict[tuple[str, int, bool, str], dict[str, Any]] = {}


def model_bound(loaded: LoadedModel, dataset: str) -> dict[str, Any]:
    """The likelihood bound of a study model on the whole held-out split (``−log p(x | y)``, each image with its
    label; :func:`~bitcompose.images.likelihood.image_bpd`, seed 0): ``bpd, bpd_se, bpd_num_images, …``.
    Computed once per model and process."""
    key = (str(loaded.path), loaded.step, loaded.ema, dataset)
    if key not in _BOUNDS:
        held_out = splits(dataset)[1]
        _BOUNDS[key] = image_bpd(loaded, held_out.images, held_out.labels, seed=0)
    return dict(_BOUNDS[key])


def cell_sampling(loaded: LoadedModel, cell: StudyCell) -> SampleConfig:
    """The model's sampler settings with the cell's sampler, steps, td, momentum and self-guidance."""
    return replace(
        loaded.config.sample,
        steps=cell.steps,
        sampler=cell.sampler,
        td=cell.td,
        momentum=cell.momentum,
        self_guidance=cell.self_guidance,
        self_guidance_form=cell.self_guidance_form,
    )


def study_cell(
    cell: StudyCell,
    dataset: str,
    *,
    n: int = 500,
    seed: int = 0,
    train_steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
    inception: bool = False,
) -> CellResult:
    """Train (or load) the cell's model, draw ``n`` samples, score them (the FID on the first ``m`` samples and the
    floor on ``m`` held-out images, ``m = min(n, held-out size)``; the class accuracy on all ``n``).

    Returns:
        the report: ``model, encoding, loss, self_condition, prediction, sampler, steps, td, momentum,
        self_guidance, self_guidance_form, mode, classifier_fid (± classifier_fid_se), classifier_fid_floor, class_accuracy
        (± class_accuracy_se), invalid_fraction, nfe, seconds`` and provenance (``dataset, n, seed, model_steps,
        train_seconds, precision, ema_weights, evaluator_val_accuracy``), ``level_tv`` and ``level_tv_floor``
        (:func:`level_scores`), the model's likelihood bound ``bpd`` ± ``bpd_se`` on the held-out split
        (:func:`model_bound`); with ``inception``, also
        ``inception_fid`` and ``inception_fid_floor`` (the first ``m`` samples and ``m`` held-out images against the
        train split; the held-out images in split order).
    """
    _check_dataset(dataset)
    if n < 2:
        raise ValueError(f"n must be at least 2 (the FID needs two samples), got {n}")
    model = MODELS[cell.model]
    loaded = load_or_train(model, dataset, steps=train_steps, cache=cache, progress=progress)
    judge = evaluator(dataset, cache, progress)
    train, held_out = splits(dataset)
    out = generate(loaded, n, cell_sampling(loaded, cell), seed=seed, progress=progress)
    assert out.labels is not None  # every study model is class-conditional
    acc = float((judge.predict(out.images) == out.labels).double().mean())
    floor_n = min(n, len(held_out))  # FID is biased by sample size: samples and floor use as many images
    fid, fid_se = classifier_fid_with_se(judge, out.images[:floor_n], train.images, seed=seed)
    report: dict[str, Any] = {
        "dataset": dataset,
        "model": model.name,
        "family": model.family,
        "encoding": model.encoding,
        "loss": model.loss,
        "self_condition": model.self_condition,
        "prediction": model.prediction,
        "sampler": cell.sampler,
        "steps": cell.steps,
        "td": cell.td,
        "momentum": cell.momentum,
        "self_guidance": cell.self_guidance,
        "self_guidance_form": cell.self_guidance_form,
        "mode": cell.mode,
        "n": n,
        "seed": seed,
        "num_values": loaded.spec.num_values,
        "classifier_fid": fid,
        "classifier_fid_se": fid_se,
        "classifier_fid_floor": real_floor(judge, dataset, floor_n),
        "floor_n": floor_n,
        "class_accuracy": acc,
        "class_accuracy_se": math.sqrt(acc * (1 - acc) / n),
        "invalid_fraction": out.invalid_fraction,
        "nfe": cell.nfe,
        "seconds": out.seconds,
        "precision": out.settings["precision"],
        "model_steps": loaded.step,
        "train_seconds": train_seconds(loaded.path, loaded.step),
        "ema_weights": loaded.ema,
        "evaluator_val_accuracy": judge.info.get("val_accuracy"),
    }
    report |= level_scores(dataset, out.images[:floor_n])
    report |= model_bound(loaded, dataset)
    if inception:
        report |= inception_scores(dataset, out.images[:floor_n], floor_n)
    return CellResult(report, {"images": out.images, "labels": out.labels})
