"""Run configurations and named presets of the sequence models.

A :class:`SeqRunConfig` fully determines a training run (data, tokeniser, network, optimiser, seed); its
:meth:`~SeqRunConfig.cache_spec` (the data named by their fingerprint, not their path) keys the harness's cache, so
equal configurations on equal data reuse one trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bitcompose.core.config import Config
from bitcompose.nets.seq import SEQ_MODELS, SeqNetConfig, seq_net_config
from bitcompose.seq.data import MOSES
from bitcompose.seq.tokenizer import KINDS
from bitcompose.training.run_config import check_run_fields, from_preset, same_run

__all__ = ["CONDITIONS", "SeqRunConfig", "PRESETS", "DEFAULT_PRESET", "preset"]

#: What a sequence model can be conditioned on: nothing, or one molecular property bin per example
#: (:data:`bitcompose.seq.properties.ATTRIBUTES`, SMILES data only).
CONDITIONS = ("none", "properties")

#: The preset `bitcompose seq train` uses when none is named.
DEFAULT_PRESET = "small"


@dataclass(frozen=True)
class SeqRunConfig(Config):
    """Everything a sequence training run depends on.

    Attributes:
        preset: preset name (informational; part of the cache folder's name).
        data: ``"moses"`` or the path of a text file with one sequence per line.
        tokenizer: ``"smiles"``, ``"chars"`` or ``"sentencepiece"``; vocab_size: SentencePiece's pieces.
        max_len: positions ``L`` (0 = the longest training sequence + 1, so that every sequence ends).
        model: ``"bits"`` (Bit Diffusion) or ``"masked"`` (the absorbing-state baseline).
        net_size: size name of :func:`~bitcompose.nets.seq.seq_net_config`; encoding: the bits' code.
        num_train: training sequences used (0 = all).
        steps, batch_size, lr, warmup, weight_decay, lr_schedule, ema_decay: the optimiser (AdamW, linear
            warm-up, then constant or cosine decay to 10 %, EMA of the weights used for sampling).
        self_cond_prob: fraction of examples trained with a self-conditioning estimate (bits; paper 0.5).
        ce_weight: weight of an auxiliary label-smoothed (0.1) cross-entropy on the bits model's vocabulary
            logits, added to the bit MSE (SCD-Net's recipe; 0 = the paper's pure MSE). The masked model's loss is a
            cross-entropy already; it does not read this field.
        precision: ``auto``, ``fp32`` or ``bf16`` (autocast of the training loss).
        condition: ``none`` or ``properties`` (bits model, SMILES): each training molecule is labelled with the
            bin of one of its properties, drawn at random per step (:mod:`bitcompose.seq.properties`), so that one
            network learns every ``p(x | attribute)``; ``cond_drop_prob`` of the labels are dropped, so that it
            also learns ``p(x)`` for classifier-free guidance and composition.
        seed: seed of the initialisation, batches, noise and a text file's split.
        log_every / save_every: logging and checkpoint intervals in steps.
    """

    preset: str = "custom"
    data: str = MOSES
    tokenizer: str = "smiles"
    vocab_size: int = 256
    max_len: int = 0
    model: str = "bits"
    net_size: str = "small"
    encoding: str = "binary"
    num_train: int = 0
    steps: int = 4000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    self_cond_prob: float = 0.5
    ce_weight: float = 0.0
    precision: str = "auto"
    condition: str = "none"
    cond_drop_prob: float = 0.2
    seed: int = 0
    log_every: int = 100
    save_every: int = 500

    def __post_init__(self) -> None:
        if self.model not in SEQ_MODELS:
            raise ValueError(f"model must be one of {SEQ_MODELS}, got {self.model!r}")
        if self.tokenizer not in KINDS:
            raise ValueError(f"tokenizer must be one of {KINDS}, got {self.tokenizer!r}")
        if self.max_len < 0 or self.num_train < 0 or self.warmup < 0:
            raise ValueError("max_len, num_train and warmup must be >= 0")
        check_run_fields(self, at_least_one=("steps", "batch_size", "log_every", "save_every"))
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {self.condition!r}")
        if self.condition == "properties" and (self.model != "bits" or self.tokenizer != "smiles"):
            raise ValueError(
                "condition='properties' needs the bits model and SMILES data (tokenizer='smiles')"
            )
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must lie in [0, 1), got {self.cond_drop_prob}")

    def net_config(self, vocab_size: int, max_len: int) -> SeqNetConfig:
        """The network for a tokeniser of ``vocab_size`` ids and sequences of ``max_len`` positions."""
        from bitcompose.seq.properties import ATTRIBUTES

        classes = len(ATTRIBUTES) if self.condition == "properties" else 0
        return seq_net_config(
            self.net_size, vocab_size=vocab_size, max_len=max_len, model=self.model, encoding=self.encoding,
            num_classes=classes,
        )  # fmt: skip

    def same_run(self, stored: dict[str, Any]) -> bool:
        """Whether a stored :meth:`to_dict` is this run."""
        return same_run(self, stored)

    def cache_spec(self, fingerprint: str) -> dict[str, Any]:
        """What the trained weights depend on: every field but the logging ones, the data by ``fingerprint``
        (an unconditional run leaves out the condition fields, so its key is the one it had before they existed)."""
        d = self.to_dict()
        for k in ("log_every", "save_every", "preset"):
            d.pop(k)
        if self.condition == "none":
            del d["condition"], d["cond_drop_prob"]
        d["data"] = fingerprint
        return d


PRESETS: dict[str, SeqRunConfig] = {
    # Seconds on a laptop core: the unit tests and CLI smoke runs (any small file).
    "tiny": SeqRunConfig(
        preset="tiny",
        net_size="tiny",
        num_train=2000,
        steps=200,
        batch_size=32,
        lr=2e-3,
        warmup=20,
        ema_decay=0.99,
        precision="fp32",
        log_every=50,
        save_every=200,
    ),
    # The default of `bitcompose seq train` and the models of docs/results/molecules.md (<= 20 min, 2 cores;
    # fp32: at this width bf16 autocast is slower on a CPU, measured in docs/results/molecules.md).
    "small": SeqRunConfig(
        preset="small", steps=1250, batch_size=128, lr=1e-3, warmup=100, ce_weight=0.5, precision="fp32"
    ),
    # A GPU size (BERT-base width); far too slow for a CPU.
    "gpu": SeqRunConfig(
        preset="gpu",
        net_size="base",
        steps=200_000,
        batch_size=512,
        lr=3e-4,
        warmup=5000,
        ema_decay=0.9999,
        lr_schedule="constant",
    ),
}


def preset(name: str, **overrides: Any) -> SeqRunConfig:
    """A named preset with field overrides (e.g. ``data="file.txt"``, ``model="masked"``, ``steps=100``)."""
    return from_preset(PRESETS, name, "sequence", overrides)
