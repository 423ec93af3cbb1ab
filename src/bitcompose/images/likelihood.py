"""The likelihood bound of a trained image model on held-out images, in bits per pixel-channel.

A class-conditional model is scored on ``−log p(x | y)`` with each image's own label (no guidance: a guided
sampler has no likelihood of its own). Batch ``k`` draws its times and noise from ``Generator(mix_seed(seed,
k))``, so the number does not depend on anything but the images, the batch size and the seed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bitcompose.diffusion.likelihood import bits_per_dim, nll_bound
from bitcompose.images.evaluate import device_of
from bitcompose.images.model import LoadedModel
from bitcompose.training.dist import mix_seed

__all__ = ["DEFAULT_DRAWS", "image_bpd"]

#: Monte Carlo draws of the time per image (stratified): the bound's s.e. is then dominated by the images.
DEFAULT_DRAWS = 4


def image_bpd(
    model: LoadedModel,
    images: Tensor,
    labels: Tensor | None = None,
    *,
    batch_size: int = 250,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    precision: str = "fp32",
    progress: bool = False,
    self_condition: bool | None = None,
) -> dict[str, Any]:
    """The bound of ``model`` on integer ``images`` ``[N, C, H, W]`` (with their ``labels`` ``[N]`` for a
    class-conditional model), averaged over the images; ``self_condition=False`` evaluates a self-conditioning
    model with a zero self-conditioning input (one pass) instead of its own first-pass estimate (the default).

    Returns:
        ``bpd`` (bits per pixel-channel), ``bpd_se`` (its standard error over the images), ``bpd_per_image``
        (each image's bound, bits per pixel-channel, in order: two models scored on the same images are compared
        by their paired differences), ``bpd_num_images``, ``bpd_draws``, ``bpd_conditional`` (whether it is
        ``−log p(x | y)``), ``bpd_seconds``.
    """
    spec = model.spec
    if images.ndim != 4 or tuple(images.shape[1:]) != (spec.channels, spec.image_size, spec.image_size):
        raise ValueError(
            f"images must be [N, {spec.channels}, {spec.image_size}, {spec.image_size}] for this model, "
            f"got {tuple(images.shape)}"
        )
    conditional = spec.num_classes > 0
    if conditional and (labels is None or labels.shape != (len(images),)):
        raise ValueError("a class-conditional model's bound needs the images' labels [N]")
    device = device_of(model)
    start = time.perf_counter()
    nats = []
    starts = range(0, len(images), batch_size)
    bar = tqdm(total=len(images), desc="likelihood bound", unit="img", disable=not progress)
    for k, lo in enumerate(starts):
        hi = min(lo + batch_size, len(images))
        x0 = model.codec.encode_images(images[lo:hi].to(device))
        cond = labels[lo:hi].to(device) if conditional and labels is not None else None
        gen = torch.Generator(device).manual_seed(mix_seed(seed, k))
        nats.append(
            nll_bound(
                model.denoiser,
                x0,
                cond=cond,
                generator=gen,
                draws=draws,
                values=_values(model),
                precision=precision,
                self_condition=self_condition,
            ).cpu()
        )
        bar.update(hi - lo)
    bar.close()
    dims = math.prod(images.shape[1:])
    per_image = torch.cat(nats)
    bpd, se = bits_per_dim(per_image, dims)
    return {
        "bpd": bpd,
        "bpd_se": se,
        "bpd_per_image": [round(float(v), 5) for v in per_image / (dims * math.log(2))],
        "bpd_num_images": len(images),
        "bpd_draws": draws,
        "bpd_conditional": conditional,
        "bpd_seconds": round(time.perf_counter() - start, 2),
    }


def _values(model: LoadedModel) -> Tensor | None:
    """The decoder lattice of a continuous-pixel model (``None``: the bits' ``±b``)."""
    return model.codec.lattice if model.codec.encoding == "continuous" else None
