"""Training and caching of the evaluation classifier (:class:`~bitcompose.nets.classifier.ImageClassifier`).

Training is deterministic: weights are initialised and batches drawn from an explicit ``torch.Generator`` (never
the global RNG), on the CPU, on the TRAIN part of ``dataset.split(val_fraction, split_seed)``; the held-out part
gives ``val_accuracy``. :func:`load_or_train_classifier` caches the result as ``<key>.safetensors`` +
``<key>.json`` under ``$BITCOMPOSE_CACHE/classifiers`` (default ``~/.cache/bitcompose/classifiers``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.data.images import ImageDataset, load_image_dataset
from bitcompose.nets.classifier import ARCHITECTURE, ClassifierConfig, ImageClassifier, build_classifier
from bitcompose.training.cache import cache_dir as cache_folder
from bitcompose.training.loop import Trainer
from bitcompose.training.optim import OptimConfig

__all__ = ["default_classifier_steps", "load_or_train_classifier", "train_classifier", "ClassifierTask"]

_DEFAULT_STEPS = {"digits": 300, "mnist": 1000, "fashion_mnist": 3000, "cifar10": 4000, "imagenet64": 4000}


def default_classifier_steps(dataset_name: str) -> int:
    """Training steps (batches of 128) used when ``steps`` is not given: 300 for digits, more for larger sets."""
    return _DEFAULT_STEPS.get(dataset_name.split("-")[0], 2000)


class ClassifierTask:
    """Cross-entropy on batches drawn with replacement from a labelled data set.

    Args:
        model: the classifier.
        train: the labelled training data.
        batch_size: images per step.
        generator: the source of the batches (its state is resumable).
    """

    def __init__(
        self, model: ImageClassifier, train: ImageDataset, batch_size: int, generator: torch.Generator
    ) -> None:
        if train.labels is None:
            raise ValueError(f"dataset {train.name!r} has no labels: a classifier cannot be trained on it")
        self.module: nn.Module = model
        self.images, self.labels = train.images, train.labels
        self.batch_size, self.generator = batch_size, generator

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """Cross-entropy of one random batch."""
        idx = torch.randint(len(self.images), (self.batch_size,), generator=self.generator)
        return F.cross_entropy(net(self.images[idx]), self.labels[idx])

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])


def train_classifier(
    train: ImageDataset,
    *,
    steps: int,
    seed: int = 0,
    batch_size: int = 128,
    lr: float = 2e-3,
    channels: int = 32,
    progress: bool = True,
) -> ImageClassifier:
    """Train an :class:`ImageClassifier` on a labelled data set, deterministically, on the CPU.

    Adam with a linearly decaying learning rate; batches of ``batch_size`` indices drawn with replacement from a
    ``torch.Generator`` seeded with ``seed`` (which also initialises the weights).

    Returns:
        The classifier in eval mode; ``info`` holds ``steps``, ``seed``, ``train_seconds``, ``final_loss``.
    """
    if train.labels is None or train.num_classes < 1:
        raise ValueError(f"dataset {train.name!r} has no labels: a classifier cannot be trained on it")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    c, h, w = train.image_shape
    config = ClassifierConfig(c, h, w, train.num_classes, train.num_values, channels=channels)
    gen = torch.Generator().manual_seed(seed)
    model = build_classifier(config)
    model.reset_parameters(gen)
    optim = OptimConfig(name="adam", lr=lr, schedule="linear", grad_clip=0.0, ema_decay=None)
    task = ClassifierTask(model, train, batch_size, gen)
    result = Trainer(
        task, optim, steps=steps, log_every=1, progress=progress, desc=f"classifier {train.name}"
    ).train()
    model.info = {
        "dataset": train.name,
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "final_loss": result.loss,
        "train_seconds": result.train_seconds,
    }
    return model.eval()


def _fingerprint(ds: ImageDataset, val_fraction: float, split_seed: int) -> str:
    h = hashlib.sha256(f"{ds.fingerprint()}|{val_fraction}|{split_seed}".encode())
    return h.hexdigest()[:12]


def load_or_train_classifier(
    dataset_name: str | ImageDataset,
    *,
    cache_dir: str | Path | None = None,
    path: str | None = None,
    root: str | None = None,
    levels: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    progress: bool = True,
) -> ImageClassifier:
    """The cached classifier of a data set, trained (and cached) on first use.

    The data set (``load_image_dataset(dataset_name, root=root, path=path, levels=levels)``, or an
    :class:`ImageDataset` given directly) is split with ``split(val_fraction, split_seed)``; the classifier trains
    on the train part and is scored on the held-out part. The cache key holds the data set name, ``levels``
    (num_values), architecture, width, seed, steps and a hash of the pixels, labels and split.

    Args:
        dataset_name: a name for :func:`~bitcompose.data.load_image_dataset`, or an :class:`ImageDataset`.
        cache_dir: folder of the cache (default ``$BITCOMPOSE_CACHE/classifiers``).
        path, root, levels: passed to :func:`~bitcompose.data.load_image_dataset`.
        steps: training steps (default :func:`default_classifier_steps`).
        seed: seed of the weights and batches.
        val_fraction, split_seed: the held-out split.
        progress: show a progress bar while training.

    Returns:
        The classifier (eval mode, CPU). ``info`` holds ``val_accuracy``, ``num_train``, ``num_val``,
        ``train_seconds``, ``cached`` (True when loaded from the cache) and ``path``.
    """
    if isinstance(dataset_name, ImageDataset):
        ds = dataset_name if levels is None else dataset_name.quantize(levels)
    else:
        ds = load_image_dataset(dataset_name, root=root, path=path, levels=levels)
    if ds.labels is None:
        raise ValueError(f"dataset {ds.name!r} has no labels: a classifier cannot be trained on it")
    steps = default_classifier_steps(ds.name) if steps is None else steps
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", ds.name)
    key = f"{slug}-K{ds.num_values}-{ARCHITECTURE}-w32-s{seed}-n{steps}-{_fingerprint(ds, val_fraction, split_seed)}"
    prefix = cache_folder("classifiers", cache_dir) / key
    if prefix.with_name(key + ".json").is_file() and prefix.with_name(key + ".safetensors").is_file():
        model = ImageClassifier.load(prefix)
        model.info["cached"] = True
        return model
    train, val = ds.split(val_fraction, split_seed)
    model = train_classifier(train, steps=steps, seed=seed, progress=progress)
    assert val.labels is not None
    model.info |= {
        "dataset": ds.name,
        "num_values": ds.num_values,
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "num_train": len(train),
        "num_val": len(val),
        "val_accuracy": model.accuracy(val.images, val.labels),
    }
    model.save(prefix)
    model.info |= {"cached": False, "path": str(prefix)}
    return model
