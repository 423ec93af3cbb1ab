"""Training and caching of the evaluation classifier (:class:`~bitcompose.nets.classifier.ImageClassifier`).

Training is deterministic: weights are initialised and batches drawn from an explicit ``torch.Generator`` (never
the global RNG), on the CPU, on the TRAIN part of ``dataset.split(val_fraction, split_seed)``; the held-out part
gives ``val_accuracy``. :func:`load_or_train_classifier` keeps it in the harness's model cache
(:mod:`bitcompose.experiments.cache`, kind ``classifiers``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.data.images import ImageDataset, load_image_dataset
from bitcompose.experiments.cache import NETWORK, CacheEntry, cached
from bitcompose.nets.classifier import ARCHITECTURE, ClassifierConfig, ImageClassifier, build_classifier
from bitcompose.training.loop import Trainer
from bitcompose.training.optim import OptimConfig

__all__ = [
    "cached_classifier",
    "default_classifier_steps",
    "load_or_train_classifier",
    "train_classifier",
    "ClassifierTask",
]

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


def load_or_train_classifier(dataset_name: str | ImageDataset, **options: Any) -> ImageClassifier:
    """The classifier of :func:`cached_classifier` (same arguments)."""
    return cached_classifier(dataset_name, **options)[0]


def cached_classifier(
    dataset_name: str | ImageDataset,
    *,
    cache: str | Path | None = None,
    path: str | None = None,
    root: str | None = None,
    levels: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    progress: bool = True,
) -> tuple[ImageClassifier, CacheEntry]:
    """The cached classifier of a data set, trained (and cached) on first use, and its cache entry.

    The data set (``load_image_dataset(dataset_name, root=root, path=path, levels=levels)``, or an
    :class:`ImageDataset` given directly) is split with ``split(val_fraction, split_seed)``; the classifier trains
    on the train part and is scored on the held-out part. It is the harness's cache entry
    ``<cache>/classifiers/<name>-<key>``, keyed by the architecture, width, seed, steps, split and the data's
    fingerprint (its pixels, labels and number of levels).

    Args:
        dataset_name: a name for :func:`~bitcompose.data.load_image_dataset`, or an :class:`ImageDataset`.
        cache: the cache root (default ``$BITCOMPOSE_CACHE``, else ``~/.cache/bitcompose``).
        path, root, levels: passed to :func:`~bitcompose.data.load_image_dataset`.
        steps: training steps (default :func:`default_classifier_steps`).
        seed: seed of the weights and batches.
        val_fraction, split_seed: the held-out split.
        progress: show a progress bar while training.

    Returns:
        The classifier (eval mode, CPU; ``info`` holds ``val_accuracy``, ``num_train``, ``num_val``,
        ``train_seconds`` and ``path``) and its cache entry (``fresh``: trained by this call).
    """
    if isinstance(dataset_name, ImageDataset):
        ds = dataset_name if levels is None else dataset_name.quantize(levels)
    else:
        ds = load_image_dataset(dataset_name, root=root, path=path, levels=levels)
    if ds.labels is None:
        raise ValueError(f"dataset {ds.name!r} has no labels: a classifier cannot be trained on it")
    steps = default_classifier_steps(ds.name) if steps is None else steps
    spec = {
        "architecture": ARCHITECTURE,
        "channels": 32,
        "seed": seed,
        "steps": steps,
        "val_fraction": val_fraction,
        "split_seed": split_seed,
    }

    def train(folder: Path) -> dict[str, Any]:
        split_train, val = ds.split(val_fraction, split_seed)
        assert val.labels is not None
        model = train_classifier(split_train, steps=steps, seed=seed, progress=progress)
        model.info |= {
            "dataset": ds.name,
            "num_values": ds.num_values,
            "val_fraction": val_fraction,
            "split_seed": split_seed,
            "num_train": len(split_train),
            "num_val": len(val),
            "val_accuracy": model.accuracy(val.images, val.labels),
        }
        model.save(folder / NETWORK)
        return model.info

    name = f"{ds.name}-K{ds.num_values}-{ARCHITECTURE}-s{seed}-n{steps}"
    entry = cached("classifiers", name, spec, train, data=ds.fingerprint(), cache=cache)
    return ImageClassifier.load(entry.path / NETWORK), entry
