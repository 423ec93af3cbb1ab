"""The evaluation classifier: a small CNN on integer images, for "classifier FID" and the class accuracy of samples.

Inception FID needs a large pretrained network and 50K samples; for the small data sets this project trains on
(8×8 digits, 28×28 MNIST, ...) a small CNN trained on the data set itself gives a more sensitive feature space
(in the spirit of the "MNIST FID" of the literature with a LeNet). Its penultimate activations (128-d) are the
features, its predictions give the class accuracy of class-conditional samples. Training and the cache:
:mod:`bitcompose.experiments.classifier`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.core.config import CONFIG_FILE, MODEL_FILE, Config

__all__ = [
    "ARCHITECTURE",
    "ClassifierConfig",
    "ImageClassifier",
    "build_classifier",
    "read_network",
    "save_network",
    "uniform_init_",
]

ARCHITECTURE = "cnn-v1"
"""Name of the network layout; part of the cache key (bump it when the layout changes)."""


@dataclass(frozen=True)
class ClassifierConfig(Config):
    """Shape of the classifier.

    Attributes:
        in_channels: image channels C.
        height, width: image size.
        num_classes: output classes.
        num_values: pixel values K of the integer inputs (inputs are scaled ``v / (K-1) * 2 - 1``).
        channels: width of the first conv layer (later layers use 2× and 4×).
        feature_dim: size of the penultimate features.
    """

    in_channels: int
    height: int
    width: int
    num_classes: int
    num_values: int
    channels: int = 32
    feature_dim: int = 128

    def __post_init__(self) -> None:
        if (
            min(self.in_channels, self.height, self.width, self.num_classes, self.channels, self.feature_dim)
            < 1
        ):
            raise ValueError(f"ClassifierConfig fields must be positive: {self}")
        if self.num_values < 2:
            raise ValueError(f"ClassifierConfig.num_values must be >= 2, got {self.num_values}")


def _conv_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class ImageClassifier(nn.Module):
    """CNN on integer images ``[B, C, H, W]``: 4 conv blocks (strides 1|2, 2, 2, 1), mean pooling, a 128-d
    feature layer and a linear head. Works for any C and sizes from 8×8 to 64×64 (stem stride 2 from 24 px).

    Attributes:
        config: the :class:`ClassifierConfig`.
        info: metadata of how it was trained (data set, steps, seed, ``val_accuracy``, ``train_seconds``,
            ``cached``, ``path``, ...), filled by :func:`train_classifier` / :func:`load_or_train_classifier`.
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.info: dict[str, Any] = {}
        c = config.channels
        stem_stride = 2 if min(config.height, config.width) >= 24 else 1
        self.body = nn.Sequential(
            _conv_block(config.in_channels, c, stem_stride),
            _conv_block(c, 2 * c, 2),
            _conv_block(2 * c, 4 * c, 2),
            _conv_block(4 * c, 4 * c, 1),
        )
        self.fc = nn.Linear(4 * c, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    @property
    def num_values(self) -> int:
        """Pixel values K expected in the integer inputs."""
        return self.config.num_values

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Initialise all weights from ``generator`` (:func:`uniform_init_`)."""
        uniform_init_(self, generator)

    def scale_inputs(self, images: Tensor) -> Tensor:
        """Integer images ``[B, C, H, W]`` in 0..K-1 -> float ``[B, C, H, W]`` in [-1, 1] (checked)."""
        cfg = self.config
        if images.dim() != 4 or tuple(images.shape[1:]) != (cfg.in_channels, cfg.height, cfg.width):
            raise ValueError(
                f"classifier expects images [B, {cfg.in_channels}, {cfg.height}, {cfg.width}], "
                f"got {tuple(images.shape)}"
            )
        if images.dtype.is_floating_point or images.dtype == torch.bool:
            raise ValueError(
                f"classifier expects integer images (values 0..{cfg.num_values - 1}), got {images.dtype}"
            )
        if images.numel() and (int(images.min()) < 0 or int(images.max()) >= cfg.num_values):
            raise ValueError(
                f"classifier expects values in 0..{cfg.num_values - 1}, got {int(images.min())}..{int(images.max())}"
            )
        weight = self.fc.weight
        return images.to(weight.device, weight.dtype) * (2.0 / (cfg.num_values - 1)) - 1.0

    def features(self, images: Tensor) -> Tensor:
        """Penultimate features ``[B, feature_dim]`` of integer images ``[B, C, H, W]``."""
        h = self.body(self.scale_inputs(images)).mean(dim=(2, 3))
        return F.silu(self.fc(h))

    def forward(self, images: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]`` of integer images ``[B, C, H, W]``."""
        return self.head(self.features(images))

    @torch.no_grad()
    def compute_features(self, images: Tensor, batch_size: int = 512) -> Tensor:
        """:meth:`features` in batches without gradients, in eval mode; returns float32 ``[N, D]`` on the CPU."""
        was_training = self.training
        self.eval()
        out = [
            self.features(images[i : i + batch_size]).float().cpu() for i in range(0, len(images), batch_size)
        ]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.config.feature_dim)

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 512) -> Tensor:
        """Predicted classes, int64 ``[B]`` on the CPU, of integer images ``[B, C, H, W]``."""
        feats = self.compute_features(images, batch_size)
        return self.head(feats.to(self.head.weight.device)).argmax(dim=1).cpu()

    def accuracy(self, images: Tensor, labels: Tensor, batch_size: int = 512) -> float:
        """Fraction of ``images`` ``[B, C, H, W]`` classified as ``labels`` ``[B]``."""
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")
        return float((self.predict(images, batch_size) == labels.cpu()).double().mean())

    def save(self, path: str | Path) -> None:
        """Write the folder ``path`` (``config.json`` with config + info, ``model.safetensors``) atomically."""
        save_network(self, path, "bitcompose-classifier", ARCHITECTURE, self.config.to_dict(), self.info)

    @classmethod
    def load(cls, path: str | Path) -> ImageClassifier:
        """Load a classifier saved by :meth:`save` (its folder)."""
        meta, weights = read_network(path, "bitcompose-classifier", ARCHITECTURE)
        model = build_classifier(ClassifierConfig.from_dict(meta["config"]))
        model.load_state_dict(weights)
        model.info = dict(meta.get("info", {}), path=str(path))
        return model.eval()


