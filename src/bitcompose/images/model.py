"""Build the codec, U-Net and denoiser of a run from its config, and load a trained model from a checkpoint.

The checkpoint's ``config.json`` holds ``{"format", "train": TrainConfig dict, "data": DataSpec dict}``: the data
spec (channels, image size, number of pixel values and of classes) is what the model needs besides the config, so
a checkpoint can be sampled without the training data.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bitcompose.core.bits import BitCodec
from bitcompose.core.config import Config
from bitcompose.core.grid import TimeGrid
from bitcompose.core.precision import resolve_precision
from bitcompose.diffusion import BitDenoiser
from bitcompose.diffusion.as_model import cfg_model
from bitcompose.diffusion.masked import MaskedDenoiser, masked_sample
from bitcompose.diffusion.options import SamplingOptions
from bitcompose.diffusion.samplers import sample_model
from bitcompose.images.config import ModelConfig, SampleConfig, TrainConfig
from bitcompose.nets.unet import UNet, UNetConfig
from bitcompose.training.checkpoint import find_checkpoint, load_checkpoint, load_state_strict
from bitcompose.training.optim import ema_initial_share

__all__ = [
    "CHECKPOINT_FORMAT",
    "DataSpec",
    "LoadedModel",
    "build_codec",
    "build_unet",
    "ImageDenoiser",
    "make_denoiser",
    "checkpoint_config",
    "parse_checkpoint_config",
    "load_model",
    "sample_bits",
    "sampling_options",
    "image_precision",
    "MIN_BF16_IMAGE_SIZE",
]

CHECKPOINT_FORMAT = "bitcompose.image-bit-diffusion/1"


@dataclass(frozen=True)
class DataSpec(Config):
    """What the model must know about the data.

    Attributes:
        channels: image channels C.
        image_size: height = width.
        num_values: pixel values K.
        num_classes: classes the model is conditioned on (0: unconditional).
        name: the data set's name (informative).
    """

    channels: int
    image_size: int
    num_values: int
    num_classes: int
    name: str = ""

    def __post_init__(self) -> None:
        if self.channels < 1 or self.image_size < 1 or self.num_values < 2 or self.num_classes < 0:
            raise ValueError(f"invalid data spec {self}")


#: Below this image size, ``auto`` trains in fp32 on the CPU: the convolutions are too small for bf16 to pay off
#: (measured in docs/performance.md: 8×8 digits run 15 % slower under bf16 autocast, 28×28 and 32×32 nets 30–60 %
#: faster).
MIN_BF16_IMAGE_SIZE = 16


def image_precision(precision: str, device: torch.device, image_size: int) -> str:
    """``fp32`` or ``bf16`` for an image model: :func:`~bitcompose.core.precision.resolve_precision`, except that
    ``auto`` keeps fp32 on the CPU for images smaller than :data:`MIN_BF16_IMAGE_SIZE`."""
    if precision == "auto" and device.type == "cpu" and image_size < MIN_BF16_IMAGE_SIZE:
        return "fp32"
    return resolve_precision(precision, device)


def build_codec(model: ModelConfig, num_values: int) -> BitCodec:
    """The :class:`BitCodec` of a model config for ``num_values`` pixel values."""
    return BitCodec(num_values=num_values, encoding=model.encoding, scale=model.scale)


def unet_config_for(model: ModelConfig, spec: DataSpec, codec: BitCodec) -> UNetConfig:
    """The :class:`UNetConfig` for a model config and the data it is trained on."""
    softmax = model.output_head == "softmax"
    return UNetConfig(
        data_channels=spec.channels * codec.num_bits,
        image_size=spec.image_size,
        base_channels=model.base_channels,
        channel_mults=model.channel_mults,
        num_res_blocks=model.num_res_blocks,
        attn_resolutions=model.attn_resolutions,
        num_classes=spec.num_classes,
        dropout=model.dropout,
        self_condition=model.self_condition,
        per_head_dim=model.per_head_dim,
        num_groups=model.num_groups,
        time_scaling=model.time_scaling,
        output_head=model.output_head,
        softmax_groups=spec.channels if softmax else 0,
        softmax_num_values=spec.num_values if softmax else 0,
    )


def build_unet(model: ModelConfig, spec: DataSpec, codec: BitCodec) -> UNet:
    """A freshly initialised U-Net (uses the global RNG for the init: seed it, or load weights)."""
    cfg = unet_config_for(model, spec, codec)
    table = codec.code_table() if model.output_head == "softmax" else None
    return UNet(cfg, code_table=table)


ImageDenoiser = BitDenoiser | MaskedDenoiser


def make_denoiser(net: torch.nn.Module, model: ModelConfig, num_values: int) -> ImageDenoiser:
    """Wrap a network (plain, DDP or compiled) into the run's denoiser: a :class:`BitDenoiser`, or for
    ``model.prediction == "masked"`` the absorbing-state :class:`MaskedDenoiser` over ``num_values`` symbols."""
    if model.prediction == "masked":
        return MaskedDenoiser(net, num_values=num_values, scale=model.scale)
    return BitDenoiser(
        net,
        scale=model.scale,
        prediction=model.prediction,  # type: ignore[arg-type]
        self_condition=model.self_condition,
        energy=model.energy,
    )


def checkpoint_config(config: TrainConfig, spec: DataSpec) -> dict[str, Any]:
    """The JSON stored as a checkpoint's ``config.json``."""
    return {"format": CHECKPOINT_FORMAT, "train": config.to_dict(), "data": spec.to_dict()}


