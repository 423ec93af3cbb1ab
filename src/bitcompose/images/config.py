"""Training configuration: frozen dataclasses, named presets, ``--set key=value`` overrides, JSON round trip.

A :class:`TrainConfig` is the single source of truth of a run. It nests :class:`DataConfig`, :class:`ModelConfig`
(the U-Net's architecture fields plus the codec and the diffusion parameterisation), :class:`OptimConfig` and
:class:`SampleConfig`. Fields that follow from the data (analog-bit channels, image size, number of classes) are
not part of the config; the trainer derives them from the data set and stores them in the checkpoint.

Example:
    >>> cfg = preset("digits").with_overrides(["optim.lr=3e-4", "model.encoding=gray", "steps=100"])
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bitcompose.core.bits import ENCODINGS as _ENCODINGS
from bitcompose.core.config import Config
from bitcompose.core.config import check as _check
from bitcompose.core.names import PREDICTIONS
from bitcompose.core.precision import PRECISIONS
from bitcompose.data.image_files import MAX_LABEL_CLASSES
from bitcompose.data.images import FITS as _FITS
from bitcompose.diffusion.denoiser import ENERGIES as _ENERGIES
from bitcompose.diffusion.options import SELF_GUIDANCE_FORMS
from bitcompose.diffusion.samplers import SAMPLERS
from bitcompose.nets.unet_config import PRESETS as UNET_PRESETS
from bitcompose.training.optim import OptimConfig

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "SampleConfig",
    "TrainConfig",
    "PRESET_NAMES",
    "MAX_CLASSES",
    "fit_to_data",
    "not_square",
    "data_problems",
    "PRECISIONS",
    "preset",
]


@dataclass(frozen=True)
class DataConfig(Config):
    """Which data to train on.

    Attributes:
        name: a name understood by ``bitcompose.data.images.load_image_dataset`` (``digits``, ``mnist``,
            ``fashion_mnist``, ``cifar10``, ``imagenet64``, ``npz``).
        path: the ``.npz`` file when ``name == "npz"``.
        root: the folder holding the files of ``cifar10`` / ``imagenet64`` / ``fashion_mnist``.
        levels: requantise the pixels to this many values (``None``: the data set's own, e.g. 256).
        conditional: train a class-conditional model (the data must have labels).
        random_flip: random left-right flips (the paper's CIFAR-10 / ImageNet-64 augmentation).
        max_images: use only the first ``max_images`` images (``None``: all).
        fit: make non-square images square: ``crop`` (the central square) or ``pad`` (level 0 around them to the
            longer side); ``None``: images must be square.
    """

    name: str = "digits"
    path: str | None = None
    root: str | None = None
    levels: int | None = None
    conditional: bool = True
    random_flip: bool = False
    max_images: int | None = None
    fit: str | None = None

    def __post_init__(self) -> None:
        _check(self.levels is None or self.levels >= 2, f"data.levels must be >= 2, got {self.levels}")
        _check(self.max_images is None or self.max_images >= 1, "data.max_images must be >= 1")
        _check(
            self.fit is None or self.fit in _FITS,
            f"data.fit must be one of {', '.join(_FITS)}, got {self.fit!r}",
        )


@dataclass(frozen=True)
class ModelConfig(Config):
    """The network (U-Net fields of ``UNetConfig`` not fixed by the data), the codec and the parameterisation.

    The defaults of the U-Net fields are those of ``UNetConfig``.

    Attributes:
        base_channels, channel_mults, num_res_blocks, attn_resolutions, dropout, per_head_dim, num_groups,
            time_scaling, output_head: as in :class:`bitcompose.nets.unet.UNetConfig`.
        encoding: bit encoding of the pixel values (``binary``, ``gray``, ``random``, ``onehot``).
        scale: the analog-bit scale ``b``.
        prediction: what the network predicts (``x0``, ``eps``, ``logistic``, or ``energy``: ε = ∇ₓE_θ), or
            ``masked``: the absorbing-state categorical baseline (:mod:`bitcompose.diffusion.masked`; needs
            ``encoding=onehot`` and no self-conditioning; sampled ancestrally, ``sample.sampler=ddpm``).
        energy: the energy's form for ``prediction=energy``: ``x0`` (‖x − α·f‖²/(2σ), an x0-like estimate),
            ``diff`` (‖f − x‖², ε-like) or ``norm`` (½‖f‖²); default ``x0``.
        self_condition: self-conditioning (the network sees its previous x0 estimate).
        loss_target: what the training MSE regresses: ``auto`` (the parameterisation's own: x0 for x0, logistic
            and the x0-form energy, ε for ε and the ε-form energies), ``x0`` or ``eps``.
    """

    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    dropout: float = 0.0
    per_head_dim: int = 64
    num_groups: int = 32
    time_scaling: float = 1000.0
    output_head: str = "linear"
    encoding: str = "binary"
    scale: float = 1.0
    prediction: str = "x0"
    self_condition: bool = True
    energy: str = "x0"
    loss_target: str = "auto"

    def __post_init__(self) -> None:
        _check(
            self.encoding in _ENCODINGS, f"model.encoding must be one of {_ENCODINGS}, got {self.encoding!r}"
        )
        _check(
            self.prediction in PREDICTIONS,
            f"model.prediction must be one of {PREDICTIONS}, got {self.prediction!r}",
        )
        _check(self.scale > 0, f"model.scale must be > 0, got {self.scale}")
        _check(
            self.prediction != "masked" or (self.encoding == "onehot" and not self.self_condition),
            "model.prediction=masked needs model.encoding=onehot and model.self_condition=false",
        )
        _check(
            self.prediction != "masked" or self.output_head == "linear",
            "model.prediction=masked needs model.output_head=linear (the network's outputs are the logits)",
        )
        _check(self.energy in _ENERGIES, f"model.energy must be one of {_ENERGIES}, got {self.energy!r}")
        _check(
            self.loss_target in ("auto", "x0", "eps"),
            f"model.loss_target must be 'auto', 'x0' or 'eps', got {self.loss_target!r}",
        )
        _check(
            self.output_head in ("linear", "softmax"),
            f"model.output_head must be 'linear' or 'softmax', got {self.output_head!r}",
        )


@dataclass(frozen=True)
class SampleConfig(Config):
    """Sampler settings for sample grids, ``bitcompose sample`` defaults and evaluation.

    Attributes:
        sampler: ``ddim`` or ``ddpm``.
        steps: number of sampling steps.
        td: asymmetric time interval, in steps (the paper's ``td``).
        guidance: classifier-free guidance weight ``w`` (needs ``cond_drop_prob > 0`` in training).
        ddpm_variance: ``large`` (paper) or ``small``.
        num_eval: number of samples drawn by ``bitcompose evaluate`` / the demo.
        precision: ``auto`` (bf16 autocast of the network where the hardware runs it fast), ``fp32`` or ``bf16``.
        momentum: Appendix G's momentum estimate ``m ∈ [0, 1)`` (0: default self-conditioning).
        self_guidance: Appendix G's self-guidance weight (0: off).
        self_guidance_form: ``cfg`` or ``scale``, the convention of the weight
            (:class:`~bitcompose.diffusion.options.SamplingOptions`).
    """

    sampler: str = "ddim"
    steps: int = 100
    td: float = 0.0
    guidance: float = 0.0
    ddpm_variance: str = "large"
    num_eval: int = 1000
    precision: str = "auto"
    momentum: float = 0.0
    self_guidance: float = 0.0
    self_guidance_form: str = "cfg"

    def __post_init__(self) -> None:
        _check(
            self.self_guidance_form in SELF_GUIDANCE_FORMS,
            f"sample.self_guidance_form must be one of {', '.join(SELF_GUIDANCE_FORMS)}, "
            f"got {self.self_guidance_form!r}",
        )
        _check(0.0 <= self.momentum < 1.0, f"sample.momentum must lie in [0, 1), got {self.momentum}")
        _check(self.self_guidance >= 0, f"sample.self_guidance must be >= 0, got {self.self_guidance}")
        _check(
            self.sampler in SAMPLERS,
            f"sample.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}",
        )
        _check(self.steps >= 1, f"sample.steps must be >= 1, got {self.steps}")
        _check(self.td >= 0, f"sample.td must be >= 0, got {self.td}")
        _check(self.ddpm_variance in ("large", "small"), "sample.ddpm_variance must be 'large' or 'small'")
        _check(self.num_eval >= 1, "sample.num_eval must be >= 1")
        _check(
            self.precision in PRECISIONS, f"sample.precision must be auto|fp32|bf16, got {self.precision!r}"
        )


@dataclass(frozen=True)
class TrainConfig(Config):
    """A whole training run.

    Attributes:
        preset: the preset this config started from (informative).
        seed: the seed of every random stream of the run (model init, data order, flips, t, noise, masks).
        steps: total optimiser steps.
        batch_size: global batch size (split evenly over distributed ranks).
        self_cond_prob: fraction of examples trained with a self-conditioning estimate (paper: 0.5).
        cond_drop_prob: label dropout probability (for classifier-free guidance; 0 = off, the paper's default).
        log_every: steps between lines in ``metrics.jsonl``.
        sample_every: steps between preview sample grids (0: none; when > 0 also one at the end).
        checkpoint_every: steps between checkpoints (0: only at the end).
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        compile: wrap the network with ``torch.compile``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    preset: str = "custom"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 64
    self_cond_prob: float = 0.5
    cond_drop_prob: float = 0.0
    log_every: int = 50
    sample_every: int = 0
    checkpoint_every: int = 1000
    precision: str = "auto"
    compile: bool = False
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(0 <= self.self_cond_prob <= 1, "self_cond_prob must lie in [0, 1]")
        _check(0 <= self.cond_drop_prob < 1, "cond_drop_prob must lie in [0, 1)")
        _check(self.log_every >= 1, "log_every must be >= 1")
        _check(
            self.sample_every >= 0 and self.checkpoint_every >= 0,
            "sample_every/checkpoint_every must be >= 0",
        )
        _check(self.precision in PRECISIONS, f"precision must be auto|fp32|bf16, got {self.precision!r}")
        _check(
            self.self_cond_prob == 0 or self.model.self_condition,
            "self_cond_prob > 0 needs model.self_condition=true",
        )
        _check(
            self.model.prediction != "masked" or (self.cond_drop_prob == 0 and self.sample.sampler == "ddpm"),
            "model.prediction=masked is sampled ancestrally (sample.sampler=ddpm) and has no guidance "
            "(cond_drop_prob=0)",
        )
        _check(
            self.cond_drop_prob == 0 or self.data.conditional,
            "cond_drop_prob > 0 needs a class-conditional model (data.conditional=true)",
        )


# --------------------------------------------------------------------------------------------------- presets


def _unet_fields(name: str, **overrides: Any) -> dict[str, Any]:
    """ModelConfig fields from a U-Net preset of ``bitcompose.nets.unet_config``."""
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    params = {k: v for k, v in UNET_PRESETS[name].items() if k in names}
    params.update(overrides)
    return params


def _digits() -> TrainConfig:
    # The demo: class-conditional 8×8 digits, 17 levels -> 5 bits, trained on 2 CPU cores in a few minutes.
    # EMA 0.995 (not the paper's 0.9999): with only 1,000 steps a longer average keeps too much of the
    # under-trained early weights (0.999 gave 0.88 class accuracy after 1,500 steps, the online weights 0.99).
    return TrainConfig(
        preset="digits",
        seed=0,
        steps=1000,
        batch_size=128,
        log_every=50,
        checkpoint_every=500,
        data=DataConfig(name="digits", conditional=True),
        model=ModelConfig(
            base_channels=32,
            channel_mults=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(4,),
            num_groups=8,
            per_head_dim=32,
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=200, ema_decay=0.995),
        sample=SampleConfig(sampler="ddim", steps=50, td=0.0, num_eval=1000),
    )


def _mnist(name: str) -> TrainConfig:
    # 28×28 grey levels (256 values -> 8 bits) with the CPU-sized "small" U-Net.
    return TrainConfig(
        preset=name,
        steps=20000,
        batch_size=64,
        log_every=100,
        sample_every=2000,
        checkpoint_every=2000,
        data=DataConfig(name=name, conditional=True),
        model=ModelConfig(**_unet_fields("small", attn_resolutions=(7,))),
        optim=OptimConfig(lr=2e-4, warmup_steps=1000, ema_decay=0.9995),
        sample=SampleConfig(sampler="ddim", steps=100, num_eval=1000),
    )


def _cifar10() -> TrainConfig:
    # The paper's CIFAR-10 setting (Chen et al. 2023 §3.1): 51M U-Net, batch 128, Adam(W) lr 1e-4, wd 0, 10k
    # warm-up, EMA 0.9999, 1.5M steps, random flips, class-conditional (Table 1, right column).
    return TrainConfig(
        preset="cifar10",
        steps=1_500_000,
        batch_size=128,
        log_every=100,
        sample_every=10_000,
        checkpoint_every=10_000,
        data=DataConfig(name="cifar10", conditional=True, random_flip=True),
        model=ModelConfig(**_unet_fields("cifar10")),
        optim=OptimConfig(name="adamw", lr=1e-4, weight_decay=0.0, warmup_steps=10_000, ema_decay=0.9999),
        sample=SampleConfig(sampler="ddpm", steps=100, td=0.0, num_eval=50_000),
    )


def _imagenet64() -> TrainConfig:
    # The paper's ImageNet-64 setting: 240M U-Net, batch 1024, lr 2e-4 (1e-4 for encoding=random), 500K steps,
    # EMA 0.9999, flips, class-conditional (Table 2).
    return TrainConfig(
        preset="imagenet64",
        steps=500_000,
        batch_size=1024,
        log_every=100,
        sample_every=10_000,
        checkpoint_every=5_000,
        data=DataConfig(name="imagenet64", conditional=True, random_flip=True),
        model=ModelConfig(**_unet_fields("imagenet64")),
        optim=OptimConfig(name="adamw", lr=2e-4, weight_decay=0.0, warmup_steps=10_000, ema_decay=0.9999),
        sample=SampleConfig(sampler="ddpm", steps=100, td=0.0, num_eval=50_000),
    )


def _custom() -> TrainConfig:
    # A user's own data (``bitcompose train --data my.npz``): the CPU-sized "small" U-Net, fitted to the data's
    # size, channels and labels by :func:`fit_to_data`.
    return TrainConfig(
        preset="custom",
        steps=5000,
        batch_size=64,
        log_every=100,
        sample_every=1000,
        checkpoint_every=1000,
        data=DataConfig(name="npz", conditional=True),
        model=ModelConfig(**_unet_fields("small", attn_resolutions=(7,))),
        optim=OptimConfig(lr=2e-4, warmup_steps=500, ema_decay=0.999),
        sample=SampleConfig(sampler="ddim", steps=100, num_eval=1000),
    )


def _bench32() -> TrainConfig:
    # The speed benchmark's matched configuration (benchmarks/train_throughput.py): 32×32 RGB at 8 bits per
    # channel (24 analog-bit channels), unconditional, ≈ 2.7M parameters, batch 32, self-conditioning 0.5.
    return TrainConfig(
        preset="bench32",
        steps=1000,
        batch_size=32,
        checkpoint_every=0,
        data=DataConfig(name="cifar10", conditional=False),
        model=ModelConfig(
            base_channels=28,
            channel_mults=(1, 2, 4),
            num_res_blocks=2,
            attn_resolutions=(16, 8),
            num_groups=7,
            per_head_dim=28,
        ),
        optim=OptimConfig(name="adam", lr=1e-4, warmup_steps=0, ema_decay=0.9999),
        sample=SampleConfig(sampler="ddim", steps=100, num_eval=1000),
    )


_PRESETS = {
    "digits": _digits,
    "mnist": lambda: _mnist("mnist"),
    "fashion_mnist": lambda: _mnist("fashion_mnist"),
    "cifar10": _cifar10,
    "imagenet64": _imagenet64,
    "bench32": _bench32,
    "custom": _custom,
}
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str) -> TrainConfig:
    """The named preset (``digits``, ``mnist``, ``fashion_mnist``, ``cifar10``, ``imagenet64``)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return _PRESETS[name]()


#: Most classes a labelled data set may have (a larger label is almost surely a mistake, and costs memory).
MAX_CLASSES = MAX_LABEL_CLASSES


#: Below this many images ``custom`` trains the small CPU recipe of the experiments instead of the "small" U-Net.
SMALL_DATA = 2000


def _sized_for(config: TrainConfig, num_images: int, notes: list[str]) -> TrainConfig:
    """``custom`` on fewer than :data:`SMALL_DATA` images: base 32, mults (1, 2), one residual block (≈ 0.5M
    parameters instead of ≈ 6M) and a batch of at most half the images."""
    model = dataclasses.replace(
        config.model, base_channels=32, channel_mults=config.model.channel_mults[:2], num_res_blocks=1,
        num_groups=8, per_head_dim=32,
    )  # fmt: skip
    batch = min(config.batch_size, max(8, num_images // 2))
    notes.append(
        f"{num_images} images: a small U-Net (base 32, mults {model.channel_mults}, 1 block) at batch {batch}; set "
        "model.* or --preset to choose another"
    )
    return dataclasses.replace(config, model=model, batch_size=batch)


def fit_to_data(
    config: TrainConfig,
    *,
    channels: int,
    image_size: int,
    labelled: bool,
    num_images: int | None = None,
    size_model: bool = False,
) -> tuple[TrainConfig, list[str]]:
    """The config adapted to data of ``channels`` × ``image_size`` × ``image_size`` (labelled or not).

    With ``size_model`` (the ``custom`` preset, no ``model.*`` given) and fewer than :data:`SMALL_DATA` images the
    U-Net and the batch are sized down for the data (:func:`_sized_for`). The U-Net keeps the stages its image size
    allows (each side divisible by 2 per downsampling); attention stays at the resolutions that exist, or moves to
    the lowest one; the model is class-conditional exactly when the data have labels (label dropout off without
    them).

    Returns:
        ``(config, notes)``: the adapted config and one line per change (empty when nothing changed).
    """
    notes: list[str] = []
    if size_model and num_images is not None and num_images < SMALL_DATA:
        config = _sized_for(config, num_images, notes)
    model, data = config.model, config.data
    stages = len(model.channel_mults)
    while stages > 1 and image_size % 2 ** (stages - 1):
        stages -= 1
    mults = model.channel_mults[:stages]
    resolutions = tuple(image_size // 2**s for s in range(stages))
    attn = tuple(r for r in model.attn_resolutions if r in resolutions)
    if model.attn_resolutions and not attn and resolutions[-1] <= 16:
        attn = (resolutions[-1],)
    if mults != model.channel_mults:
        notes.append(
            f"model.channel_mults {model.channel_mults} -> {mults} for {image_size}x{image_size} images"
        )
    if attn != model.attn_resolutions:
        notes.append(f"model.attn_resolutions {model.attn_resolutions} -> {attn} (resolutions {resolutions})")
    changes: dict[str, Any] = {}
    if not labelled and data.conditional:
        notes.append("the data have no labels: training an unconditional model (data.conditional=false)")
        changes["data"] = dataclasses.replace(data, conditional=False)
        if config.cond_drop_prob:
            changes["cond_drop_prob"] = 0.0
        if config.sample.guidance:
            changes["sample"] = dataclasses.replace(config.sample, guidance=0.0)
    model = dataclasses.replace(model, channel_mults=mults, attn_resolutions=attn)
    return dataclasses.replace(config, model=model, **changes), notes


def not_square(height: int, width: int) -> str:
    """What to do about ``height × width`` images (the U-Net takes square ones)."""
    return (
        f"images must be square, got {height}x{width}: pass --crop (the central square) or --pad (level 0 to the "
        "longer side), i.e. data.fit=crop|pad"
    )


def data_problems(
    config: TrainConfig, *, channels: int, height: int, width: int, num_classes: int
) -> list[str]:
    """Every way the data do not suit ``config`` (after :func:`fit_to_data`), one line each."""
    problems = []
    if height != width:
        problems.append(not_square(height, width))
    if num_classes > MAX_CLASSES:
        problems.append(
            f"labels go up to {num_classes - 1}, which would build a {num_classes}-class model; labels must be "
            f"0..C-1 with C <= {MAX_CLASSES}"
        )
    if config.data.conditional and num_classes == 0:
        problems.append(
            "the data set has no labels but data.conditional=true (set data.conditional=false, or omit "
            "--preset to fit the config to the data)"
        )
    return problems
