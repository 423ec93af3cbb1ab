"""Training of image Bit Diffusion models on the shared training stack (:mod:`bitcompose.training.loop`).

Randomness. Nothing uses the global RNG except the weight initialisation, which runs inside
``torch.random.fork_rng`` with a seed derived from ``config.seed``. The data order and every per-example random
draw (flip, t, noise, self-conditioning mask, label dropout) are functions of ``(seed, step, global position in the
batch)`` (:mod:`bitcompose.training.dist`), so

* resuming from a checkpoint continues *exactly* as an uninterrupted run (bitwise on CPU), and
* ``W`` ranks with batch ``B/W`` each compute the same gradients as one process with batch ``B``.

Preview grids at step ``s`` are drawn from a generator seeded by ``(seed, s)``.

Files in the run folder: ``config.json`` (the run config), ``metrics.jsonl``, ``samples/step_NNNNNNN.png`` and
``checkpoint/``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bitcompose.core.config import diff_keys
from bitcompose.data.images import ImageDataset, load_image_dataset, random_flip
from bitcompose.diffusion import LossDraws, diffusion_loss
from bitcompose.diffusion.masked import MaskedDenoiser, masked_loss, normal_to_uniform
from bitcompose.figures.grids import save_grid
from bitcompose.images.config import TrainConfig, data_problems
from bitcompose.images.model import (
    DataSpec,
    ImageDenoiser,
    build_codec,
    build_unet,
    checkpoint_config,
    image_precision,
    make_denoiser,
    parse_checkpoint_config,
    sample_bits,
)
from bitcompose.training.dist import DistInfo, GlobalBatchOrder, example_seed, init_distributed, mix_seed
from bitcompose.training.loop import Preview, RunFolder, Trainer, TrainResult
from bitcompose.training.optim import learning_rate as _learning_rate

__all__ = [
    "ImageTask",
    "ImageTrainer",
    "TrainResult",
    "load_training_data",
    "data_spec_for",
    "learning_rate",
    "sample_grid",
]

# Settings that may change when a run is resumed (they do not change what is computed).
RESUMABLE_KEYS = ("steps", "log_every", "sample_every", "checkpoint_every", "compile", "device", "precision")


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of the run ``config``."""
    return _learning_rate(config.optim, step, config.steps)


def load_training_data(config: TrainConfig) -> ImageDataset:
    """Load the data set named by ``config.data``."""
    d = config.data
    return load_image_dataset(
        d.name, root=d.root, path=d.path, levels=d.levels, max_images=d.max_images, fit=d.fit
    )


def data_spec_for(config: TrainConfig, dataset: ImageDataset) -> DataSpec:
    """The :class:`DataSpec` of ``dataset`` for ``config``; every way the data do not suit the config is
    reported together in one ``ValueError``."""
    c, h, w = dataset.image_shape
    problems = data_problems(config, channels=c, height=h, width=w, num_classes=dataset.num_classes)
    if len(dataset) == 0:
        problems.append("the data set is empty")
    if problems:
        raise ValueError(f"dataset {dataset.name!r} does not suit the config: " + "; ".join(problems))
    classes = dataset.num_classes if config.data.conditional else 0
    return DataSpec(
        channels=c, image_size=h, num_values=dataset.num_values, num_classes=classes, name=dataset.name
    )


@torch.no_grad()
def sample_grid(
    denoiser: ImageDenoiser,
    config: TrainConfig,
    spec: DataSpec,
    generator: torch.Generator,
    *,
    per_class: int = 10,
    unconditional: int = 64,
    progress: bool = False,
) -> tuple[Tensor, Tensor | None, int]:
    """Sample a preview grid: one row per class (first 10 classes) or an 8×8 grid for unconditional models.

    Returns:
        ``(images long [B, C, H, W], labels long [B] or None, images per row)``.
    """
    codec = build_codec(config.model, spec.num_values)
    device = next(denoiser.parameters()).device
    if spec.num_classes > 0:
        classes = min(spec.num_classes, 10)
        labels: Tensor | None = torch.arange(classes, device=device).repeat_interleave(per_class)
        n, nrow = classes * per_class, per_class
    else:
        labels, n, nrow = None, unconditional, 8
    shape = (n, spec.channels * codec.num_bits, spec.image_size, spec.image_size)
    sampling = config.sample if labels is not None else dataclasses.replace(config.sample, guidance=0.0)
    bits = sample_bits(denoiser, shape, sampling, cond=labels, generator=generator, progress=progress)
    return codec.decode_images(bits).cpu(), None if labels is None else labels.cpu(), nrow


