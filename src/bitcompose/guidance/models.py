"""The unconditional Bit Diffusion models of the guidance experiment, in the score (x0) and the energy
parameterisation, trained with the shared trainer on the train split and cached by configuration."""

from __future__ import annotations

from pathlib import Path

from bitcompose.guidance.data import splits
from bitcompose.images.cache import cached_model, use_ema
from bitcompose.images.config import DataConfig, ModelConfig, OptimConfig, SampleConfig, TrainConfig
from bitcompose.images.model import LoadedModel

__all__ = ["DEFAULT_STEPS", "PARAMS", "guidance_config", "load_or_train"]

PARAMS = ("score", "energy")
#: Training steps at the default budget (measured in docs/results/guidance.md): an energy step costs ~3× a
#: score step (the score is a gradient of the network's output).
DEFAULT_STEPS = {"score": 4000, "energy": 2000}


def guidance_config(dataset: str, param: str, steps: int | None = None) -> TrainConfig:
    """The training config of the unconditional model of ``dataset`` (``param`` ``score`` or ``energy``)."""
    if param not in PARAMS:
        raise ValueError(f"param must be one of {', '.join(PARAMS)}, got {param!r}")
    size = splits(dataset)[0].image_shape[1]
    return TrainConfig(
        preset=f"guidance-{dataset}-{param}",
        seed=0,
        steps=DEFAULT_STEPS[param] if steps is None else steps,
        batch_size=64,
        log_every=100,
        checkpoint_every=500,
        data=DataConfig(name=dataset, conditional=False),
        model=ModelConfig(
            base_channels=32,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(size // 2,),
            num_groups=8,
            per_head_dim=32,
            prediction="energy" if param == "energy" else "x0",
            energy="diff",
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=200, ema_decay=0.999),
        sample=SampleConfig(sampler="ddim", steps=100),
    )


def load_or_train(
    dataset: str,
    param: str,
    *,
    steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
) -> LoadedModel:
    """The trained unconditional model, from the cache or trained there first (EMA weights when the run is long
    enough for the EMA to have forgotten its start, see :func:`~bitcompose.images.cache.use_ema`)."""
    config = guidance_config(dataset, param, steps)
    ema = config.optim.ema_decay is not None and use_ema(config.steps, config.optim.ema_decay)
    return cached_model(config, splits(dataset)[0], kind="guidance", cache=cache, progress=progress, ema=ema)
