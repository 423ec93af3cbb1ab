"""The unconditional Bit Diffusion models of the guidance experiment, in the score (x0) and the energy
parameterisation, trained with the shared trainer on the train split and cached by configuration."""

from __future__ import annotations

from pathlib import Path

from bitcompose.experiments.image_models import cached_model, small_model_config
from bitcompose.experiments.image_models import model_key as cached_model_key
from bitcompose.guidance.data import splits
from bitcompose.images.config import DataConfig, TrainConfig
from bitcompose.images.model import LoadedModel

__all__ = ["DEFAULT_STEPS", "PARAMS", "guidance_config", "load_or_train"]

PARAMS = ("score", "energy")
#: Training steps at the default budget: the energy model gets the score model's steps (an energy step costs
#: ~3× a score step, benchmarks/energy_training_unet.py: 19 min for 4,000 steps on 2 cores, the score model 6 min).
DEFAULT_STEPS = {"score": 4000, "energy": 4000}


def guidance_config(dataset: str, param: str, steps: int | None = None) -> TrainConfig:
    """The training config of the unconditional model of ``dataset`` (``param`` ``score`` or ``energy``)."""
    if param not in PARAMS:
        raise ValueError(f"param must be one of {', '.join(PARAMS)}, got {param!r}")
    size = splits(dataset)[0].image_shape[1]
    steps = DEFAULT_STEPS[param] if steps is None else steps
    data = DataConfig(name=dataset, conditional=False)
    return small_model_config(f"guidance-{dataset}-{param}", data, param, steps, attn_resolution=size // 2)


def model_key(dataset: str, param: str, steps: int | None = None) -> str:
    """The cache key of the model :func:`load_or_train` gives."""
    return cached_model_key(guidance_config(dataset, param, steps), splits(dataset)[0])


def load_or_train(
    dataset: str,
    param: str,
    *,
    steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> LoadedModel:
    """The trained unconditional model, from the cache or trained there first (EMA weights when the run is long
    enough for the EMA to have forgotten its start, see :func:`~bitcompose.experiments.image_models.use_ema`)."""
    config = guidance_config(dataset, param, steps)
    return cached_model(config, splits(dataset)[0], kind="guidance", cache=cache, progress=progress)
