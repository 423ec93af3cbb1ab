"""Readers for image files in their published formats: IDX (MNIST family), ``.npz``, CIFAR-10
python pickles and the downsampled ImageNet-64 batches.

All readers return numpy arrays ``images: [N, C, H, W]`` (uint8 or int64) and ``labels: int64 [N]``
(0-based) or ``None``. They never download anything; a missing file raises ``FileNotFoundError``
saying how to get it.

The CIFAR-10 and ImageNet-64 pickles are read with a restricted unpickler that only accepts the numpy classes
needed to rebuild arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FASHION_MNIST_DIR",
    "read_cifar10",
    "read_fashion_mnist",
    "read_idx",
    "read_imagenet64",
    "read_npz_images",
]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` puts its IDX files."""

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) as in the MNIST distribution.

    Format: two zero bytes, a type code, the number of dimensions ``d``, then ``d`` big-endian int32 sizes and
    the data in C order.

    Returns:
        The array with its stored shape (e.g. uint8 ``[N, 28, 28]`` for images, ``[N]`` for labels).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX header says shape {shape} but the file holds {len(raw) - header} bytes"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header, count=count)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_fashion_mnist(
    root: str | Path | None = None, *, test: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from the IDX files of the Debian package ``dataset-fashion-mnist``.

    Args:
        root: folder with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (default
            ``/usr/share/datasets/fashion-mnist``).
        test: the 10,000 test images instead of the 60,000 training images.

    Returns:
        ``images`` uint8 ``[N, 1, 28, 28]``, ``labels`` int64 ``[N]``.
    """
    folder = Path(root if root is not None else FASHION_MNIST_DIR)
    prefix = "t10k" if test else "train"
    img_file = folder / f"{prefix}-images-idx3-ubyte.gz"
    lbl_file = folder / f"{prefix}-labels-idx1-ubyte.gz"
    for f in (img_file, lbl_file):
        if not f.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file {f} not found; install it with `apt-get install dataset-fashion-mnist` "
                "(Debian/Ubuntu) or pass root=DIR holding the IDX .gz files"
            )
    images = read_idx(img_file)
    labels = read_idx(lbl_file).astype(np.int64)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise ValueError(f"Fashion-MNIST files disagree: images {images.shape}, labels {labels.shape}")
    return images[:, None], labels


#: Most classes a user's labels may define (a larger label is almost surely a mistake, and costs memory).
MAX_LABEL_CLASSES = 10_000


def _as_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """Integer pixels as uint8: any integer dtype whose values fit 0..255 (16-bit files of 8-bit data, int64
    arrays), refused otherwise with what to do."""
    if images.dtype == np.uint8:
        return images
    if images.dtype.kind not in "iu":
        raise ValueError(
            f"{where}: 'images' must be integers (uint8, or any integer type within 0..255), got {images.dtype}"
        )
    lo, hi = (int(images.min()), int(images.max())) if images.size else (0, 0)
    if lo < 0 or hi > 255:
        raise ValueError(
            f"{where}: pixel values {lo}..{hi} do not fit 8 bits (256 levels); rescale them first "
            "(e.g. v >> 8 for 16-bit images)"
        )
    return images.astype(np.uint8)


def read_png_folder(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Images from a folder of PNG files: ``*.png`` directly in it (unlabelled), or in one sub-folder per class
    (labels ``0 .. C−1`` in the sorted order of the sub-folder names). Every image must have the same size and
    mode (``L`` grey, ``RGB``, or 16-bit ``I;16`` whose values fit 0..255).

    Returns:
        ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]`` or ``None``, ``num_classes`` (0 when
        unlabelled).
    """
    from PIL import Image

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"PNG folder not found: {folder}")
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and any(d.glob("*.png")))
    groups = [(i, sorted(d.glob("*.png"))) for i, d in enumerate(classes)] or [
        (-1, sorted(folder.glob("*.png")))
    ]
    if classes and any(folder.glob("*.png")):
        raise ValueError(f"{folder}: PNG files both beside and inside class folders; keep one layout")
    arrays, labels, first = [], [], None
    for label, files in groups:
        for file in files:
            try:
                with Image.open(file) as im:
                    key, pixels = (im.mode, im.size), np.asarray(im)
            except OSError as exc:
                raise ValueError(f"cannot read {file} as a PNG image: {exc}") from None
            if first is None:
                first = (key, file)
            elif key != first[0]:
                raise ValueError(
                    f"{file} is {key[0]} {key[1][0]}x{key[1][1]}, but {first[1].name} is {first[0][0]} "
                    f"{first[0][1][0]}x{first[0][1][1]}: every image must have the same mode and size"
                )
            arrays.append(pixels)
            labels.append(label)
    if not arrays:
        raise ValueError(f"{folder}: no .png files (directly, or in one sub-folder per class)")
    images = _as_uint8(np.stack(arrays), str(folder))
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (3, 4)):
        raise ValueError(f"{folder}: images must be grey or RGB, got arrays of shape {images.shape[1:]}")
    if images.ndim == 4:
        images = images[..., :3]  # RGBA: the alpha channel is dropped
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    if not classes:
        return np.ascontiguousarray(images), None, 0
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), len(classes)


