"""Captioned synthetic scenes: small RGB images of 1–3 coloured shapes, each with several TRUE captions.

A stand-in for MS-COCO captioning (Bit Diffusion §3, Table 3) that a small model learns on a CPU, with captions
that are *fully determined by the image*:

* An image is ``image_size × image_size`` (default 32×32) RGB ``uint8`` on a black background, with 1–3 objects.
  An object is a (size, colour, shape) triple — sizes ``small`` (6 px) / ``large`` (10 px), colours ``red green
  blue yellow purple white`` (saturated, far apart in RGB), shapes ``square circle triangle cross`` (``diamond``
  can be enabled) — drawn as a filled binary mask, so every attribute is visible at 32×32. The objects of one scene
  are distinct triples.
* Objects of a scene with 2–3 objects lie along one **axis**: ``horizontal`` (in equal slots from left to right)
  or ``vertical`` (top to bottom). Their extents along the axis are disjoint (so left/right or above/below is
  unambiguous) and their centres across the axis differ by at most ``2·jitter`` px < the smallest size (so their
  extents across the axis overlap and the *other* relation never holds). A single object may lie anywhere.
* Each image has ``len(templates)`` = 5 reference captions built from the objects in axis order by fixed
  templates (``scene_captions``), e.g. ``"a small red circle to the left of a large blue square"``, ``"a large
  blue square to the right of a small red circle"``, ``"there is a small red circle and a large blue square"``.
  Captions are lowercase words without punctuation, at most 16 words; the vocabulary has 36 words (``VOCABULARY``).

Everything is deterministic given ``seed`` (a private ``numpy.random.Generator``; the global RNGs are untouched).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZES",
    "VOCABULARY",
    "SceneConfig",
    "SceneObject",
    "SceneSet",
    "make_scenes",
    "render_scene",
    "scene_axis",
    "scene_captions",
    "scene_splits",
]

#: Colour name -> RGB. Saturated and far apart, so that a 6-px object's colour is unmistakable.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 30),
    "blue": (40, 80, 255),
    "yellow": (240, 230, 30),
    "purple": (170, 40, 230),
    "white": (245, 245, 245),
}
#: All drawable shapes; ``SceneConfig.shapes`` picks a subset (``diamond`` is off by default: at 6 px it is the
#: shape most similar to a circle).
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross", "diamond")
#: Size name -> side of the object's bounding box in pixels (at ``image_size`` 32).
SIZES: dict[str, int] = {"small": 6, "large": 10}

_TEMPLATE_WORDS = (
    "a there is and an image of the shows to left right above below on top under between from bottom "
    "black background"
).split()
#: Every word a caption can contain (for the default shapes plus ``diamond``).
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys([*_TEMPLATE_WORDS, *SIZES, *COLOURS, *SHAPES]).keys())


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene.

    Attributes:
        shape: one of :data:`SHAPES`.
        colour: one of :data:`COLOURS`.
        size: ``"small"`` or ``"large"``.
        x: column of the bounding box's left edge (pixels, 0 = left).
        y: row of the bounding box's top edge (pixels, 0 = top).
        extent: side of the square bounding box in pixels (``SIZES[size]`` unless configured otherwise).
    """

    shape: str
    colour: str
    size: str
    x: int
    y: int
    extent: int

    @property
    def centre(self) -> tuple[float, float]:
        """Centre ``(cx, cy)`` in pixel coordinates (column, row)."""
        return (self.x + self.extent / 2, self.y + self.extent / 2)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Bounding box ``(x0, y0, x1, y1)``, half-open: pixels ``x0 <= col < x1``, ``y0 <= row < y1``."""
        return (self.x, self.y, self.x + self.extent, self.y + self.extent)

    @property
    def phrase(self) -> str:
        """The noun phrase, e.g. ``"a small red circle"``."""
        return f"a {self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn.

    Args:
        image_size: side of the square image in pixels (>= 3 large objects side by side).
        min_objects / max_objects: number of objects per scene, drawn uniformly in this range (1..3).
        shapes / colours / sizes: the attribute values used (subsets of :data:`SHAPES`, :data:`COLOURS`,
            :data:`SIZES`).
        jitter: maximal offset in px of an object's position across the layout axis from the centre line.
    """

    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 3
    shapes: tuple[str, ...] = ("square", "circle", "triangle", "cross")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "white")
    sizes: tuple[str, ...] = ("small", "large")
    jitter: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= 3:
            raise ValueError(
                f"need 1 <= min_objects <= max_objects <= 3, got {self.min_objects}, {self.max_objects}"
            )
        for name, values, allowed in (
            ("shapes", self.shapes, SHAPES),
            ("colours", self.colours, tuple(COLOURS)),
            ("sizes", self.sizes, tuple(SIZES)),
        ):
            if len(values) == 0 or len(set(values)) != len(values):
                raise ValueError(f"{name} must be a non-empty tuple without repeats, got {values!r}")
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"unknown {name} {bad}; allowed: {', '.join(allowed)}")
        n_triples = len(self.shapes) * len(self.colours) * len(self.sizes)
        if n_triples < self.max_objects:
            raise ValueError(f"only {n_triples} distinct objects for up to {self.max_objects} per scene")
        smallest = min(SIZES[s] for s in self.sizes)
        if self.image_size < 3 * max(SIZES.values()) + 2:
            raise ValueError(f"image_size must be >= {3 * max(SIZES.values()) + 2}, got {self.image_size}")
        if not 0 <= 2 * self.jitter < smallest:
            raise ValueError(
                f"jitter must satisfy 0 <= 2*jitter < smallest size ({smallest}) so that the layout axis is "
                f"unambiguous, got {self.jitter}"
            )


