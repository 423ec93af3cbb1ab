"""Training of the 2-D component models, with an on-disk cache keyed by the full configuration.

The recipe is the notebook's: T = 100 cosine β, ε-MSE with ``t ~ U{0..99}``, Adam (lr 1e-3), batch 1000 of fresh
exact samples per step, EMA 0.999 with the usual warm-up ``min(0.999, (1 + n)/(10 + n))`` (sampling uses the EMA weights), 15,000 steps in the paper's setting. The score
model is :class:`~bitcompose.energy.EpsModel`, the energy model :class:`~bitcompose.energy.EnergyModel`
(``E = ‖f(x, t) − x‖²``, ε := ∇ₓE, trained by double backprop).

Trained EMA weights are cached as ``<cache>/<dataset>-<param>-s<steps>-<hash>/{model.safetensors, meta.json}``;
the hash covers dataset, parameterisation, steps, batch, lr, EMA decay, seed, the network configuration and a
recipe version, so a changed setting never reuses a stale model. The cache root is ``$BITCOMPOSE_CACHE/toy2d`` when
``BITCOMPOSE_CACHE`` is set, else ``~/.cache/bitcompose/toy2d``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from bitcompose.compose.ddpm_models import EnergyModel, EpsModel, eps_loss
from bitcompose.core.schedules import DiscreteSchedule
from bitcompose.data import toy2d as data
from bitcompose.nets.mlp import ResidualMLP, ResidualMLPConfig
from bitcompose.training.ema import EMA

__all__ = [
    "DATASETS",
    "PARAMS",
    "TrainConfig",
    "TrainedModel",
    "cache_dir",
    "load_or_train",
    "make_model",
    "train",
]

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
#: Diffusion levels T of the 2-D models (the notebook's 100 cosine steps).
NUM_LEVELS = 100


@dataclass(frozen=True)
class TrainConfig:
    """One component model's training run (defaults: the notebook's recipe)."""

    dataset: str
    param: str = "score"
    steps: int = 15_000
    batch: int = 1000
    lr: float = 1e-3
    ema: float = 0.999
    seed: int = 0
    num_steps: int = NUM_LEVELS  # diffusion steps T (cosine β)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown toy2d dataset {self.dataset!r}; choose from {sorted(DATASETS)}")
        if self.param not in PARAMS:
            raise ValueError(f"param must be one of {PARAMS}, got {self.param!r}")
        if self.steps < 0 or self.batch < 1 or self.lr <= 0 or not 0 <= self.ema < 1 or self.num_steps < 1:
            raise ValueError(f"invalid training configuration {self}")

    def net_config(self) -> ResidualMLPConfig:
        """The network architecture (the notebook's residual MLP for T levels)."""
        return ResidualMLPConfig(num_steps=self.num_steps)

    def key(self) -> str:
        """Cache directory name: readable prefix plus a hash of every setting."""
        payload = {
            "train": dataclasses.asdict(self),
            "net": dataclasses.asdict(self.net_config()),
            "recipe": RECIPE_VERSION,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.dataset}-{self.param}-s{self.steps}-{digest}"


@dataclass
class TrainedModel:
    """A trained (EMA) model wrapped for composition, plus its training record."""

    model: EpsModel | EnergyModel
    config: TrainConfig
    final_loss: float
    seconds: float
    from_cache: bool


def cache_dir(root: str | Path | None = None) -> Path:
    """The cache root: ``root`` if given, else ``$BITCOMPOSE_CACHE/toy2d``, else ``~/.cache/bitcompose/toy2d``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("BITCOMPOSE_CACHE")
    return Path(env) / "toy2d" if env else Path.home() / ".cache" / "bitcompose" / "toy2d"


def make_model(config: TrainConfig, net: nn.Module | None = None) -> EpsModel | EnergyModel:
    """Wrap ``net`` (default: a fresh residual MLP seeded by ``config.seed``) in the configured parameterisation."""
    if net is None:
        net = ResidualMLP(config.net_config(), generator=torch.Generator().manual_seed(config.seed))
    schedule = DiscreteSchedule.cosine(config.num_steps)
    if config.param == "energy":
        return EnergyModel(net, schedule, kind="diff")
    return EpsModel(net, schedule)


def train(config: TrainConfig, *, progress: bool = False) -> TrainedModel:
    """Train one model from scratch (no cache). Returns the EMA model in eval mode.

    Randomness: the initialisation uses ``Generator(seed)``, the data and noise ``Generator(seed + 1)``.
    """
    model = make_model(config)
    dist = DATASETS[config.dataset]
    gen = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    ema = EMA(model.net, config.ema)
    model.train()
    start = time.perf_counter()
    loss_avg = float("nan")
    bar = tqdm(range(config.steps), desc=f"train {config.dataset}/{config.param}", disable=not progress)
    for step in bar:
        loss = eps_loss(model, dist.sample(config.batch, gen), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # EMA warm-up (as TensorFlow's ExponentialMovingAverage with num_updates): early steps average faster, so a
        # short run is not biased towards the zero-output initialisation; after ~10k steps this is the plain EMA.
        ema.decay = min(config.ema, (1 + step) / (10 + step))
        ema.update(model.net)
        value = float(loss.detach())
        loss_avg = value if step == 0 else 0.99 * loss_avg + 0.01 * value
        if progress and step % 100 == 0:
            bar.set_postfix(loss=f"{loss_avg:.4f}")
    ema.copy_to(model.net)
    model.eval()
    model.requires_grad_(False)
    return TrainedModel(model, config, loss_avg, time.perf_counter() - start, from_cache=False)


def load_or_train(
    config: TrainConfig, *, cache: str | Path | None = None, use_cache: bool = True, progress: bool = False
) -> TrainedModel:
    """Load the model for ``config`` from the cache, or train it and store it there.

    Args:
        config: the training configuration (its :meth:`TrainConfig.key` names the cache entry).
        cache: cache root (default: :func:`cache_dir`).
        use_cache: ``False`` trains without reading or writing the cache.
        progress: show a tqdm bar while training.
    """
    if not use_cache:
        return train(config, progress=progress)
    entry = cache_dir(cache) / config.key()
    weights, meta_path = entry / "model.safetensors", entry / "meta.json"
    if weights.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        model = make_model(config)
        model.net.load_state_dict(load_file(str(weights)), strict=True)
        model.eval()
        model.requires_grad_(False)
        return TrainedModel(model, config, meta["final_loss"], meta["seconds"], from_cache=True)
    result = train(config, progress=progress)
    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / f".model.{os.getpid()}.tmp"
    save_file({k: v.contiguous() for k, v in result.model.net.state_dict().items()}, str(tmp))
    meta = {
        "config": dataclasses.asdict(config),
        "net": dataclasses.asdict(config.net_config()),
        "recipe": RECIPE_VERSION,
        "final_loss": result.final_loss,
        "seconds": result.seconds,
        "torch": torch.__version__,
    }
    tmp_meta = entry / f".meta.{os.getpid()}.tmp"
    tmp_meta.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, weights)
    os.replace(tmp_meta, meta_path)
    return result
