"""The property guide of a molecule model: a noise-conditioned predictor ``p_φ(bin | x_t, t)`` of each property's
bin (:data:`~bitcompose.seq.properties.ATTRIBUTES`) from the analog bits of a SMILES sequence, for classifier
guidance (Dhariwal & Nichol 2021; the "Reduce, Reuse, Recycle" reading: ``q_t(x)·p_φ(a | x_t)^w`` is one more
factor of a product, sampled by reverse diffusion or MCMC).

It reads exactly what the model's samplers hand it: the model's tokeniser, length and codec, noised as
``x_t = α(t)·x0 + σ(t)·ε`` on the model's own schedule with ``t ~ U(0, 1)``; the loss is the sum over properties of
the cross-entropy of the molecule's bin (RDKit's QED and logP, computed once per molecule). Trained on the model's
training molecules with the shared trainer, deterministic from its seed, kept in the harness's cache (kind
``seq-guides``, keyed by the model's data, tokeniser and length) with its held-out accuracy at each noise level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from bitcompose.core.tensors import append_dims
from bitcompose.experiments.cache import NETWORK, cached
from bitcompose.nets.classifier import read_network, save_network
from bitcompose.nets.seq import SeqNetConfig, SeqPoolNet
from bitcompose.seq.data import load_sequences
from bitcompose.seq.model import SeqModel
from bitcompose.seq.properties import ATTRIBUTES, PROPERTIES, LabelMemo
from bitcompose.seq.train import make_denoiser
from bitcompose.training.checkpoint import load_state_strict
from bitcompose.training.loop import Trainer
from bitcompose.training.optim import OptimConfig

__all__ = ["GUIDE_STEPS", "PropertyGuide", "load_or_train_guide"]

#: Training steps (batches of 128) of the guide.
GUIDE_STEPS = 1500
#: Times at which the held-out accuracy is reported.
NOISE_TIMES = (0.0, 0.3, 0.5, 0.7, 0.9)
_FORMAT, _ARCHITECTURE = "bitcompose-seq-guide", "seq-pool-transformer-v1"


def _slices() -> dict[str, slice]:
    """The columns of each property's bins among the guide's outputs (ATTRIBUTES is grouped by property)."""
    out = {}
    for prop in PROPERTIES:
        idx = [i for i, a in enumerate(ATTRIBUTES) if a.prop == prop]
        out[prop] = slice(idx[0], idx[-1] + 1)
    return out


class PropertyGuide(nn.Module):
    """``forward(x_t [B, L, nb], t [B])`` → logits ``[B, len(ATTRIBUTES)]``: each property's bins are a softmax
    of their own (:meth:`log_prob`).

    Args:
        net: the pooled Transformer (:class:`~bitcompose.nets.seq.SeqPoolNet`).
        schedule: the diffusion model's schedule (times → γ, the network's noise input).
    """

    def __init__(self, net: SeqPoolNet, schedule: Any) -> None:
        super().__init__()
        self.net, self.schedule = net, schedule
        self.info: dict[str, Any] = {}

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        """Logits ``[B, len(ATTRIBUTES)]`` (unnormalised across properties)."""
        return self.net(x_t, self.schedule.gamma(t))

    def property_logits(self, x_t: Tensor, t: Tensor, prop: str) -> Tensor:
        """Logits ``[B, bins]`` of one property's bins."""
        return self(x_t, t)[:, _slices()[prop]]

    def loss(self, x0: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
        """Cross-entropy, summed over properties, of ``x0`` ``[B, L, nb]`` noised at random times; ``labels``
        ``long [B, P]`` from :func:`~bitcompose.seq.properties.attribute_labels` (−1 rows are left out)."""
        t = torch.rand(x0.shape[0], generator=generator)
        eps = torch.randn(x0.shape, generator=generator)
        x_t = append_dims(self.schedule.alpha(t), x0) * x0 + append_dims(self.schedule.sigma(t), x0) * eps
        logits = self(x_t, t)
        total = logits.new_zeros(())
        for j, cols in enumerate(_slices().values()):  # column j of labels is PROPERTIES[j]
            keep = labels[:, j] >= 0
            if bool(keep.any()):
                total = total + F.cross_entropy(logits[keep, cols], labels[keep, j] - cols.start)
        return total


class _GuideTask:
    """Random batches of the training molecules (the trainer's task)."""

    def __init__(
        self, guide: PropertyGuide, model: SeqModel, molecules: list[str], batch_size: int, seed: int
    ):
        self.module: nn.Module = guide
        self.guide, self.model, self.molecules = guide, model, molecules
        self.batch_size, self.generator = batch_size, torch.Generator().manual_seed(seed)
        self.property_labels = LabelMemo()

    def encode(self, batch: list[str]) -> tuple[Tensor, Tensor]:
        """``(analog bits [B, L, nb], labels long [B, P])``; each molecule's properties computed once."""
        cfg = self.model.net_config
        ids = self.model.tokenizer.encode(batch, cfg.max_len)
        return cfg.codec.encode_sequence(ids), self.property_labels(batch)

    def loss(self, net: nn.Module, step: int) -> Tensor:
        idx = torch.randint(len(self.molecules), (self.batch_size,), generator=self.generator).tolist()
        x0, labels = self.encode([self.molecules[i] for i in idx])
        return self.guide.loss(x0, labels, self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def _net_config(model: SeqModel) -> SeqNetConfig:
    cfg = model.net_config
    return SeqNetConfig(
        vocab_size=cfg.vocab_size, max_len=cfg.max_len, model="bits", dim=128, depth=2, heads=4,
        encoding=cfg.encoding, bit_scale=cfg.bit_scale, self_condition=False,
    )  # fmt: skip


@torch.no_grad()
def accuracy_by_time(guide: PropertyGuide, x0: Tensor, labels: Tensor, seed: int = 0) -> dict[str, float]:
    """Per property, the share of ``x0`` ``[N, L, nb]`` whose bin the guide ranks first at each of the
    :data:`NOISE_TIMES` (keys ``"qed@t=0.5"``)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for time in NOISE_TIMES:
        t = torch.full((len(x0),), float(time))
        eps = torch.randn(x0.shape, generator=gen)
        x_t = append_dims(guide.schedule.alpha(t), x0) * x0 + append_dims(guide.schedule.sigma(t), x0) * eps
        logits = guide(x_t, t)
        for j, (prop, cols) in enumerate(_slices().items()):
            keep = labels[:, j] >= 0
            pred = logits[keep, cols].argmax(1) + cols.start
            out[f"{prop}@t={time:g}"] = float((pred == labels[keep, j]).double().mean())
    return out


def load_or_train_guide(
    model: SeqModel,
    *,
    steps: int | None = None,
    seed: int = 0,
    held_out: int = 1000,
    cache: str | Path | None = None,
    progress: bool = True,
) -> PropertyGuide:
    """The property guide of ``model`` from the cache, or trained there first (Adam, lr 1e-3 decaying linearly,
    batches of 128) for ``steps`` steps (default :data:`GUIDE_STEPS`) on the model's training molecules.

    Returns:
        the guide in eval mode; ``info`` holds ``steps``, ``train_seconds``, ``accuracy_by_time`` (on ``held_out``
        test molecules of the model's data) and ``path``.

    Raises:
        ValueError: a model that is not a bits model of SMILES.
    """
    if model.kind != "bits" or model.tokenizer.kind != "smiles":
        raise ValueError("a property guide needs a bits model of SMILES molecules")
    steps = GUIDE_STEPS if steps is None else steps
    net_config = _net_config(model)
    schedule = make_denoiser(model.net, model.net_config).schedule

    def build() -> PropertyGuide:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # nn.Module constructors draw from the global RNG
            return PropertyGuide(SeqPoolNet(net_config, len(ATTRIBUTES)), schedule)

    def train(folder: Path) -> dict[str, Any]:
        data = load_sequences(model.run.data, seed=model.run.seed)
        molecules = data.train[: model.run.num_train] if model.run.num_train else data.train
        guide = build()
        task = _GuideTask(guide, model, molecules, 128, seed)
        optim = OptimConfig(name="adam", lr=1e-3, schedule="linear", grad_clip=1.0, ema_decay=None)
        result = Trainer(
            task, optim, steps=steps, log_every=50, progress=progress, desc="property guide"
        ).train()
        guide.eval()
        x0, labels = task.encode(data.test[:held_out])
        info = {
            "steps": steps,
            "seed": seed,
            "final_loss": result.loss,
            "train_seconds": result.train_seconds,
            "accuracy_by_time": accuracy_by_time(guide, x0, labels),
            "num_train": len(molecules),
            "num_held_out": len(x0),
        }
        save_network(guide.net, folder / NETWORK, _FORMAT, _ARCHITECTURE, net_config.to_dict(), info)
        return info

    spec = {
        "architecture": _ARCHITECTURE,
        "net": net_config.to_dict(),
        "data": model.data.get("fingerprint", model.run.data),
        "num_train": model.run.num_train,
        "tokenizer": model.tokenizer.to_dict(),
        "attributes": [[a.name, str(a.low), str(a.high)] for a in ATTRIBUTES],
        "steps": steps,
        "seed": seed,
    }
    entry = cached("seq-guides", "property-guide", spec, train, cache=cache)
    meta, weights = read_network(entry.path / NETWORK, _FORMAT, _ARCHITECTURE)
    guide = build()
    load_state_strict(guide.net, weights, what=f"weights of {entry.path / NETWORK}")
    guide.eval().requires_grad_(False)
    guide.info = {**meta.get("info", {}), "path": str(entry.path)}
    return guide
