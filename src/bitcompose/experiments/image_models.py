"""Image models trained once and kept: a run folder in the cache, keyed by the config and the data."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bitcompose.data.images import ImageDataset
from bitcompose.experiments.cache import COMPLETE, cache_key, cached, entry_path
from bitcompose.images.config import DataConfig, ModelConfig, OptimConfig, SampleConfig, TrainConfig
from bitcompose.images.model import LoadedModel, load_model
from bitcompose.images.trainer import ImageTrainer
from bitcompose.training.optim import ema_initial_share

__all__ = [
    "cached_model",
    "is_cached",
    "dataset_record",
    "model_key",
    "small_model_config",
    "train_seconds",
    "training_record",
    "use_ema",
]


def cached_model(
    config: TrainConfig,
    dataset: ImageDataset,
    *,
    kind: str,
    cache: str | Path | None = None,
    progress: bool = True,
    ema: bool | None = None,
) -> LoadedModel:
    """The model of ``config`` trained on ``dataset``: the harness's cache entry ``<cache>/<kind>/...`` (trained,
    and resumed after an interruption, there first). The key covers the training config (not its sampling
    settings) and the data's fingerprint.

    Args:
        config: the run's configuration.
        dataset: the training data.
        kind: the cache's sub-folder (e.g. ``objects``).
        cache: the cache root (default ``$BITCOMPOSE_CACHE``, else ``~/.cache/bitcompose``).
        progress: show a progress bar while training.
        ema: load the EMA weights (else the online ones); ``None``: the EMA weights when the run is long enough
            for the EMA to have forgotten its start (:func:`use_ema`).
    """

    def train(folder: Path) -> dict[str, Any]:
        try:
            result = ImageTrainer(config, folder, dataset=dataset, resume=True, progress=progress).train()
        except KeyboardInterrupt as exc:  # the trainer's hint names `train --resume`; here a rerun resumes
            said = str(exc).split("; the checkpoint", 1)[0] or "interrupted"
            raise KeyboardInterrupt(
                f"{said} while training a cached model in {folder}; its last checkpoint is kept and the same "
                "command continues its training"
            ) from None
        return {"steps": result.step, "train_seconds": result.train_seconds}

    entry = cached(kind, config.preset, _spec(config), train, data=dataset.fingerprint(), cache=cache)
    if ema is None:
        decay = config.optim.ema_decay
        ema = decay is not None and use_ema(config.steps, decay, warmup=config.optim.ema_warmup)
    return load_model(entry.path, ema=ema)


def is_cached(
    config: TrainConfig, dataset: ImageDataset, *, kind: str, cache: str | Path | None = None
) -> bool:
    """Whether :func:`cached_model` would find this model finished in the cache (no training)."""
    return (entry_path(kind, config.preset, _spec(config), dataset.fingerprint(), cache) / COMPLETE).is_file()


def _spec(config: TrainConfig) -> dict[str, Any]:
    # the sampling settings do not change the weights: left out, so that new sampler options keep the cache;
    # data.fit is left out while unset (its default), so that every key made before the field existed still holds
    spec = {k: v for k, v in config.to_dict().items() if k != "sample"}
    if spec["data"].get("fit") is None:
        spec["data"] = {k: v for k, v in spec["data"].items() if k != "fit"}
    return spec


def model_key(config: TrainConfig, dataset: ImageDataset) -> str:
    """The cache key of the model :func:`cached_model` trains from ``config`` on ``dataset`` (a results table
    records it, so that cells of another model are never reused)."""
    return cache_key(_spec(config), dataset.fingerprint())


def use_ema(steps: int, decay: float, *, warmup: bool = False) -> bool:
    """Whether an EMA of ``decay`` over ``steps`` steps has forgotten the initial weights: their share in it,
    ``Π_n d_n`` (``decay**steps`` without warm-up; ``d_n = min(decay, (1 + n)/(10 + n))`` with it, see
    :func:`~bitcompose.training.optim.ema_decay`), is below ``e**-4`` (1.8 %). Without warm-up the energy model at
    1500 steps and decay 0.999 still holds 22 % of them, and its EMA predicted ε with mean squared error 0.19 at
    t = 0.9 where its online weights reached 0.009; with warm-up the share is below 1 % after 3 steps."""
    if decay <= 0:
        return True
    if not warmup:
        return steps * -math.log(decay) >= 4.0
    return ema_initial_share(OptimConfig(ema_decay=decay, ema_warmup=True), steps) <= math.exp(-4.0)


def training_record(model: LoadedModel) -> dict[str, Any]:
    """What a results page says of a trained model: its steps and training wall time."""
    return {"steps": model.step, "train_seconds": train_seconds(model.path, model.step)}


def trained_line(trained: dict[str, dict[str, Any]]) -> str:
    """``name N steps in M min; …`` of the :func:`training_record` of each model."""
    return "; ".join(
        f"{name} {t['steps']} steps"
        + ("" if t.get("train_seconds") is None else f" in {t['train_seconds'] / 60:.1f} min")
        for name, t in trained.items()
    )


def dataset_record(dataset: ImageDataset) -> dict[str, Any]:
    """What a results page says of a data set: its name, number of levels and image shape."""
    return {
        "data_name": dataset.name,
        "num_values": dataset.num_values,
        "image_shape": list(dataset.image_shape),
    }


def train_seconds(checkpoint: Path, step: int) -> float | None:
    """The training wall time up to ``step`` of the run holding ``checkpoint`` (from its ``metrics.jsonl``; a run
    cut after its last checkpoint logs further steps, which do not count)."""
    try:
        rows = [json.loads(line) for line in (checkpoint.parent / "metrics.jsonl").read_text().splitlines()]
        return max(float(r["elapsed_s"]) for r in rows if int(r["step"]) <= step)
    except (OSError, KeyError, ValueError):
        return None


def small_model_config(
    preset: str,
    data: DataConfig,
    param: str,
    steps: int,
    attn_resolution: int,
    cond_drop_prob: float = 0.0,
    channel_mults: tuple[int, ...] = (1, 2),
) -> TrainConfig:
    """The recipe of the CPU-sized experiment models (objects, guidance): a U-Net of base 32, mults (1, 2) (or
    ``channel_mults``), one
    residual block, attention at ``attn_resolution``, self-conditioning; x0-prediction (``param="score"``) or the
    x0-form energy ``E = ‖x − α·f‖²/(2σ)`` trained on the x0 MSE (``"energy"``: it denoises as well as the x0 model,
    docs/composition.md); batch 64, Adam 1e-3 with 200 warm-up steps, EMA 0.999, seed 0. The energy models' EMA
    has a warm-up (``optim.ema_warmup``), so that it is usable at the end of a short run; the score models keep the
    recipe their results were made with."""
    return TrainConfig(
        preset=preset,
        seed=0,
        steps=steps,
        batch_size=64,
        cond_drop_prob=cond_drop_prob,
        log_every=100,
        checkpoint_every=500,
        data=data,
        model=ModelConfig(
            base_channels=32,
            channel_mults=channel_mults,
            num_res_blocks=1,
            attn_resolutions=(attn_resolution,),
            num_groups=8,
            per_head_dim=32,
            prediction="energy" if param == "energy" else "x0",
            energy="x0",
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=200, ema_decay=0.999, ema_warmup=param == "energy"),
        sample=SampleConfig(sampler="ddim", steps=100),
    )
