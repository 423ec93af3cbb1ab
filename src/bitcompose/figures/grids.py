"""Integer image grids written as PNG with Pillow (no torchvision).

Pixel values ``v ∈ {0, …, K−1}`` are shown as grey/RGB levels ``round(v·255/(K−1))``; one-channel images are grey,
three-channel images RGB, and images with any other number of channels show their channels side by side in grey.
The padding between images is mid-grey, so it stands apart from a black or white background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["make_grid", "save_grid", "displayable", "PAD_VALUE"]


PAD_VALUE = 128


def displayable(images: Tensor) -> Tensor:
    """``[B, C, H, W]`` as shown: unchanged for C ∈ {1, 3}, else the C channels side by side, ``[B, 1, H, C·W]``."""
    if images.dim() == 4 and images.shape[1] not in (1, 3):
        return torch.cat(list(images.unbind(1)), dim=-1)[:, None]
    return images


def make_grid(
    images: Tensor, nrow: int, num_values: int, padding: int = 1, pad_value: int = PAD_VALUE
) -> np.ndarray:
    """Tile integer images into one uint8 array.

    Args:
        images: integer ``[B, C, H, W]`` with values in ``0..num_values-1`` (see :func:`displayable`).
        nrow: images per row (the grid has ``ceil(B / nrow)`` rows; missing cells stay ``pad_value``).
        num_values: number of pixel values K (``K−1`` maps to 255).
        padding: pixels between and around the images.
        pad_value: uint8 value of the padding.

    Returns:
        uint8 ``[rows·(H+p)+p, nrow·(W+p)+p]`` for one channel, ``[..., ..., 3]`` for three.
    """
    if images.dim() != 4 or images.shape[1] < 1:
        raise ValueError(f"make_grid expects [B, C, H, W], got shape {tuple(images.shape)}")
    images = displayable(images)
    if images.dtype.is_floating_point or images.dtype == torch.bool:
        raise ValueError(f"make_grid expects integer images, got {images.dtype}")
    if num_values < 2:
        raise ValueError(f"num_values must be >= 2, got {num_values}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"nrow must be >= 1 and padding >= 0, got nrow={nrow}, padding={padding}")
    b, c, h, w = images.shape
    if b > 0 and (int(images.min()) < 0 or int(images.max()) >= num_values):
        raise ValueError(f"image values must lie in 0..{num_values - 1}")
    pix = (images.detach().cpu().double() * (255.0 / (num_values - 1))).round().to(torch.uint8).numpy()
    rows = max(1, -(-b // nrow))
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(b):
        r, q = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[y : y + h, x : x + w] = pix[i].transpose(1, 2, 0)
    return grid[..., 0] if c == 1 else grid


def save_grid(
    images: Tensor, path: str | Path, nrow: int, num_values: int, upscale: int = 1, padding: int = 1
) -> Path:
    """Save integer images ``[B, C, H, W]`` as one PNG grid (see :func:`make_grid`).

    Args:
        images: integer ``[B, C, H, W]``, values in ``0..num_values-1``.
        path: the ``.png`` file (parent folders are created).
        nrow: images per row.
        num_values: number of pixel values K.
        upscale: enlarge every pixel to ``upscale × upscale`` (nearest), e.g. 4 for 8×8 digits.
        padding: pixels between images (before upscaling).

    Returns:
        The path written.
    """
    if upscale < 1:
        raise ValueError(f"upscale must be >= 1, got {upscale}")
    grid = make_grid(images, nrow, num_values, padding=padding)
    if upscale > 1:
        grid = grid.repeat(upscale, axis=0).repeat(upscale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
