"""Training of the 2-D component models, with an on-disk cache keyed by the full configuration.

The recipe is the notebook's: T = 100 cosine β, ε-MSE with ``t ~ U{0..99}``, Adam (lr 1e-3), batch 1000 of
fresh exact samples per step, EMA 0.999 with the usual warm-up ``min(0.999, (1 + n)/(10 + n))`` (sampling uses
the EMA weights), 15,000 steps in the paper's setting. The score model is
:class:`~bitcompose.compose.ddpm_models.EpsModel`, the energy model
:class:`~bitcompose.compose.ddpm_models.EnergyModel` (``E = ‖f(x, t) − x‖²``, ε := ∇ₓE, trained by double backprop).
Training runs on the shared stack (:mod:`bitcompose.training.loop`) and is resumable.

Each model is an entry of the harness's cache (:mod:`bitcompose.experiments.cache`, kind ``toy2d``): a run folder
with ``checkpoint/`` (the EMA weights) and ``metrics.jsonl``; its key covers dataset, parameterisation, steps, batch,
lr, EMA decay, seed, the network configuration and a recipe version, so a changed setting never reuses a stale
model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bitcompose.compose.ddpm_models import (
    EnergyModel,
    EpsModel,
    denoising_loss,
    eps_loss,
    functional_denoising_loss,
)
from bitcompose.core.config import Config
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.data import toy2d as data
from bitcompose.experiments.cache import cached, entry_path
from bitcompose.nets.mlp import ResidualMLP, ResidualMLPConfig
from bitcompose.training.checkpoint import load_checkpoint, load_state_strict
from bitcompose.training.loop import CHECKPOINT_DIR, RunFolder, Trainer
from bitcompose.training.optim import OptimConfig

__all__ = [
    "DATASETS",
    "PARAMS",
    "SCHEDULES",
    "TrainConfig",
    "TrainedModel",
    "load_or_train",
    "make_model",
    "train",
]

#: The cache's sub-folder of the 2-D models.
KIND = "toy2d"
# Bump when the training recipe changes in a way the configuration does not capture.
RECIPE_VERSION = 1

Sampler = Callable[[int, torch.Generator], torch.Tensor]

#: The six component data sets of the three tasks (name -> distribution with ``sample(n, generator)``).
DATASETS: dict[str, data.GaussianRing | data.UniformRects] = {
    "ring": data.toy_gmm(8, std=0.03, radius=0.5),
    "bar": data.bar(0.2),
    "left_bar": data.left_bar(0.1),
    "right_bar": data.right_bar(0.1),
    "box_0.7": data.toy_box(0.7),
    "box_0.3": data.toy_box(0.3),
}

PARAMS = ("score", "energy")
#: The β schedules of the 2-D models: the released notebook's cosine, or the linear one of Ho et al.
SCHEDULES = ("cosine", "linear")
#: Diffusion levels T of the 2-D models (the notebook's 100 cosine steps).
NUM_LEVELS = 100
#: Steps between checkpoints of a cached training run.
CHECKPOINT_EVERY = 1000


@dataclass(frozen=True)
class TrainConfig(Config):
    """One component model's training run (defaults: the notebook's recipe)."""

    dataset: str
    param: str = "score"
    steps: int = 15_000
    batch: int = 1000
    lr: float = 1e-3
    ema: float = 0.999
    seed: int = 0
    num_steps: int = NUM_LEVELS  # diffusion steps T
    schedule: str = "cosine"
    compile: bool = False  # torch.compile the loss (energy models: ≈ 1.35× faster after ≈ 50 s of compiling)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown toy2d dataset {self.dataset!r}; choose from {sorted(DATASETS)}")
        if self.param not in PARAMS:
            raise ValueError(f"param must be one of {PARAMS}, got {self.param!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.steps < 0 or self.batch < 1 or self.lr <= 0 or not 0 <= self.ema < 1 or self.num_steps < 1:
            raise ValueError(f"invalid training configuration {self}")

    def net_config(self) -> ResidualMLPConfig:
        """The network architecture (the notebook's residual MLP for T levels)."""
        return ResidualMLPConfig(num_steps=self.num_steps)

    def spec(self) -> dict[str, Any]:
        """What the weights depend on (the cache's spec): every setting but ``compile``, the network, the recipe."""
        train = self.to_dict()
        train.pop("compile")  # how the loss is computed, not what is learned
        return {"train": train, "net": self.net_config().to_dict(), "recipe": RECIPE_VERSION}

    def name(self) -> str:
        """The readable part of the cache entry's name."""
        return f"{self.dataset}-{self.param}-s{self.steps}"

    def key(self) -> str:
        """The cache entry's folder name: :meth:`name` plus the key of :meth:`spec`."""
        return entry_path(KIND, self.name(), self.spec()).name


@dataclass
class TrainedModel:
    """A trained (EMA) model wrapped for composition, plus its training record."""

    model: EpsModel | EnergyModel
    config: TrainConfig
    final_loss: float
    seconds: float
    from_cache: bool


def make_model(config: TrainConfig, net: nn.Module | None = None) -> EpsModel | EnergyModel:
    """Wrap ``net`` (default: a fresh residual MLP seeded by ``config.seed``) in the configured parameterisation."""
    if net is None:
        net = ResidualMLP(config.net_config(), generator=torch.Generator().manual_seed(config.seed))
    schedule = (DiscreteSchedule.linear if config.schedule == "linear" else DiscreteSchedule.cosine)(
        config.num_steps
    )
    if config.param == "energy":
        return EnergyModel(net, schedule, kind="diff")
    return EpsModel(net, schedule)


def optim_config(config: TrainConfig) -> OptimConfig:
    """The notebook's optimiser: Adam at a constant learning rate, no clipping, EMA with warm-up."""
    return OptimConfig(name="adam", lr=config.lr, grad_clip=0.0, ema_decay=config.ema, ema_warmup=True)


class ToyTask:
    """ε-MSE (:func:`~bitcompose.compose.ddpm_models.eps_loss`) on a fresh batch of exact samples per step.

    Args:
        config: the run.
        model: the ε or energy model around the network being trained.
    """

    def __init__(self, config: TrainConfig, model: EpsModel | EnergyModel) -> None:
        self.model, self.module = model, model.net
        self.batch_size = config.batch
        self.dist = DATASETS[config.dataset]
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.loss_fn = torch.compile(functional_denoising_loss) if config.compile else denoising_loss

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """The ε-MSE of one batch."""
        x0 = self.dist.sample(self.batch_size, self.generator)
        return eps_loss(self.model, x0, generator=self.generator, loss_fn=self.loss_fn)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])


