"""The data of the guidance experiment: small integer images with labels, split once into train and held out.

MNIST and Fashion-MNIST at 14×14 requantised to 8 grey levels (3 bits per pixel), the 8×8 digits with their 17
levels (:func:`~bitcompose.data.small_images.small_dataset`). Every model and classifier of the experiment trains
on the train split of ``split(HELD_OUT, SPLIT_SEED)``; the held-out split gives the real-vs-real yardsticks.
"""

from __future__ import annotations

from bitcompose.data.images import ImageDataset
from bitcompose.data.small_images import SMALL_DATASETS, small_dataset

__all__ = ["DATASETS", "HELD_OUT", "LEVELS", "SPLIT_SEED", "guidance_dataset", "splits"]

DATASETS = SMALL_DATASETS
#: Grey levels of the downsampled MNIST / Fashion-MNIST images.
LEVELS = 8
HELD_OUT, SPLIT_SEED = 0.1, 0


def guidance_dataset(name: str) -> ImageDataset:
    """All images of the experiment's data set ``name`` (``mnist``, ``fashion_mnist`` or ``digits``): 14×14 at
    8 levels (``[N, 1, 14, 14]`` in ``0..7``) or the digits as they are (``[N, 1, 8, 8]`` in ``0..16``)."""
    return small_dataset(name, None if name == "digits" else LEVELS)


def splits(name: str) -> tuple[ImageDataset, ImageDataset]:
    """``(train, held_out)`` of :func:`guidance_dataset` (the split every model and classifier uses)."""
    return guidance_dataset(name).split(HELD_OUT, SPLIT_SEED)
