"""The evaluator of the objects experiment: a CNN that says which grid cells hold an object and which prompts
(colour, shape) are present, trained separately on the scenes (never on generated images) and cached.

It is the in-project :class:`~bitcompose.nets.classifier.ImageClassifier` with 16 + 12 outputs trained with a
per-output binary cross-entropy; a sample "holds an object at (x, y)" when the output of that cell is above 0.5.
Its held-out accuracy (per output and for a whole image) is stored with it and reported beside every result.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.data.objects import IMAGE_SIZE, NUM_CELLS, NUM_PROMPTS, NUM_VALUES, ObjectScenes
from bitcompose.experiments.cache import NETWORK, cached
from bitcompose.nets.classifier import ClassifierConfig, ImageClassifier, build_classifier
from bitcompose.objects.models import test_scenes, train_scenes
from bitcompose.training.loop import Trainer
from bitcompose.training.optim import OptimConfig

__all__ = ["PresenceTask", "load_or_train_evaluator", "presence", "EVALUATOR_STEPS"]

EVALUATOR_STEPS = 1500


class PresenceTask:
    """Binary cross-entropy of the 28 presence outputs on random batches of scenes."""

    def __init__(self, model: ImageClassifier, scenes: ObjectScenes, generator: torch.Generator) -> None:
        self.module: nn.Module = model
        self.images = torch.from_numpy(scenes.images).long()
        self.targets = scenes.presence()
        self.batch_size, self.generator = 128, generator

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """BCE of one batch."""
        idx = torch.randint(len(self.images), (self.batch_size,), generator=self.generator)
        return F.binary_cross_entropy_with_logits(net(self.images[idx]), self.targets[idx])

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])


def presence(model: ImageClassifier, images: Tensor) -> Tensor:
    """bool ``[N, 28]``: which cells hold an object (the first 16) and which prompts are present (the last 12)."""
    with torch.no_grad():
        logits = model.head(model.compute_features(images).to(model.head.weight.device))
    return (logits > 0).cpu()


def _accuracy(model: ImageClassifier, scenes: ObjectScenes) -> dict[str, float]:
    pred = presence(model, torch.from_numpy(scenes.images).long())
    truth = scenes.presence().bool()
    cells, prompts = slice(0, NUM_CELLS), slice(NUM_CELLS, NUM_CELLS + NUM_PROMPTS)
    return {
        "cell_accuracy": float((pred[:, cells] == truth[:, cells]).double().mean()),
        "prompt_accuracy": float((pred[:, prompts] == truth[:, prompts]).double().mean()),
        "image_cells_exact": float((pred[:, cells] == truth[:, cells]).all(1).double().mean()),
        "image_prompts_exact": float((pred[:, prompts] == truth[:, prompts]).all(1).double().mean()),
    }


def load_or_train_evaluator(cache: str | Path | None = None, progress: bool = True) -> ImageClassifier:
    """The evaluator: the harness's cache entry ``<cache>/objects/evaluator-<key>``, trained there first; ``info``
    holds its held-out accuracy (``cell_accuracy``, ``prompt_accuracy`` per output; ``image_*_exact`` for whole
    images)."""
    config = ClassifierConfig(3, IMAGE_SIZE, IMAGE_SIZE, NUM_CELLS + NUM_PROMPTS, NUM_VALUES)
    scenes = train_scenes()

    def train(folder: Path) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(0)
        model = build_classifier(config)
        model.reset_parameters(gen)
        optim = OptimConfig(name="adam", lr=2e-3, schedule="linear", grad_clip=0.0, ema_decay=None)
        result = Trainer(
            PresenceTask(model, scenes, gen), optim, steps=EVALUATOR_STEPS, log_every=50, progress=progress,
            desc="evaluator",
        ).train()  # fmt: skip
        model.eval()
        model.info = {
            "steps": EVALUATOR_STEPS,
            "train_seconds": result.train_seconds,
            "held_out_scenes": len(test_scenes()),
            **_accuracy(model, test_scenes()),
        }
        model.save(folder / NETWORK)
        return model.info

    spec = {"evaluator": "presence-v1", "steps": EVALUATOR_STEPS, "config": config.to_dict(), "seed": 0}
    data = hashlib.sha256(scenes.images.tobytes()).hexdigest()[:16]
    entry = cached("objects", "evaluator", spec, train, data=data, cache=cache)
    return ImageClassifier.load(entry.path / NETWORK)