def train(config: TrainConfig, *, run_dir: str | Path | None = None, progress: bool = False) -> TrainedModel:
    """Train one model (resuming from ``run_dir/checkpoint`` when there is one). Returns the EMA model in eval
    mode.

    Randomness: the initialisation uses ``Generator(seed)``, the data and noise ``Generator(seed + 1)``.
    """
    model = make_model(config)
    run_dir = None if run_dir is None else Path(run_dir)
    resume = run_dir is not None and (run_dir / CHECKPOINT_DIR).exists()
    trainer = Trainer(
        ToyTask(config, model),
        optim_config(config),
        steps=config.steps,
        folder=None
        if run_dir is None
        else RunFolder(
            run_dir,
            {"kind": "toy2d", "train": config.to_dict(), "net": config.net_config().to_dict()},
            resume=resume,
            checkpoint_every=CHECKPOINT_EVERY,
        ),
        log_every=100,
        progress=progress,
        desc=f"train {config.dataset}/{config.param}",
    )
    result = trainer.train()
    assert trainer.ema is not None
    trainer.ema.copy_to(model.net)
    model.eval()
    model.requires_grad_(False)
    return TrainedModel(model, config, result.loss, trainer.seconds, from_cache=False)


def load_or_train(
    config: TrainConfig, *, cache: str | Path | None = None, use_cache: bool = True, progress: bool = False
) -> TrainedModel:
    """Load the model for ``config`` from the harness's cache (kind ``toy2d``), or train it there (resumably).

    Args:
        config: the training configuration (its :meth:`TrainConfig.spec` keys the cache entry).
        cache: the cache root (default ``$BITCOMPOSE_CACHE``, else ``~/.cache/bitcompose``).
        use_cache: ``False`` trains without reading or writing the cache.
        progress: show a tqdm bar while training.
    """
    if not use_cache:
        return train(config, progress=progress)

    def fit(folder: Path) -> dict[str, Any]:
        result = train(config, run_dir=folder, progress=progress)
        return {"final_loss": result.final_loss, "seconds": result.seconds}

    entry = cached(KIND, config.name(), config.spec(), fit, cache=cache)
    ckpt = load_checkpoint(entry.path / CHECKPOINT_DIR)
    model = make_model(config)
    assert ckpt.ema_state is not None
    load_state_strict(model.net, ckpt.ema_state, what=f"EMA weights of {entry.path}")
    model.eval()
    model.requires_grad_(False)
    return TrainedModel(
        model, config, entry.record["final_loss"], entry.record["seconds"], from_cache=not entry.fresh
    )
