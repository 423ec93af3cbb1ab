"""Objects at positions: small RGB scenes of 1–5 coloured shapes on a grid, for compositional generation.

A stand-in for the CLEVR objects of "Reduce, Reuse, Recycle" (Du et al. 2023) that a small model learns on a CPU:

* An image is 16×16 RGB on a black background, with **2 bits per channel** (values 0–3, so 6 analog bits per
  pixel). The image is a 4×4 grid of 4-pixel cells; a scene has 1–5 objects in distinct cells, chosen uniformly.
* An object is a 3×3 shape — ``square``, ``plus`` or ``ring`` — in one of four colours (``red green blue
  yellow``), at brightness 2 or 3 (both light the colour's channels), placed with a 0/1-pixel offset inside its
  cell. Every pixel of an object is lit, so "a cell holds an object" is read off the pixels.
* Each object's **position** is its cell (``row·4 + col``, 16 classes; its centre is ``4·col + offset + 1``,
  ``4·row + offset + 1``), and its **prompt** is its (colour, shape) pair (12 classes, ``colour·3 + shape``).

Everything is deterministic given ``seed`` (a private ``numpy.random.Generator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from bitcompose.data.images import ImageDataset

__all__ = [
    "OBJECT_COLOURS",
    "OBJECT_SHAPES",
    "GRID",
    "CELL",
    "IMAGE_SIZE",
    "NUM_VALUES",
    "NUM_CELLS",
    "NUM_PROMPTS",
    "SceneObjects",
    "ObjectScenes",
    "make_object_scenes",
    "prompt_name",
    "render_objects",
]

#: Colour name -> which RGB channels it lights.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (1, 0, 0),
    "green": (0, 1, 0),
    "blue": (0, 0, 1),
    "yellow": (1, 1, 0),
}
_MASKS = {
    "square": np.ones((3, 3), dtype=bool),
    "plus": np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool),
    "ring": np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=bool),
}
OBJECT_SHAPES: tuple[str, ...] = tuple(_MASKS)
GRID, CELL = 4, 4
IMAGE_SIZE = GRID * CELL
NUM_VALUES = 4
NUM_CELLS = GRID * GRID
NUM_PROMPTS = len(OBJECT_COLOURS) * len(OBJECT_SHAPES)


def prompt_name(prompt: int) -> str:
    """``"red square"`` etc. for a prompt id ``colour·3 + shape``."""
    colour, shape = divmod(int(prompt), len(OBJECT_SHAPES))
    return f"{list(OBJECT_COLOURS)[colour]} {OBJECT_SHAPES[shape]}"


@dataclass(frozen=True)
class SceneObjects:
    """The objects of one scene: ``int64`` arrays of length ``m`` (1–5): cell, colour, shape, brightness, offset
    (dy, dx in {0, 1})."""

    cells: np.ndarray
    colours: np.ndarray
    shapes: np.ndarray
    brightness: np.ndarray
    offsets: np.ndarray

    @property
    def prompts(self) -> np.ndarray:
        """Prompt ids ``colour·3 + shape``."""
        return self.colours * len(OBJECT_SHAPES) + self.shapes


def render_objects(objects: SceneObjects) -> np.ndarray:
    """The scene as ``uint8 [3, 16, 16]`` with values 0–3."""
    image = np.zeros((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    colours = list(OBJECT_COLOURS.values())
    for cell, colour, shape, level, (dy, dx) in zip(
        objects.cells, objects.colours, objects.shapes, objects.brightness, objects.offsets, strict=True
    ):
        row, col = divmod(int(cell), GRID)
        y, x = row * CELL + int(dy), col * CELL + int(dx)
        mask = _MASKS[OBJECT_SHAPES[int(shape)]]
        for ch, lit in enumerate(colours[int(colour)]):
            if lit:
                image[ch, y : y + 3, x : x + 3][mask] = int(level)
    return image


@dataclass(frozen=True)
class ObjectScenes:
    """Scenes with their objects.

    Attributes:
        images: ``uint8 [N, 3, 16, 16]``, values 0–3.
        objects: one :class:`SceneObjects` per image.
    """

    images: np.ndarray
    objects: list[SceneObjects]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def presence(self) -> Tensor:
        """Multi-label targets ``float [N, 16 + 12]``: which cells hold an object, which prompts are present."""
        out = torch.zeros(len(self), NUM_CELLS + NUM_PROMPTS)
        for i, obj in enumerate(self.objects):
            out[i, torch.as_tensor(obj.cells)] = 1.0
            out[i, NUM_CELLS + torch.as_tensor(obj.prompts)] = 1.0
        return out

    def _expanded(self, labels_of: str, name: str) -> ImageDataset:
        index = [i for i, obj in enumerate(self.objects) for _ in obj.cells]
        labels = np.concatenate([getattr(obj, labels_of) for obj in self.objects])
        num_classes = NUM_CELLS if labels_of == "cells" else NUM_PROMPTS
        return ImageDataset(
            images=torch.from_numpy(self.images[index]).long(),
            labels=torch.from_numpy(labels).long(),
            num_values=NUM_VALUES,
            num_classes=num_classes,
            name=name,
        )

    def position_dataset(self) -> ImageDataset:
        """One example per (image, object), labelled with that object's cell (so training on it conditions on
        one random object of the image)."""
        return self._expanded("cells", "objects-position")

    def prompt_dataset(self) -> ImageDataset:
        """One example per (image, object), labelled with that object's prompt (colour, shape)."""
        return self._expanded("prompts", "objects-prompt")


def make_object_scenes(n: int, *, seed: int, max_objects: int = 5) -> ObjectScenes:
    """``n`` scenes of 1–``max_objects`` objects (see the module docstring); deterministic given ``seed``."""
    if n < 1 or not 1 <= max_objects <= NUM_CELLS:
        raise ValueError(f"need n >= 1 and 1 <= max_objects <= {NUM_CELLS}, got {n}, {max_objects}")
    rng = np.random.default_rng(seed)
    images, objects = [], []
    for _ in range(n):
        m = int(rng.integers(1, max_objects + 1))
        obj = SceneObjects(
            cells=rng.choice(NUM_CELLS, size=m, replace=False).astype(np.int64),
            colours=rng.integers(0, len(OBJECT_COLOURS), m),
            shapes=rng.integers(0, len(OBJECT_SHAPES), m),
            brightness=rng.integers(2, NUM_VALUES, m),
            offsets=rng.integers(0, 2, (m, 2)),
        )
        objects.append(obj)
        images.append(render_objects(obj))
    return ObjectScenes(np.stack(images), objects)
