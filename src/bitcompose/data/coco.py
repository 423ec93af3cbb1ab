"""MS-COCO 2017 captions from a local copy (Bit Diffusion §3, Table 3). Nothing is downloaded.

Expected layout under ``root`` (as distributed on cocodataset.org)::

    root/annotations/captions_train2017.json
    root/annotations/captions_val2017.json
    root/train2017/000000000009.jpg ...
    root/val2017/000000000139.jpg ...

The annotation file is JSON with ``"images"`` (``id``, ``file_name``) and ``"annotations"`` (``image_id``,
``caption``, ``id``). :func:`load_coco_captions` groups the captions per image: images sorted by id, captions of an
image in annotation-id order, each caption stripped of surrounding whitespace (case and punctuation are kept; the
tokenizer case-folds and the metrics drop punctuation). Images without any caption are left out. Pixels are read
lazily with Pillow, converted to RGB and resized to ``size × size`` (:func:`resize_square`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["COCO_SPLITS", "CocoCaptions", "load_coco_captions", "resize_square"]

COCO_SPLITS = ("train", "val")
_RESIZE_MODES = ("pad", "crop", "stretch")


def resize_square(image: Image.Image, size: int, mode: str = "pad") -> np.ndarray:
    """A Pillow image → RGB uint8 ``[size, size, 3]``.

    Args:
        image: any Pillow image (converted to RGB; grayscale is replicated).
        size: output side in pixels.
        mode: ``"pad"`` keeps the aspect ratio, scales the longer side to ``size`` and pads with black, centred
            (Pix2Seq-style, nothing the captions mention is cut off); ``"crop"`` takes the central square first;
            ``"stretch"`` resizes without keeping the aspect ratio.

    Downsampling uses Pillow's area filter (``BOX``), upsampling ``BICUBIC``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if mode not in _RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {', '.join(_RESIZE_MODES)}")
    img = image.convert("RGB")
    w, h = img.size
    if mode == "crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        w = h = side
    if mode == "pad":
        scale = size / max(w, h)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    else:
        tw = th = size
    resample = Image.Resampling.BOX if tw <= w and th <= h else Image.Resampling.BICUBIC
    img = img.resize((tw, th), resample=resample)
    if (tw, th) != (size, size):
        canvas = Image.new("RGB", (size, size))
        canvas.paste(img, ((size - tw) // 2, (size - th) // 2))
        img = canvas
    return np.asarray(img, dtype=np.uint8).copy()


@dataclass(frozen=True)
class CocoCaptions:
    """Captions of a COCO split, grouped per image; pixels are loaded on request.

    Attributes:
        image_dir: folder of the image files.
        image_ids: ``N`` COCO image ids (ascending).
        file_names: ``N`` file names relative to ``image_dir``.
        captions: ``N`` lists of reference captions (usually 5, sometimes 6–7).
    """

    image_dir: Path
    image_ids: list[int]
    file_names: list[str]
    captions: list[list[str]]

    def __len__(self) -> int:
        return len(self.image_ids)

    def all_captions(self) -> list[str]:
        """Every caption, flattened (e.g. to train the tokenizer)."""
        return [c for caps in self.captions for c in caps]

    def subset(self, indices: Sequence[int] | np.ndarray) -> CocoCaptions:
        """The images at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return CocoCaptions(
            self.image_dir,
            [self.image_ids[i] for i in idx],
            [self.file_names[i] for i in idx],
            [self.captions[i] for i in idx],
        )

    def image_path(self, index: int) -> Path:
        """Path of image ``index``."""
        return self.image_dir / self.file_names[index]

    def load_image(self, index: int, size: int = 64, mode: str = "pad") -> np.ndarray:
        """Image ``index`` as RGB uint8 ``[size, size, 3]`` (see :func:`resize_square`).

        Raises:
            FileNotFoundError: the image file is missing.
            ValueError: the file is not an image Pillow can read.
        """
        path = self.image_path(index)
        if not path.is_file():
            raise FileNotFoundError(f"COCO image file not found: {path} (image id {self.image_ids[index]})")
        try:
            with Image.open(path) as im:
                return resize_square(im, size, mode)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read COCO image {path}: {e}") from e

    def load_images(
        self, indices: Sequence[int] | None = None, size: int = 64, mode: str = "pad", progress: bool = False
    ) -> np.ndarray:
        """Several images as uint8 ``[N, size, size, 3]`` (all images when ``indices`` is ``None``)."""
        idx = list(range(len(self))) if indices is None else [int(i) for i in indices]
        it: Any = idx
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(idx, desc="loading COCO images", unit="img")
        out = np.zeros((len(idx), size, size, 3), dtype=np.uint8)
        for k, i in enumerate(it):
            out[k] = self.load_image(i, size, mode)
        return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open("r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"COCO annotation file {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"COCO annotation file {path} has no 'images' list (is it a captions_*.json file?)")
    if not isinstance(data.get("annotations"), list):
        raise ValueError(f"COCO annotation file {path} has no 'annotations' list")
    return data


def load_coco_captions(
    root: str | Path,
    split: str = "val",
    *,
    image_dir: str | Path | None = None,
    annotation_file: str | Path | None = None,
    max_images: int | None = None,
) -> CocoCaptions:
    """Read the captions of a COCO 2017 split from a local copy.

    Args:
        root: the COCO folder (see the module docstring for the layout).
        split: ``"train"`` or ``"val"``.
        image_dir: image folder; default ``root/{split}2017``.
        annotation_file: annotation JSON; default ``root/annotations/captions_{split}2017.json``.
        max_images: keep only the first ``max_images`` images (by id).

    Returns:
        :class:`CocoCaptions`.

    Raises:
        FileNotFoundError: the root, the annotation file or the image folder does not exist.
        ValueError: a bad argument or a malformed annotation file.
    """
    if split not in COCO_SPLITS:
        raise ValueError(f"unknown COCO split {split!r}; expected one of {', '.join(COCO_SPLITS)}")
    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    ):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"COCO root folder not found: {root} (expected annotations/captions_{split}2017.json and {split}2017/)"
        )
    ann = (
        Path(annotation_file)
        if annotation_file is not None
        else root / "annotations" / f"captions_{split}2017.json"
    )
    if not ann.is_file():
        raise FileNotFoundError(
            f"COCO caption annotations not found: {ann} (get annotations_trainval2017.zip)"
        )
    imgs = Path(image_dir) if image_dir is not None else root / f"{split}2017"
    if not imgs.is_dir():
        raise FileNotFoundError(f"COCO image folder not found: {imgs} (get {split}2017.zip)")
    data = _read_json(ann)

    files: dict[int, str] = {}
    for k, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise ValueError(f"{ann}: images[{k}] lacks 'id' or 'file_name'")
        files[int(entry["id"])] = str(entry["file_name"])
    grouped: dict[int, list[tuple[int, str]]] = {}
    for k, entry in enumerate(data["annotations"]):
        if (
            not isinstance(entry, dict)
            or "image_id" not in entry
            or not isinstance(entry.get("caption"), str)
        ):
            raise ValueError(f"{ann}: annotations[{k}] lacks 'image_id' or a string 'caption'")
        image_id = int(entry["image_id"])
        if image_id not in files:
            raise ValueError(
                f"{ann}: annotations[{k}] refers to image id {image_id}, which is not in 'images'"
            )
        order = int(entry.get("id", k))
        grouped.setdefault(image_id, []).append((order, entry["caption"].strip()))
    ids = sorted(grouped)
    if max_images is not None:
        ids = ids[:max_images]
    if not ids:
        raise ValueError(f"{ann} contains no captions")
    return CocoCaptions(
        image_dir=imgs,
        image_ids=ids,
        file_names=[files[i] for i in ids],
        captions=[[c for _, c in sorted(grouped[i], key=lambda t: t[0])] for i in ids],
    )
