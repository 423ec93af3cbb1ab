"""Generate images from a trained model and score them with the in-project classifier.

Sampling is split into batches; batch ``k`` draws from a generator seeded by ``(seed, k)``, so the samples do not
depend on the batch-to-process assignment: under torchrun every rank samples batches ``k ≡ rank (mod W)`` and
rank 0 gathers them in order.

Scores (see :mod:`bitcompose.metrics.image_scores`): the classifier FID of ``m`` samples against the train split,
beside its real-vs-real floor with ``m`` held-out images (``m = min(n, held-out size)``: FID is biased by sample
size, so both use the same ``m``); the classifier KID; the class accuracy of class-conditional samples; the
fraction of invalid codes met in decoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bitcompose.data.images import ImageDataset
from bitcompose.images.config import SampleConfig
from bitcompose.images.model import LoadedModel, image_precision, sample_bits
from bitcompose.metrics.image_scores import class_accuracy, classifier_fid, classifier_kid, fid_floor
from bitcompose.nets.classifier import ImageClassifier
from bitcompose.training.dist import DistInfo, gather_to_main, mix_seed

__all__ = ["Generated", "generate", "balanced_labels", "inception_scores", "score_samples"]


@dataclass
class Generated:
    """Generated integer images.

    Attributes:
        images: int64 ``[N, C, H, W]``.
        labels: int64 ``[N]`` or None.
        invalid_fraction: fraction of symbols whose code was invalid (decoded as K−1).
        seconds: sampling wall time.
        sampling: the sampler settings used (precision resolved to ``fp32`` or ``bf16``).
        seed: the seed of the sampling noise.
        ema: whether the model's EMA weights sampled.
    """

    images: Tensor
    labels: Tensor | None
    invalid_fraction: float
    seconds: float
    sampling: SampleConfig
    seed: int
    ema: bool

    @property
    def settings(self) -> dict[str, Any]:
        """The sampler settings as reported in JSON (``steps, sampler, td, guidance, ddpm_variance, momentum,
        self_guidance, precision, seed, ema``)."""
        s = self.sampling
        return {
            "steps": s.steps,
            "sampler": s.sampler,
            "td": s.td,
            "guidance": s.guidance,
            "ddpm_variance": s.ddpm_variance,
            "momentum": s.momentum,
            "self_guidance": s.self_guidance,
            "precision": s.precision,
            "seed": self.seed,
            "ema": self.ema,
        }


def device_of(model: LoadedModel) -> torch.device:
    """The device of a loaded model's weights."""
    return next(model.denoiser.parameters()).device


def balanced_labels(n: int, num_classes: int) -> Tensor:
    """``[n]`` labels ``0, 1, …, num_classes−1, 0, 1, …``: cyclic, so every prefix is balanced over classes.

    (The FID uses the first ``m`` samples; a class-major order would leave classes out of it.)
    """
    return torch.arange(n) % num_classes


def _checked_labels(
    model: LoadedModel, n: int, labels: Tensor | None, sampling: SampleConfig
) -> Tensor | None:
    """The labels to sample (default :func:`balanced_labels`), refused in one line where they cannot be."""
    spec = model.spec
    if n < 1:
        raise ValueError(f"the number of samples must be >= 1, got {n}")
    if spec.num_classes == 0:
        if labels is not None:
            raise ValueError("this model is unconditional: class labels cannot be given")
        if sampling.guidance > 0:
            raise ValueError("guidance needs a class-conditional model")
        return None
    labels = balanced_labels(n, spec.num_classes) if labels is None else labels
    if labels.shape != (n,) or labels.dtype != torch.long:
        raise ValueError(f"labels must be int64 of shape [{n}]")
    if int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes:
        raise ValueError(f"labels must lie in 0..{spec.num_classes - 1}")
    return labels


def _sample_batches(
    model: LoadedModel,
    n: int,
    labels: Tensor | None,
    sampling: SampleConfig,
    seed: int,
    batch_size: int,
    progress: bool,
    info: DistInfo,
) -> tuple[Tensor, Tensor, Tensor]:
    """This rank's batches ``k ≡ rank (mod W)``, batch ``k`` drawn from ``Generator(mix_seed(seed, k))``:
    ``(images long [m, C, H, W], their positions long [m], invalid-code count [])``."""
    spec, nb = model.spec, model.codec.num_bits
    device = device_of(model)
    chunks, positions, invalid = [], [], torch.zeros((), dtype=torch.long)
    batches = list(range(0, n, batch_size))
    mine = [k for k in range(len(batches)) if k % info.world_size == info.rank]
    total = sum(min(batches[k] + batch_size, n) - batches[k] for k in mine)
    bar = tqdm(total=total, desc="sampling", unit="img", disable=not (progress and info.is_main))
    for k in mine:
        lo, hi = batches[k], min(batches[k] + batch_size, n)
        gen = torch.Generator(device).manual_seed(mix_seed(seed, k))
        cond = None if labels is None else labels[lo:hi].to(device)
        shape = (hi - lo, spec.channels * nb, spec.image_size, spec.image_size)
        bits = sample_bits(model.denoiser, shape, sampling, cond=cond, generator=gen)
        images, bad = model.codec.decode_images(bits, return_invalid=True)
        chunks.append(images.cpu())
        positions.append(torch.arange(lo, hi))
        invalid += bad.sum().cpu()
        bar.update(hi - lo)
    bar.close()
    empty = torch.zeros((0, spec.channels, spec.image_size, spec.image_size), dtype=torch.long)
    local = torch.cat(chunks) if chunks else empty
    pos = torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long)
    return local, pos, invalid