def read_npz_images(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Images from a user ``.npz`` file.

    The file holds ``images``: uint8 (or any integer type within 0..255) ``[N, H, W]`` (grey) or ``[N, H, W, C]``
    and optionally ``labels``:
    integers ``[N]`` in ``0 .. num_classes-1`` (``num_classes = max + 1``).

    Returns:
        ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]`` or ``None``, ``num_classes`` (0 when
        unlabelled).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError("it holds a single array, not named arrays")
            if "images" not in npz.files:
                raise ValueError(f"it has no 'images' array (found keys: {', '.join(npz.files) or 'none'})")
            images = npz["images"]
            labels = npz["labels"] if "labels" in npz.files else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        detail = "the file is empty" if path.stat().st_size == 0 else str(exc).splitlines()[0]
        if "pickled" in detail:  # numpy says "pickled" of anything that is neither a zip nor a .npy file
            head = path.read_bytes()[:64]
            detail = "it is not a .npz archive (a zip of .npy arrays): " + (
                "it looks like pickled data, which is never loaded"
                if head[:1] == b"\x80"
                else "it looks like text"
                if head.isascii()
                else f"it starts with {head[:8]!r}"
            )
        raise ValueError(f"cannot read {path} as .npz images: {detail}") from None
    images = _as_uint8(images, str(path))
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"{path}: 'images' must have shape [N, H, W] or [N, H, W, C], got {images.shape}")
    if images.shape[0] == 0:
        raise ValueError(f"{path}: 'images' is empty")
    if labels is None:
        return images, None, 0
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: 'labels' must be integers, got {labels.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{path}: 'labels' must have shape [{images.shape[0]}] (one per image), got {labels.shape}"
        )
    if labels.min() < 0:
        raise ValueError(f"{path}: 'labels' must be >= 0, found {labels.min()}")
    if labels.max() >= MAX_LABEL_CLASSES:
        raise ValueError(
            f"{path}: 'labels' go up to {labels.max()}, which would build a {int(labels.max()) + 1}-class model; "
            f"labels must be 0..C-1 with C <= {MAX_LABEL_CLASSES}"
        )
    labels = labels.astype(np.int64)
    return images, labels, int(labels.max()) + 1


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (and plain Python containers)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def _load_batch(path: Path) -> dict[str, Any]:
    """A dict batch stored as an ``.npz`` archive or a (Python 2 or 3) pickle; keys become ``str``."""
    raw = path.read_bytes()
    if raw[:2] == b"PK":  # zip archive = npz
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    try:
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:
        raise ValueError(f"{path} is neither an .npz archive nor a readable pickle batch: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _batch_arrays(path: Path, size: int, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``data`` as uint8 ``[N, 3, size, size]`` (channel-major rows) and integer labels of one batch."""
    batch = _load_batch(path)
    for key in ("data", labels_key):
        if key not in batch:
            raise ValueError(f"{path}: missing key {key!r} (found: {', '.join(sorted(batch))})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[labels_key]).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * size * size:
        raise ValueError(
            f"{path}: 'data' must be uint8 [N, {3 * size * size}], got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: {labels_key!r} must hold {data.shape[0]} integers, got {labels.shape}")
    return data.reshape(-1, 3, size, size), labels.astype(np.int64)


def _read_batches(
    files: list[Path], size: int, labels_key: str, max_images: int | None
) -> tuple[np.ndarray, ...]:
    images, labels, total = [], [], 0
    for f in files:
        x, y = _batch_arrays(f, size, labels_key)
        images.append(x)
        labels.append(y)
        total += len(x)
        if max_images is not None and total >= max_images:
            break
    return np.concatenate(images), np.concatenate(labels)


def read_cifar10(
    root: str | Path, *, test: bool = False, max_images: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python version (``cifar-10-batches-py``: ``data_batch_1..5``, ``test_batch``).

    Each batch is a pickled dict with ``data`` uint8 ``[10000, 3072]`` (R, G, B planes of 32×32, row-major)
    and ``labels`` (list of 0..9).

    Args:
        root: the ``cifar-10-batches-py`` folder, or a folder containing it.
        test: read ``test_batch`` instead of the five training batches.
        max_images: stop reading once this many images are loaded.

    Returns:
        ``images`` uint8 ``[N, 3, 32, 32]``, ``labels`` int64 ``[N]``.
    """
    folder = Path(root)
    if not (folder / "data_batch_1").is_file() and (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    names = ["test_batch"] if test else [f"data_batch_{i}" for i in range(1, 6)]
    files = [folder / n for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 batches {', '.join(missing)} not found in {folder}; download and extract "
            "cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) and pass its folder as root"
        )
    images, labels = _read_batches(files, 32, "labels", max_images)
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"CIFAR-10 labels must be 0..9, found {labels.min()}..{labels.max()}")
    return images, labels


def read_imagenet64(
    root: str | Path, *, val: bool = False, max_images: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Downsampled ImageNet 64×64 (Chrabaszcz et al. 2017): ``train_data_batch_1..10`` and ``val_data``.

    Each batch (``.npz``, with or without the extension, or the older pickle) holds ``data`` uint8
    ``[N, 12288]`` laid out channel-major (R plane, G plane, B plane of 64×64) and ``labels`` in 1..1000,
    which are converted to 0-based.

    Args:
        root: folder holding the batch files (the training batches present from 1 on are read in order, so
            the first part of the release, batches 1..5, is enough).
        val: read ``val_data`` instead of the training batches.
        max_images: stop reading once this many images are loaded (the full training set is 1.28M images).

    Returns:
        ``images`` uint8 ``[N, 3, 64, 64]``, ``labels`` int64 ``[N]`` in 0..999.
    """
    folder = Path(root)

    def find(stem: str) -> Path | None:
        for cand in (folder / f"{stem}.npz", folder / stem):
            if cand.is_file():
                return cand
        return None

    if val:
        found = find("val_data")
        if found is None:
            raise FileNotFoundError(f"ImageNet-64 file val_data(.npz) not found in {folder}")
        files = [found]
    else:
        files = []
        for i in range(1, 11):
            f = find(f"train_data_batch_{i}")
            if f is None:
                break
            files.append(f)
        if not files:
            raise FileNotFoundError(
                f"ImageNet-64 batches train_data_batch_1..10(.npz) not found in {folder}; get "
                "Imagenet64_train (npz) from https://image-net.org/download-images (downsampled versions) "
                "and pass its folder as root"
            )
    images, labels = _read_batches(files, 64, "labels", max_images)
    if labels.min() < 1 or labels.max() > 1000:
        raise ValueError(f"ImageNet-64 labels must be 1..1000, found {labels.min()}..{labels.max()}")
    return images, labels - 1
