"""Captioned scenes as tensors for the captioning models: images in [−1, 1] and tokenised reference captions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from torch import Tensor

from bitcompose.captioning.config import CaptionRunConfig
from bitcompose.data.scenes import SceneSet, scene_splits

__all__ = ["CaptionSplit", "load_splits", "tokenize_references"]


@dataclass(frozen=True)
class CaptionSplit:
    """One split of captioned images.

    Attributes:
        images: float ``[N, 3, H, W]`` in ``[−1, 1]``.
        captions: ``N`` lists of reference captions (strings).
        ids: ``N`` image ids (``"<split>-<index>"``).
    """

    images: Tensor
    captions: list[list[str]]
    ids: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def head(self, n: int) -> CaptionSplit:
        """The first ``n`` items."""
        return CaptionSplit(self.images[:n], self.captions[:n], self.ids[:n])


@lru_cache(maxsize=4)
def _splits(n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, SceneSet]:
    return scene_splits(n_train, n_val, n_test, seed)


def load_splits(config: CaptionRunConfig) -> dict[str, CaptionSplit]:
    """The train / val / test scenes of a run configuration (deterministic in ``config.data_seed``)."""
    sets = _splits(config.num_train, config.num_val, config.num_test, config.data_seed)
    return {
        name: CaptionSplit(s.images_float(), s.captions, [f"{name}-{i}" for i in range(len(s))])
        for name, s in sets.items()
    }


def tokenize_references(captions: list[list[str]], tokenizer: object, max_len: int) -> Tensor:
    """Token ids of every reference: long ``[N, R, L]`` (``R`` = references per image, all images equal).

    Raises:
        ValueError: if the images have different numbers of references.
    """
    counts = {len(c) for c in captions}
    if len(counts) != 1:
        raise ValueError(
            f"every image needs the same number of reference captions, got counts {sorted(counts)}"
        )
    r = counts.pop()
    flat = [c for caps in captions for c in caps]
    ids: Tensor = tokenizer.encode_batch(flat, max_len)  # type: ignore[attr-defined]
    return ids.reshape(len(captions), r, max_len).long()
