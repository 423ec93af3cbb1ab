"""Data sets: integer images (offline loaders by name) and their helpers."""

from __future__ import annotations

from bitcompose.data.images import (
    IMAGE_DATASETS,
    DatasetInfo,
    ImageDataset,
    dataset_info,
    load_image_dataset,
    random_flip,
)

__all__ = [
    "IMAGE_DATASETS",
    "DatasetInfo",
    "ImageDataset",
    "dataset_info",
    "load_image_dataset",
    "random_flip",
]