@torch.no_grad()
def uniform_init_(net: nn.Module, generator: torch.Generator) -> None:
    """Initialise every conv and linear layer of ``net`` uniformly in ±1/√fan_in (PyTorch's default scale) from
    ``generator``, and every GroupNorm to weight 1, bias 0 (no global RNG)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            bound = 1.0 / module.weight[0].numel() ** 0.5
            module.weight.uniform_(-bound, bound, generator=generator)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, nn.GroupNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()


def save_network(
    module: nn.Module,
    folder: str | Path,
    fmt: str,
    architecture: str,
    config: dict[str, Any],
    info: dict[str, Any],
) -> None:
    """Write a small network as a folder in the checkpoint format: ``model.safetensors`` (the weights), then
    ``config.json`` (``format``, ``architecture``, ``config``, ``info``), each through a temporary file; the
    config's presence marks a complete save."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".save.{os.getpid()}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / MODEL_FILE)
    kept = {k: v for k, v in info.items() if k != "path"}  # where it was loaded from is not part of it
    meta: dict[str, Any] = {"format": fmt, "architecture": architecture, "config": config, "info": kept}
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, folder / CONFIG_FILE)


def read_network(folder: str | Path, fmt: str, architecture: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The metadata and the weights written by :func:`save_network` (``ValueError`` for another format)."""
    folder = Path(folder)
    meta_file, weights = folder / CONFIG_FILE, folder / MODEL_FILE
    if not meta_file.is_file() or not weights.is_file():
        raise FileNotFoundError(f"network files {meta_file} / {weights} not found")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != fmt or meta.get("architecture") != architecture:
        raise ValueError(f"{meta_file} is not a {architecture} {fmt} network")
    return meta, load_file(str(weights))


def build_classifier(config: ClassifierConfig) -> ImageClassifier:
    """Construct on the meta device (so PyTorch's default init does not touch the global RNG), then allocate."""
    with torch.device("meta"):
        model = ImageClassifier(config)
    return model.to_empty(device="cpu")