@torch.no_grad()
def generate(
    model: LoadedModel,
    n: int,
    sampling: SampleConfig | None = None,
    *,
    labels: Tensor | None = None,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = True,
    dist_info: DistInfo | None = None,
) -> Generated:
    """Sample ``n`` images.

    Args:
        model: a loaded model.
        n: number of images.
        sampling: the sampler settings (default the run's ``config.sample``; change fields with
            ``dataclasses.replace(model.config.sample, steps=..., ...)``); ``precision="auto"`` is resolved
            for the model's device and image size (:func:`~bitcompose.images.model.image_precision`).
        labels: ``[n]`` class labels for a conditional model (default :func:`balanced_labels`); must be None
            for an unconditional model.
        seed: seed of the sampling noise.
        batch_size: images per sampling batch.
        progress: show a bar over batches.
        dist_info: distributed placement (rank 0 receives all images; other ranks get an empty result).
    """
    info = dist_info or DistInfo(device=device_of(model))
    s = model.config.sample if sampling is None else sampling
    s = replace(s, precision=image_precision(s.precision, device_of(model), model.spec.image_size))
    labels = _checked_labels(model, n, labels, s)
    if info.is_main:
        model.young_ema_notice()
    start = time.perf_counter()
    local, pos, invalid = _sample_batches(model, n, labels, s, seed, batch_size, progress, info)
    if info.distributed:
        backend_device = info.device
        all_images = gather_to_main(local.to(backend_device), info)
        all_pos = gather_to_main(pos.to(backend_device), info)
        total_invalid = gather_to_main(invalid.reshape(1).to(backend_device), info)
        if not info.is_main:
            return Generated(local[:0], None, 0.0, time.perf_counter() - start, s, seed, model.ema)
        assert all_images is not None and all_pos is not None and total_invalid is not None
        order = torch.argsort(all_pos.cpu())
        local, invalid = all_images.cpu()[order], total_invalid.sum().cpu()
    fraction = float(invalid) / float(local.numel()) if local.numel() else 0.0
    return Generated(local, labels, fraction, time.perf_counter() - start, s, seed, model.ema)


def score_samples(
    generated: Generated,
    dataset: ImageDataset,
    classifier: ImageClassifier,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    kid_subsets: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Classifier FID (+ floor), KID, class accuracy and invalid-code fraction of generated images.

    Args:
        generated: the samples.
        dataset: the real data (same ``num_values`` as the samples); split like the classifier's training.
        classifier: the data set's classifier (``load_or_train_classifier``).
        val_fraction, split_seed: the classifier's held-out split.
        kid_subsets: number of KID subsets.
        seed: seed of the KID subsets.
    """
    train, val = dataset.split(val_fraction, split_seed)
    images = generated.images
    m = min(len(images), len(val))
    if m < 2:
        raise ValueError("scoring needs at least 2 samples")
    out: dict[str, Any] = {
        "num_samples": len(images),
        "classifier_fid": classifier_fid(classifier, images[:m], train.images),
        "classifier_fid_floor": fid_floor(classifier, dataset, val_fraction, split_seed, max_images=m),
        "fid_num_images": m,
    }
    subset = min(1000, len(images), len(train))
    kid, kid_std = classifier_kid(
        classifier, images, train.images, subsets=kid_subsets, subset_size=subset, seed=seed
    )
    out |= {"classifier_kid": kid, "classifier_kid_std": kid_std, "kid_subset_size": subset}
    if generated.labels is not None:
        out["class_accuracy"] = class_accuracy(classifier, images, generated.labels)
        per_class = []
        for c in range(int(generated.labels.max()) + 1):
            sel = generated.labels == c
            if bool(sel.any()):
                per_class.append(class_accuracy(classifier, images[sel], generated.labels[sel]))
        out["class_accuracy_per_class"] = per_class
    out["invalid_code_fraction"] = generated.invalid_fraction
    out["classifier_val_accuracy"] = classifier.info.get("val_accuracy")
    return out


def inception_scores(
    generated: Generated,
    dataset: ImageDataset,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    kid_subsets: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Inception FID and KID of generated images against the train split, beside the same for ``m`` held-out
    images (``m = min(n, held-out size)``, the floor), labels not needed (the ``fid`` extra's offline network).

    Returns:
        ``inception_fid``, ``inception_fid_floor``, ``inception_kid`` (± ``inception_kid_std``),
        ``inception_num_images`` (``m``), ``inception_seconds``.
    """
    from bitcompose.metrics.fid import (
        feature_statistics,
        kernel_inception_distance,
    )
    from bitcompose.metrics.inception import InceptionFeatures, fid_with_floor

    start = time.perf_counter()
    net = InceptionFeatures()
    train, val = dataset.split(val_fraction, split_seed)
    m = min(len(generated.images), len(val))
    if m < 2:
        raise ValueError("the Inception scores need at least 2 samples and 2 held-out images")
    k = dataset.num_values
    real = net(train.images, k)
    fake = net(generated.images[:m], k)
    fid, floor = fid_with_floor(fake, net(val.images[:m], k), feature_statistics(real))
    kid, kid_std = kernel_inception_distance(
        fake, real, subsets=kid_subsets, subset_size=min(1000, m, len(train)), seed=seed
    )
    return {
        "inception_fid": fid,
        "inception_fid_floor": floor,
        "inception_kid": kid,
        "inception_kid_std": kid_std,
        "inception_num_images": m,
        "inception_seconds": round(time.perf_counter() - start, 2),
    }
