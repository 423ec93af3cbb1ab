"""Caption metrics of a trained captioner on a split (BLEU-4, CIDEr-D, ROUGE-L against all references)."""

from __future__ import annotations

import torch

from bitcompose.captioning.data import CaptionSplit
from bitcompose.captioning.model import Captioner

__all__ = ["evaluate_captioner", "score_captions"]


def score_captions(candidates: list[str], references: list[list[str]]) -> dict[str, float]:
    """``{"bleu4", "cider", "rouge_l"}`` of one candidate per image against its references (0–1; CIDEr a ratio)."""
    from bitcompose.metrics.captions import caption_scores

    scores = caption_scores(candidates, references)
    return {k: float(scores[k]) for k in ("bleu4", "cider", "rouge_l")}


def evaluate_captioner(
    captioner: Captioner,
    split: CaptionSplit,
    *,
    steps: int = 10,
    td: float = 0.0,
    sampler: str = "ddim",
    beam: int = 1,
    seed: int = 0,
    decode: str = "bits",
) -> dict[str, float]:
    """Caption every image of ``split`` once and score the captions against the references.

    Args:
        captioner: the model.
        split: images and references.
        steps, td, sampler: diffusion sampling settings (ignored by the AR model).
        beam: AR beam width (ignored by the diffusion model).
        seed: seed of the diffusion noise.
        decode: diffusion read-out, ``"bits"`` (threshold, the paper) or ``"argmax"`` (softmax head).

    Returns:
        ``{"bleu4", "cider", "rouge_l"}`` (BLEU and ROUGE in 0–1, CIDEr-D as a plain ratio, e.g. 1.15).
    """
    gen = torch.Generator().manual_seed(seed)
    candidates = captioner.caption(
        split.images, steps=steps, td=td, sampler=sampler, beam=beam, generator=gen, decode=decode
    )
    return score_captions(candidates, split.captions)
