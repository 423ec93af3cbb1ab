"""The models of the objects experiment: Bit Diffusion U-Nets on the objects-at-positions scenes, conditioned on
ONE object's position (its grid cell) or on ONE object's prompt (colour and shape), with a null condition (label
dropout 0.1) for the unconditional model, in the score (x0) or the energy parameterisation; trained with the
shared trainer and cached by configuration."""

from __future__ import annotations

import functools
from pathlib import Path

from bitcompose.data.images import ImageDataset
from bitcompose.data.objects import ObjectScenes, make_object_scenes
from bitcompose.experiments.image_models import cached_model, is_cached, small_model_config, use_ema
from bitcompose.experiments.image_models import model_key as cached_model_key
from bitcompose.images.config import DataConfig, TrainConfig
from bitcompose.images.model import LoadedModel

__all__ = [
    "CONDITIONS",
    "PARAMS",
    "TRAIN_SCENES",
    "objects_config",
    "train_scenes",
    "test_scenes",
    "load_or_train",
    "is_trained",
    "use_ema",
]

CONDITIONS = ("position", "prompt")
PARAMS = ("score", "energy")
#: Scenes the models and the evaluator learn from (each gives one example per object), and their seed.
TRAIN_SCENES, TRAIN_SEED = 12_000, 0
#: Training steps at the default budget: the energy model gets the score model's steps (an energy step costs ~3×
#: a score step, benchmarks/energy_training_unet.py: about 30 min for 4,000 steps on 2 cores, the score model 10).
DEFAULT_STEPS = {"score": 4000, "energy": 4000}


@functools.cache
def train_scenes() -> ObjectScenes:
    """The training scenes (deterministic)."""
    return make_object_scenes(TRAIN_SCENES, seed=TRAIN_SEED)


@functools.cache
def test_scenes() -> ObjectScenes:
    """Held-out scenes for the evaluator's accuracy (another seed)."""
    return make_object_scenes(2000, seed=TRAIN_SEED + 1)


def objects_config(condition: str, param: str, steps: int | None = None) -> TrainConfig:
    """The training config of one model (``condition`` ``position`` or ``prompt``; ``param`` score or energy)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    if param not in PARAMS:
        raise ValueError(f"param must be one of {PARAMS}, got {param!r}")
    steps = DEFAULT_STEPS[param] if steps is None else steps
    data = DataConfig(name=f"objects-{condition}", conditional=True)
    return small_model_config(f"objects-{condition}-{param}", data, param, steps, 8, cond_drop_prob=0.1)


def _dataset(condition: str) -> ImageDataset:
    scenes = train_scenes()
    return scenes.position_dataset() if condition == "position" else scenes.prompt_dataset()


def model_key(condition: str, param: str, steps: int | None = None) -> str:
    """The cache key of the model :func:`load_or_train` gives."""
    return cached_model_key(objects_config(condition, param, steps), _dataset(condition))


def is_trained(condition: str, param: str, steps: int | None = None, cache: str | Path | None = None) -> bool:
    """Whether the model :func:`load_or_train` gives is already in the cache."""
    return is_cached(
        objects_config(condition, param, steps), _dataset(condition), kind="objects", cache=cache
    )


def load_or_train(
    condition: str,
    param: str,
    *,
    steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> LoadedModel:
    """The trained model, from the cache or trained there first: the EMA weights when the run is long enough for
    the EMA to have forgotten its start (:func:`use_ema`), else the online weights."""
    config = objects_config(condition, param, steps)
    return cached_model(config, _dataset(condition), kind="objects", cache=cache, progress=progress)