class ImageTask:
    """The image Bit Diffusion training task: per-example deterministic batches and :func:`diffusion_loss`.

    Args:
        config: the run configuration.
        dataset: the training data.
        spec: the data spec of ``dataset``.
        module: the U-Net.
        order: this rank's part of the global batch order.
        device: where the batches go.
    """

    def __init__(
        self,
        config: TrainConfig,
        dataset: ImageDataset,
        spec: DataSpec,
        module: nn.Module,
        order: GlobalBatchOrder,
        device: torch.device,
    ) -> None:
        self.config, self.dataset, self.spec, self.module = config, dataset, spec, module
        self.order, self.device = order, device
        self.codec = build_codec(config.model, spec.num_values)
        self.batch_size = config.batch_size
        self._noise_gen = torch.Generator(device)
        self._example_gen = torch.Generator()
        self._denoisers: dict[int, ImageDenoiser] = {}

    def make_batch(self, step: int) -> dict[str, Any]:
        """This rank's examples of ``step`` and their random draws (see the module docstring)."""
        cfg = self.config
        idx = self.order.indices(step)
        images = self.dataset.images[idx].clone()
        labels = (
            self.dataset.labels[idx] if cfg.data.conditional and self.dataset.labels is not None else None
        )
        n = len(idx)
        uniforms = torch.empty(n, 3)
        noise = torch.empty(
            (n, self.spec.channels * self.codec.num_bits, self.spec.image_size, self.spec.image_size),
            device=self.device,
        )
        g, gn = self._example_gen, self._noise_gen
        for j, pos in enumerate(self.order.positions(step).tolist()):
            s = example_seed(cfg.seed, step, pos)
            g.manual_seed(s)
            if cfg.data.random_flip:
                images[j : j + 1] = random_flip(images[j : j + 1], g)
            uniforms[j] = torch.rand(3, generator=g)
            gn.manual_seed(mix_seed(s, 1))
            noise[j] = torch.randn(noise.shape[1:], generator=gn, device=self.device)
        uniforms = uniforms.to(self.device)
        drop = uniforms[:, 2] < cfg.cond_drop_prob if labels is not None and cfg.cond_drop_prob > 0 else None
        return {
            "x0": self.codec.encode_images(images.to(self.device)),
            "labels": None if labels is None else labels.to(self.device),
            "t": uniforms[:, 0],
            "self_cond_mask": uniforms[:, 1] < cfg.self_cond_prob,
            "cond_drop_mask": drop,
            "noise": noise,
        }

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """The Bit Diffusion loss of ``step`` through ``net`` (the U-Net, possibly DDP/compiled)."""
        cfg = self.config
        den = self._denoisers.get(id(net))
        if den is None:
            den = self._denoisers[id(net)] = make_denoiser(net, cfg.model, self.codec.num_values)
        batch = self.make_batch(step)
        if isinstance(den, MaskedDenoiser):
            k = self.codec.num_values
            return masked_loss(
                den,
                batch["x0"],
                t=batch["t"],
                uniforms=normal_to_uniform(batch["noise"][:, ::k]),
                cond=batch["labels"],
            )
        return diffusion_loss(
            den,
            batch["x0"],
            cond=batch["labels"],
            self_cond_prob=cfg.self_cond_prob,
            cond_drop_prob=cfg.cond_drop_prob if batch["cond_drop_mask"] is not None else 0.0,
            draws=LossDraws(batch["t"], batch["noise"], batch["self_cond_mask"], batch["cond_drop_mask"]),
            target=None if cfg.model.loss_target == "auto" else cfg.model.loss_target,  # type: ignore[arg-type]
        ).loss

    def state_dict(self) -> dict[str, Any]:
        """Nothing: every draw is a function of ``(seed, step, position)``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


class ImageTrainer:
    """Trains a class-conditional or unconditional image Bit Diffusion model.

    Args:
        config: the run configuration.
        run_dir: output folder (created).
        dataset: the training data (default: loaded from ``config.data``).
        resume: continue from ``run_dir/checkpoint`` when it exists (its config must match ``config`` except
            for :data:`RESUMABLE_KEYS`).
        progress: show a tqdm bar (rank 0 only).
        dist_info: distributed placement (default: from the torchrun environment).

    Attributes:
        loop: the shared :class:`~bitcompose.training.loop.Trainer` doing the work.
        task: the :class:`ImageTask`.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        dataset: ImageDataset | None = None,
        resume: bool = False,
        progress: bool = True,
        dist_info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.info = dist_info if dist_info is not None else init_distributed(config.device)
        self.device = self.info.device
        self.dataset = dataset if dataset is not None else load_training_data(config)
        self.spec = data_spec_for(config, self.dataset)
        self.codec = build_codec(config.model, self.spec.num_values)
        self.order = GlobalBatchOrder(
            len(self.dataset), config.batch_size, config.seed, self.info.rank, self.info.world_size
        )
        with torch.random.fork_rng(devices=[]):  # deterministic init without touching the caller's RNG
            torch.manual_seed(mix_seed(config.seed, 2))
            net = build_unet(config.model, self.spec, self.codec)
        self.net = net.to(self.device)
        self.task = ImageTask(config, self.dataset, self.spec, self.net, self.order, self.device)
        self.preview_generator = torch.Generator(self.device)
        if resume and not (self.run_dir / "checkpoint").exists() and self.info.is_main:
            print(f"bitcompose: no checkpoint in {self.run_dir}; starting a new run", file=sys.stderr)
        self.precision = image_precision(config.precision, self.device, self.spec.image_size)
        self.loop = Trainer(
            self.task,
            config.optim,
            steps=config.steps,
            folder=RunFolder(
                self.run_dir,
                checkpoint_config(config, self.spec),
                resume,
                config.checkpoint_every,
                self._check_resume,
            ),
            log_every=config.log_every,
            preview=Preview(self._preview, config.sample_every),
            precision=self.precision,
            compile=config.compile,
            dist_info=self.info,
            progress=progress,
        )

    # attributes of the loop, for callers of the image trainer
    @property
    def step(self) -> int:
        """Optimiser steps done."""
        return self.loop.step

    @property
    def ema(self) -> Any:
        """The EMA of the weights (``None`` without EMA)."""
        return self.loop.ema

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser."""
        return self.loop.optimizer

    def _check_resume(self, stored: dict[str, Any]) -> None:
        folder = self.run_dir / "checkpoint"
        saved, spec = parse_checkpoint_config(stored, where=str(folder))
        diffs = [k for k in diff_keys(self.config.to_dict(), saved.to_dict()) if k not in RESUMABLE_KEYS]
        if diffs:
            raise ValueError(
                f"cannot resume {folder}: the config differs from the checkpoint's in {', '.join(diffs)}"
            )
        if spec != self.spec:
            raise ValueError(
                f"cannot resume {folder}: the data differ from the checkpoint's ({spec} vs {self.spec})"
            )

    def _preview(self, module: nn.Module, step: int) -> Path:
        """Sample a grid with ``module`` (the EMA weights) into ``samples/step_NNNNNNN.png``."""
        self.preview_generator.manual_seed(mix_seed(self.config.seed, 3, step))
        den = make_denoiser(module, self.config.model, self.spec.num_values)
        images, _, nrow = sample_grid(den, self.config, self.spec, self.preview_generator)
        upscale = max(1, 64 // self.spec.image_size)
        return save_grid(
            images, self.run_dir / "samples" / f"step_{step:07d}.png", nrow, self.spec.num_values, upscale
        )

    def make_batch(self, step: int) -> dict[str, Any]:
        """This rank's examples of ``step`` (see :meth:`ImageTask.make_batch`)."""
        return self.task.make_batch(step)

    def train_step(self) -> tuple[Tensor, Tensor]:
        """One optimiser step (see :meth:`~bitcompose.training.loop.Trainer.train_step`)."""
        return self.loop.train_step()

    def save(self) -> Path | None:
        """Write ``run_dir/checkpoint`` (rank 0)."""
        return self.loop.save()

    def train(self, until: int | None = None) -> TrainResult:
        """Train up to step ``until`` (default ``config.steps``); writes ``config.json`` first."""
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(self.config.to_json() + "\n")
        return self.loop.train(until)
