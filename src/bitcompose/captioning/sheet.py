"""A PNG contact sheet of images with their generated captions (Pillow only)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = ["caption_sheet"]


def caption_sheet(
    images: Tensor,
    captions: Sequence[str],
    path: str | Path,
    *,
    ids: Sequence[str] | None = None,
    zoom: int = 4,
    text_width: int = 420,
    chars_per_line: int = 58,
) -> Path:
    """Write one row per image: the image (nearest-neighbour zoom) and, right of it, its id and caption.

    Args:
        images: float ``[B, 3, H, W]`` in ``[−1, 1]``.
        captions: ``B`` strings.
        path: output PNG path.
        ids: optional ``B`` labels printed above each caption.
        zoom: integer upscaling of the images.
        text_width: pixels of the text column.
        chars_per_line: wrap width of the captions.

    Returns:
        The written path.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    if len(captions) != images.shape[0] or (ids is not None and len(ids) != len(captions)):
        raise ValueError("need one caption (and one id, if given) per image")
    b, _, h, w = images.shape
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    cell_h = max(h * zoom, 14 * 5) + 8
    sheet = Image.new("RGB", (w * zoom + text_width + 16, max(1, b) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i in range(b):
        img = Image.fromarray(np.ascontiguousarray(arr[i])).resize(
            (w * zoom, h * zoom), Image.Resampling.NEAREST
        )
        y = i * cell_h + 4
        sheet.paste(img, (4, y))
        lines = ([str(ids[i])] if ids is not None else []) + textwrap.wrap(captions[i], chars_per_line)
        for k, line in enumerate(lines):
            draw.text(
                (w * zoom + 12, y + 14 * k), line, fill=(90, 90, 90) if ids and k == 0 else "black", font=font
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