@dataclass(frozen=True)
class SceneSet:
    """A set of captioned scenes.

    Attributes:
        images: uint8 ``[N, H, W, 3]`` (H = W = ``config.image_size``).
        captions: ``N`` lists of reference captions (5 each), all true for the image.
        objects: ``N`` lists of :class:`SceneObject` in axis order (left→right or top→bottom).
        axes: ``N`` layout axes: ``"single"`` (1 object), ``"horizontal"`` or ``"vertical"``.
        config: the :class:`SceneConfig` used.
    """

    images: np.ndarray
    captions: list[list[str]]
    objects: list[list[SceneObject]]
    axes: list[str]
    config: SceneConfig = field(default_factory=SceneConfig)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def images_tensor(self) -> Tensor:
        """The images as uint8 ``[N, 3, H, W]`` (channels first)."""
        return torch.from_numpy(np.ascontiguousarray(self.images.transpose(0, 3, 1, 2)))

    def images_float(self) -> Tensor:
        """The images as float32 ``[N, 3, H, W]`` in ``[-1, 1]`` (``x / 127.5 - 1``)."""
        return self.images_tensor().float() / 127.5 - 1.0

    def all_captions(self) -> list[str]:
        """Every reference caption, flattened (``5·N`` strings), e.g. to train a tokenizer."""
        return [c for caps in self.captions for c in caps]

    def subset(self, indices: Sequence[int] | np.ndarray) -> SceneSet:
        """The scenes at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return SceneSet(
            images=self.images[idx],
            captions=[self.captions[i] for i in idx],
            objects=[self.objects[i] for i in idx],
            axes=[self.axes[i] for i in idx],
            config=self.config,
        )


# ---------------------------------------------------------------------------------------------- rendering


def _shape_mask(shape: str, s: int) -> np.ndarray:
    """Boolean ``[s, s]`` mask of a filled shape in an ``s × s`` box (pixel centres at ``i + 0.5``)."""
    c = (np.arange(s) + 0.5) - s / 2  # pixel-centre offsets from the box centre
    dy, dx = np.meshgrid(c, c, indexing="ij")
    r = s / 2
    if shape == "square":
        return np.ones((s, s), dtype=bool)
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "cross":
        arm = s / 6  # arms of width s/3
        return (np.abs(dx) <= arm) | (np.abs(dy) <= arm)
    if shape == "triangle":
        # apex at the top, base on the bottom row: row i spans half-width (i + 1) / s · r
        row = np.arange(s)[:, None]
        return np.abs(dx) <= (row + 1) / s * r
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def render_scene(objects: Sequence[SceneObject], image_size: int = 32) -> np.ndarray:
    """Draw ``objects`` on a black ``image_size²`` canvas: uint8 ``[H, W, 3]``."""
    img = np.zeros((image_size, image_size, 3), dtype=np.uint8)
    for o in objects:
        x0, y0, x1, y1 = o.box
        if x0 < 0 or y0 < 0 or x1 > image_size or y1 > image_size:
            raise ValueError(f"object {o} does not fit in a {image_size}x{image_size} image")
        mask = _shape_mask(o.shape, o.extent)
        img[y0:y1, x0:x1][mask] = COLOURS[o.colour]
    return img


# ---------------------------------------------------------------------------------------------- captions


def scene_axis(objects: Sequence[SceneObject]) -> str:
    """The layout axis implied by the positions: ``"single"``, ``"horizontal"`` or ``"vertical"``.

    ``horizontal`` when the objects' column ranges are pairwise disjoint (and ``vertical`` for row ranges).

    Raises:
        ValueError: if neither (or both) holds, i.e. the positions do not define one relation.
    """
    if len(objects) == 0:
        raise ValueError("a scene needs at least one object")
    if len(objects) == 1:
        return "single"

    def disjoint(lo: list[int], hi: list[int]) -> bool:
        order = np.argsort(lo)
        return all(hi[order[k]] <= lo[order[k + 1]] for k in range(len(lo) - 1))

    boxes = [o.box for o in objects]
    horiz = disjoint([b[0] for b in boxes], [b[2] for b in boxes])
    vert = disjoint([b[1] for b in boxes], [b[3] for b in boxes])
    if horiz == vert:
        raise ValueError(f"ambiguous layout (column ranges disjoint: {horiz}, row ranges disjoint: {vert})")
    return "horizontal" if horiz else "vertical"


# Templates: {0}, {1}, {2} are the noun phrases in axis order (left→right or top→bottom).
_TEMPLATES: dict[tuple[int, str], tuple[str, ...]] = {
    (1, "single"): (
        "{0}",
        "there is {0}",
        "an image of {0}",
        "{0} on a black background",
        "the image shows {0}",
    ),
    (2, "horizontal"): (
        "{0} to the left of {1}",
        "{1} to the right of {0}",
        "there is {0} and {1}",
        "{0} is left of {1}",
        "{1} is right of {0}",
    ),
    (2, "vertical"): (
        "{0} above {1}",
        "{1} below {0}",
        "there is {0} and {1}",
        "{0} is on top of {1}",
        "{1} is under {0}",
    ),
    (3, "horizontal"): (
        "{1} between {0} and {2}",
        "from left to right {0} {1} and {2}",
        "there is {0} {1} and {2}",
        "{0} is left of {1} and {2}",
        "{2} is right of {1} and {0}",
    ),
    (3, "vertical"): (
        "{1} between {0} and {2}",
        "from top to bottom {0} {1} and {2}",
        "there is {0} {1} and {2}",
        "{0} is above {1} and {2}",
        "{2} is below {1} and {0}",
    ),
}


def scene_captions(objects: Sequence[SceneObject]) -> list[str]:
    """The 5 reference captions of a scene, a pure function of its objects (positions included).

    The objects are sorted along the layout axis (:func:`scene_axis`) before the templates are filled in, so the
    captions do not depend on the order of ``objects``.
    """
    axis = scene_axis(objects)
    if axis == "horizontal":
        ordered = sorted(objects, key=lambda o: o.x)
    elif axis == "vertical":
        ordered = sorted(objects, key=lambda o: o.y)
    else:
        ordered = list(objects)
    key = (len(ordered), axis)
    if key not in _TEMPLATES:
        raise ValueError(f"no caption templates for {len(ordered)} objects")
    phrases = [o.phrase for o in ordered]
    return [t.format(*phrases) for t in _TEMPLATES[key]]


# ---------------------------------------------------------------------------------------------- sampling


def _sample_objects(rng: np.random.Generator, cfg: SceneConfig) -> tuple[list[SceneObject], str]:
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    n_triples = len(cfg.shapes) * len(cfg.colours) * len(cfg.sizes)
    picks = rng.choice(n_triples, size=n, replace=False)
    triples = []
    for p in picks:
        p = int(p)
        shape = cfg.shapes[p % len(cfg.shapes)]
        p //= len(cfg.shapes)
        colour = cfg.colours[p % len(cfg.colours)]
        size = cfg.sizes[p // len(cfg.colours)]
        triples.append((shape, colour, size))
    S = cfg.image_size
    if n == 1:
        shape, colour, size = triples[0]
        e = SIZES[size]
        x, y = (int(v) for v in rng.integers(0, S - e + 1, size=2))
        return [SceneObject(shape, colour, size, x, y, e)], "single"
    axis = "horizontal" if rng.random() < 0.5 else "vertical"
    slot = S / n
    objs = []
    for k, (shape, colour, size) in enumerate(triples):
        e = SIZES[size]
        lo = int(np.ceil(k * slot))
        hi = int(np.floor((k + 1) * slot)) - e  # inclusive upper bound of the box's start along the axis
        along = int(rng.integers(lo, hi + 1))
        across = (S - e) // 2 + int(rng.integers(-cfg.jitter, cfg.jitter + 1))
        x, y = (along, across) if axis == "horizontal" else (across, along)
        objs.append(SceneObject(shape, colour, size, x, y, e))
    return objs, axis


def _digest(img: np.ndarray) -> bytes:
    return hashlib.blake2b(img.tobytes(), digest_size=16).digest()


def _generate(
    n: int, rng: np.random.Generator, cfg: SceneConfig, exclude: set[bytes] | None = None
) -> tuple[SceneSet, set[bytes]]:
    """``n`` scenes with pairwise distinct images, none of whose digest is in ``exclude``."""
    seen: set[bytes] = set(exclude) if exclude else set()
    images: list[np.ndarray] = []
    captions: list[list[str]] = []
    objects: list[list[SceneObject]] = []
    axes: list[str] = []
    max_tries = 100 * n + 1000
    tries = 0
    while len(images) < n:
        tries += 1
        if tries > max_tries:
            raise ValueError(
                f"could not draw {n} distinct scenes with {cfg}; use fewer scenes or more attributes"
            )
        objs, axis = _sample_objects(rng, cfg)
        img = render_scene(objs, cfg.image_size)
        d = _digest(img)
        if d in seen:
            continue
        seen.add(d)
        images.append(img)
        captions.append(scene_captions(objs))
        objects.append(objs)
        axes.append(axis)
    S = cfg.image_size
    arr = np.stack(images) if images else np.zeros((0, S, S, 3), dtype=np.uint8)
    new = seen - (exclude or set())
    return SceneSet(arr, captions, objects, axes, cfg), new


def _check_count(name: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n!r}")


def make_scenes(n: int, *, seed: int, config: SceneConfig | None = None) -> SceneSet:
    """Draw ``n`` captioned scenes with pairwise distinct images, deterministically from ``seed``.

    Args:
        n: number of scenes.
        seed: seed of the private ``numpy.random.Generator`` (same seed and config -> identical scenes).
        config: drawing options (default :class:`SceneConfig`: 32×32, 1–3 objects).

    Returns:
        A :class:`SceneSet` (images uint8 ``[n, 32, 32, 3]``, 5 captions per image, objects, axes).
    """
    _check_count("n", n)
    cfg = config or SceneConfig()
    return _generate(int(n), np.random.default_rng(seed), cfg)[0]


def scene_splits(
    n_train: int, n_val: int, n_test: int, seed: int, *, config: SceneConfig | None = None
) -> dict[str, SceneSet]:
    """Train / val / test scene sets with disjoint images.

    Each split has its own random stream, ``numpy.random.default_rng([seed, k])`` with k = 0, 1, 2, so a split
    does not change when another split's size changes — except that val rejects images present in train, and
    test rejects images present in train or val (exact duplicates are rare: mostly single-object scenes).

    Returns:
        ``{"train": SceneSet, "val": SceneSet, "test": SceneSet}``.
    """
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        _check_count(name, n)
    cfg = config or SceneConfig()
    out: dict[str, SceneSet] = {}
    taken: set[bytes] = set()
    for k, (name, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        out[name], new = _generate(int(n), np.random.default_rng([seed, k]), cfg, exclude=taken)
        taken |= new
    return out