def parse_checkpoint_config(data: dict[str, Any], where: str = "checkpoint") -> tuple[TrainConfig, DataSpec]:
    """Inverse of :func:`checkpoint_config`; raises ``ValueError`` naming ``where`` for foreign or bad files."""
    if data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{where}: config.json is not an image Bit Diffusion checkpoint (format {data.get('format')!r})"
        )
    try:
        config = TrainConfig.from_dict(data["train"])
        spec = DataSpec.from_dict(data["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: bad config.json: {exc}") from exc
    return config, spec


@dataclass
class LoadedModel:
    """A trained model ready for sampling.

    Attributes:
        denoiser: the :class:`BitDenoiser`, or the absorbing-state :class:`MaskedDenoiser` (EMA weights unless
            asked otherwise), in eval mode.
        codec: the codec of the pixel values.
        config: the run's config.
        spec: the data spec.
        step: the training step of the checkpoint.
        path: the checkpoint folder.
        ema: whether the EMA weights were loaded.
        ema_initial_share: the share of the initial weights still in the loaded EMA (0 for the online weights).
    """

    denoiser: ImageDenoiser
    codec: BitCodec
    config: TrainConfig
    spec: DataSpec
    step: int
    path: Path
    ema: bool
    ema_initial_share: float = 0.0

    def young_ema_notice(self) -> None:
        """Say on stderr when the loaded EMA still holds more than :data:`YOUNG_EMA_SHARE` of its initial weights
        (a short run's samples then look like noise)."""
        if self.ema_initial_share > YOUNG_EMA_SHARE:
            print(
                f"bitcompose: notice: the EMA of this {self.step}-step run still holds "
                f"{100 * self.ema_initial_share:.0f} % of its initial weights, so its samples can look like noise; "
                "train longer, or sample the online weights (--no-ema)",
                file=sys.stderr,
            )


#: A loaded EMA whose share of the initial weights is above this gets a notice (e**-4: ≈ 1.8 %).
YOUNG_EMA_SHARE = math.exp(-4.0)


def load_model(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a run folder or checkpoint folder for sampling.

    Args:
        path: a run folder (holding ``checkpoint/``) or a checkpoint folder.
        ema: use the EMA weights (when the checkpoint has none, the online weights, said on stderr).
        device: where to put the model.

    Raises:
        FileNotFoundError: no checkpoint there. ValueError: corrupt files or weights that do not match the config.
    """
    folder = find_checkpoint(path)
    ckpt = load_checkpoint(folder, training_state=False)
    config, spec = parse_checkpoint_config(ckpt.config, where=str(folder))
    codec = build_codec(config.model, spec.num_values)
    net = build_unet(config.model, spec, codec)
    use_ema = ema and ckpt.ema_state is not None
    if ema and not use_ema:
        print(
            f"bitcompose: {folder} has no ema.safetensors; sampling with the online weights", file=sys.stderr
        )
    step = int(ckpt.config.get("step", 0))
    state = ckpt.ema_state if use_ema and ckpt.ema_state is not None else ckpt.model_state
    load_state_strict(net, state, what=f"{'EMA' if use_ema else 'model'} weights of {folder}")
    denoiser = make_denoiser(net, config.model, spec.num_values).to(device).eval()
    share = ema_initial_share(config.optim, step) if use_ema else 0.0
    return LoadedModel(denoiser, codec, config, spec, step, folder, use_ema, share)


def sampling_options(sampling: SampleConfig) -> SamplingOptions:
    """The diffusion samplers' :class:`~bitcompose.diffusion.options.SamplingOptions` of a run's sampler settings
    (its ``steps`` and ``td`` make the time grid, its ``guidance`` the guided model)."""
    return SamplingOptions(
        sampler=sampling.sampler,
        ddpm_variance=sampling.ddpm_variance,
        precision=sampling.precision,
        momentum=sampling.momentum,
        self_guidance=sampling.self_guidance,
        self_guidance_form=sampling.self_guidance_form,
    )


def sample_bits(
    denoiser: ImageDenoiser,
    shape: tuple[int, ...],
    sampling: SampleConfig,
    *,
    cond: Any = None,
    generator: torch.Generator,
    progress: bool = False,
) -> torch.Tensor:
    """Analog bits ``shape`` = ``[B, C·num_bits, H, W]`` from an image model with the sampler settings ``sampling``:
    DDIM, DDPM or DPM-Solver++(2M) (:func:`~bitcompose.diffusion.samplers.sample_model` of the CFG-guided model on
    ``TimeGrid.uniform(steps, td)``), or for a :class:`MaskedDenoiser` the absorbing-state model's
    ancestral sampler, which takes ``sampler="ddpm"`` and none of td, guidance, momentum or self-guidance
    (``ValueError`` otherwise). Sampling runs on the device of the denoiser's weights.

    Args:
        denoiser: the image model's denoiser.
        shape: ``[B, C·num_bits, H, W]``.
        sampling: the sampler settings (steps, sampler, td, guidance, DDPM variance, precision, Appendix G).
        cond: class labels ``[B]`` (or None).
        generator: the source of all noise.
        progress: a progress bar over the steps.
    """
    s, device = sampling, next(denoiser.parameters()).device
    if isinstance(denoiser, MaskedDenoiser):
        if s.sampler != "ddpm" or s.td or s.guidance or s.momentum or s.self_guidance:
            raise ValueError(
                "a masked (absorbing-state) model is sampled ancestrally: sampler=ddpm, without td, guidance, "
                "momentum or self-guidance"
            )
        return masked_sample(
            denoiser,
            shape,
            steps=s.steps,
            cond=cond,
            generator=generator,
            precision=s.precision,
            device=device,
        )
    guided = cfg_model(denoiser, cond, s.guidance)
    grid = TimeGrid.uniform(s.steps, s.td)
    return sample_model(
        guided, shape, grid, sampling_options(s), generator=generator, progress=progress, device=device
    ).samples
