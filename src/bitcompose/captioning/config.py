"""Run configurations and named presets of the captioning experiments.

A :class:`CaptionRunConfig` fully determines a training run (data, tokenizer, network, optimiser, seed); its
:meth:`~CaptionRunConfig.cache_key` names the cached run folder, so equal configurations reuse one trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitcompose.core.config import Config
from bitcompose.nets.caption import CaptionNetConfig, caption_net_config
from bitcompose.training.run_config import check_run_fields, from_preset, same_run

__all__ = ["CaptionRunConfig", "PRESETS", "preset", "MODELS"]

MODELS = ("diffusion", "ar")


@dataclass(frozen=True)
class CaptionRunConfig(Config):
    """Everything a captioning training run depends on.

    Attributes:
        preset: preset name (informational; part of the cache folder's name).
        model: ``"diffusion"`` (Bit Diffusion decoder) or ``"ar"`` (autoregressive baseline).
        net_size: size name for :func:`~bitcompose.nets.caption.caption_net_config`.
        output_head: diffusion output layer, ``"softmax"`` (vocabulary softmax → expected code) or ``"linear"``.
        encoding: BitCodec encoding of token ids.
        max_len: caption length ``L`` in tokens (with end-of-caption and padding).
        vocab_size: SentencePiece vocabulary size to train (an upper bound for the word model).
        tokenizer: SentencePiece model type (``"word"``, ``"bpe"``, ``"unigram"``).
        num_train / num_val / num_test: numbers of scenes per split; data_seed: their seed.
        steps: optimiser steps; batch_size: images per step (one random reference caption each).
        lr, warmup, weight_decay, lr_schedule (``"constant"`` or ``"cosine"`` decay to 10 %): AdamW settings.
        ema_decay: EMA decay of the weights used for sampling.
        self_cond_prob: fraction of examples trained with a self-conditioning estimate (paper 0.5).
        ce_weight: weight of an auxiliary label-smoothed (0.1) cross-entropy on the vocabulary logits of the
            softmax head, added to the bit MSE (SCD-Net's recipe; 0 = the paper's pure MSE).
        init_from: name of a preset whose finished run (same model kind and seed, trained or loaded from the
            cache first) provides the initial weights (online and EMA); ``""`` = random initialisation. The
            optimiser and the learning-rate schedule start afresh (a continuation run).
        seed: seed of initialisation, batches and noise.
        log_every / save_every: logging and checkpoint intervals in steps.
    """

    preset: str = "custom"
    model: str = "diffusion"
    net_size: str = "small"
    output_head: str = "softmax"
    encoding: str = "binary"
    max_len: int = 20
    vocab_size: int = 64
    tokenizer: str = "word"
    num_train: int = 10000
    num_val: int = 200
    num_test: int = 500
    data_seed: int = 0
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    self_cond_prob: float = 0.5
    ce_weight: float = 0.0
    init_from: str = ""
    seed: int = 0
    log_every: int = 100
    save_every: int = 500

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        check_run_fields(
            self,
            at_least_one=(
                "steps",
                "batch_size",
                "max_len",
                "num_train",
                "num_test",
                "log_every",
                "save_every",
            ),
        )
        if self.ce_weight > 0 and self.output_head != "softmax":
            raise ValueError(f"ce_weight needs output_head='softmax', got {self.output_head!r}")

    def net_config(self, vocab_size: int) -> CaptionNetConfig:
        """The network sizes for a tokenizer of ``vocab_size`` ids."""
        return caption_net_config(
            self.net_size,
            vocab_size=vocab_size,
            max_len=self.max_len,
            output_head=self.output_head,
            encoding=self.encoding,
        )

    def same_run(self, stored: dict[str, Any]) -> bool:
        """Whether a stored :meth:`to_dict` (possibly from an older version, missing newer fields) is this run."""
        return same_run(self, stored)

    def cache_spec(self) -> dict[str, Any]:
        """What the trained weights depend on (the cache's spec): every field but the logging ones."""
        d = self.to_dict()
        for k in ("log_every", "save_every"):
            d.pop(k)
        return d


PRESETS: dict[str, CaptionRunConfig] = {
    # Seconds on a laptop core; for the unit tests and smoke runs of the CLI.
    "scenes-tiny": CaptionRunConfig(
        preset="scenes-tiny",
        net_size="tiny",
        num_train=256,
        num_val=32,
        num_test=64,
        steps=300,
        batch_size=32,
        lr=2e-3,
        warmup=20,
        ema_decay=0.99,
        log_every=50,
        save_every=300,
    ),
    # The results preset of docs/results/captioning.md (measured times there).
    "scenes-small": CaptionRunConfig(
        preset="scenes-small", steps=3000, batch_size=48, warmup=200, ce_weight=0.5
    ),
    # scenes-small continued for 2000 more steps (5000 in all) at a lower peak learning rate.
    "scenes-small-long": CaptionRunConfig(
        preset="scenes-small-long",
        steps=2000,
        batch_size=48,
        lr=5e-4,
        warmup=100,
        ce_weight=0.5,
        init_from="scenes-small",
    ),
    # The paper's decoder size (6 layers x 512); far too slow for a CPU, for GPUs.
    "scenes-paper": CaptionRunConfig(
        preset="scenes-paper",
        net_size="paper",
        num_train=20000,
        steps=50000,
        batch_size=128,
        lr=2e-4,
        warmup=2000,
        ema_decay=0.9999,
        lr_schedule="constant",
    ),
}


def preset(name: str, **overrides: Any) -> CaptionRunConfig:
    """A named preset with field overrides (e.g. ``model="ar"``, ``steps=100``, ``seed=1``)."""
    return from_preset(PRESETS, name, "captioning", overrides)
