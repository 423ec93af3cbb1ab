"""Configuration of the paper-style U-Net (:class:`UNetConfig`) and its presets (:func:`unet_config`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bitcompose.core.config import Config

__all__ = ["PRESETS", "UNetConfig", "unet_config"]

_HEADS = ("linear", "softmax")


def _as_int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"UNetConfig.{name} must be a sequence of integers, got {value!r}")
    items = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"UNetConfig.{name} must contain integers only, got {value!r}")
    return items


@dataclass(frozen=True)
class UNetConfig(Config):
    """Hyper-parameters of :class:`bitcompose.nets.unet.UNet`.

    Attributes:
        data_channels: analog-bit channels of ``x_t`` (e.g. ``C·num_bits``); also the output channels.
        image_size: height = width of the input images; must be divisible by ``2^(len(channel_mults)−1)``.
        base_channels: channels of the first stage (also the width of the sinusoidal γ features).
        channel_mults: channel multiplier per resolution stage (one stride-2 downsample between stages).
        num_res_blocks: residual blocks per stage on the down path (the up path has one more).
        attn_resolutions: spatial sizes at which self-attention follows each residual block.
        num_classes: number of class labels (0 = unconditional).
        dropout: dropout probability inside residual blocks.
        self_condition: if True the input has ``2·data_channels`` channels (x_t first, then the x0 estimate).
        per_head_dim: target width of an attention head (``channels // per_head_dim`` heads, at least 1).
        num_groups: GroupNorm groups; must divide ``base_channels`` (hence every channel count of the net).
        time_scaling: γ is multiplied by this before the sinusoidal embedding (official value 1000).
        output_head: ``"linear"`` (a conv predicts the analog bits) or ``"softmax"`` (softmax-factorised head:
            per sub-pixel group a softmax over the K codes, output = probabilities @ code table).
        softmax_groups: number of sub-pixel groups for the softmax head (e.g. the image channels C);
            0 otherwise.
        softmax_num_values: number of codes K for the softmax head; 0 otherwise.
    """

    data_channels: int
    image_size: int
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = field(default_factory=tuple)
    num_classes: int = 0
    dropout: float = 0.0
    self_condition: bool = True
    per_head_dim: int = 64
    num_groups: int = 32
    time_scaling: float = 1000.0
    output_head: str = "linear"
    softmax_groups: int = 0
    softmax_num_values: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", _as_int_tuple("channel_mults", self.channel_mults))
        object.__setattr__(self, "attn_resolutions", _as_int_tuple("attn_resolutions", self.attn_resolutions))
        positive = (
            "data_channels",
            "image_size",
            "base_channels",
            "num_res_blocks",
            "per_head_dim",
            "num_groups",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {value!r}")
        if (
            not isinstance(self.num_classes, int)
            or isinstance(self.num_classes, bool)
            or self.num_classes < 0
        ):
            raise ValueError(f"UNetConfig.num_classes must be an integer >= 0, got {self.num_classes!r}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(
                f"UNetConfig.channel_mults must be non-empty and positive, got {self.channel_mults}"
            )
        if not isinstance(self.self_condition, bool):
            raise ValueError(f"UNetConfig.self_condition must be a bool, got {self.self_condition!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"UNetConfig.dropout must lie in [0, 1), got {self.dropout}")
        if not float(self.time_scaling) > 0.0:
            raise ValueError(f"UNetConfig.time_scaling must be positive, got {self.time_scaling}")
        if self.base_channels % self.num_groups:
            raise ValueError(
                f"UNetConfig.num_groups={self.num_groups} must divide base_channels={self.base_channels} "
                "(GroupNorm needs it to divide every channel count of the net)"
            )
        factor = 2 ** (self.num_stages - 1)
        if self.image_size % factor:
            raise ValueError(
                f"UNetConfig.image_size={self.image_size} is not divisible by 2^(stages-1)={factor} "
                f"({self.num_stages} stages from channel_mults={self.channel_mults})"
            )
        reachable = self.resolutions
        for res in self.attn_resolutions:
            if res not in reachable:
                raise ValueError(
                    f"UNetConfig.attn_resolutions contains {res}, but the net only has resolutions "
                    f"{reachable}"
                )
        for stage, res in enumerate(reachable):
            if res in self.attn_resolutions:
                ch = self.base_channels * self.channel_mults[stage]
                heads = max(1, ch // self.per_head_dim)
                if ch % heads:
                    raise ValueError(
                        f"attention at resolution {res}: {ch} channels are not divisible into {heads} heads "
                        f"(per_head_dim={self.per_head_dim})"
                    )
        self._validate_head()

    def _validate_head(self) -> None:
        if self.output_head not in _HEADS:
            raise ValueError(f"UNetConfig.output_head must be one of {_HEADS}, got {self.output_head!r}")
        if self.output_head == "linear":
            if self.softmax_groups or self.softmax_num_values:
                raise ValueError(
                    "UNetConfig.softmax_groups / softmax_num_values are only meaningful with "
                    "output_head='softmax'"
                )
            return
        if self.softmax_groups < 1 or self.softmax_num_values < 2:
            raise ValueError(
                "output_head='softmax' needs softmax_groups >= 1 and softmax_num_values >= 2, got "
                f"{self.softmax_groups} and {self.softmax_num_values}"
            )
        if self.data_channels % self.softmax_groups:
            raise ValueError(
                f"data_channels={self.data_channels} is not divisible by softmax_groups={self.softmax_groups}"
            )

    @property
    def num_stages(self) -> int:
        """Number of resolution stages."""
        return len(self.channel_mults)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Spatial size of each stage, e.g. ``(32, 16, 8)``."""
        return tuple(self.image_size // 2**s for s in range(self.num_stages))

    @property
    def in_channels(self) -> int:
        """Input channels: ``2·data_channels`` with self-conditioning, else ``data_channels``."""
        return 2 * self.data_channels if self.self_condition else self.data_channels

    @property
    def bits_per_group(self) -> int:
        """Bits per sub-pixel group of the softmax head (``data_channels / softmax_groups``); 0 for linear."""
        return self.data_channels // self.softmax_groups if self.output_head == "softmax" else 0

    @property
    def head_channels(self) -> int:
        """Channels of the last convolution: ``data_channels`` (linear) or ``softmax_groups·K`` (softmax)."""
        if self.output_head == "softmax":
            return self.softmax_groups * self.softmax_num_values
        return self.data_channels


#: Named configurations. "cifar10" and "imagenet64" are the paper's nets (§3.1 of Chen et al. 2023 and the
#: official sweeps); "small" and "tiny" are CPU-sized. For "small"/"tiny", when attn_resolutions is not given
#: (preset or override), attention is placed at the lowest resolution of the chosen image size.
PRESETS: dict[str, dict[str, Any]] = {
    # 256 channels, 3 stages (32, 16, 8), 3 blocks, attention at 16 and 8: the paper's ~51M CIFAR-10 net.
    "cifar10": dict(
        data_channels=24,
        image_size=32,
        base_channels=256,
        channel_mults=(1, 1, 1),
        num_res_blocks=3,
        attn_resolutions=(16, 8),
        dropout=0.0,
    ),
    # 192 channels, multipliers 1,2,3,4, 3 blocks: the paper's ~240M ImageNet-64 net (class-conditional).
    # Attention set: 16 and 8 (the official TransUNet default and the improved-DDPM ImageNet-64 choice) gives
    # 247.2M parameters (+3%); adding 32 (as in ADM) gives 251.3M (+4.7%). We take 16,8, the closer match.
    "imagenet64": dict(
        data_channels=24,
        image_size=64,
        base_channels=192,
        channel_mults=(1, 2, 3, 4),
        num_res_blocks=3,
        attn_resolutions=(16, 8),
        num_classes=1000,
        dropout=0.0,
    ),
    # CPU net for 28×28 (MNIST, Fashion-MNIST: 1 channel × 8 bits); 28 -> 14 -> 7.
    "small": dict(
        data_channels=8,
        image_size=28,
        base_channels=64,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        num_groups=32,
    ),
    # Test / demo net for 8×8 digits (17 levels -> 5 bits); 8 -> 4.
    "tiny": dict(
        data_channels=5,
        image_size=8,
        base_channels=32,
        channel_mults=(1, 2),
        num_res_blocks=1,
        num_groups=8,
        per_head_dim=32,
    ),
}


def unet_config(name: str, **overrides: Any) -> UNetConfig:
    """A named :class:`UNetConfig` with fields overridden by keyword.

    Args:
        name: one of ``"cifar10"``, ``"imagenet64"``, ``"small"``, ``"tiny"``.
        **overrides: any :class:`UNetConfig` field, e.g. ``num_classes=10, self_condition=False``.

    Returns:
        The validated config.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown U-Net preset {name!r}; choose one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(UNetConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown UNetConfig field(s) in overrides: {unknown}")
    params = {**PRESETS[name], **overrides}
    mults, size = params["channel_mults"], params["image_size"]
    if (
        "attn_resolutions" not in params
        and isinstance(size, int)
        and isinstance(mults, (tuple, list))
        and mults
    ):
        factor = 2 ** (len(mults) - 1)
        if size % factor == 0:  # otherwise UNetConfig reports the bad image size
            params["attn_resolutions"] = (size // factor,)
    return UNetConfig(**params)
