"""Training of the sequence models on the shared training stack, cached by the experiment harness.

Bits: the Bit Diffusion objective on the analog bits of the token ids (x0 prediction, per-element MSE,
self-conditioning on ``self_cond_prob`` of the examples; :func:`bitcompose.diffusion_loss`), optionally plus a
label-smoothed cross-entropy on the softmax head's logits. Masked: the absorbing-state ELBO
(:func:`bitcompose.diffusion.masked.masked_loss`) on the one-hot codes of the same ids. Both: AdamW with warm-up
and decay, gradient clipping at 1, EMA of the weights (used for sampling), every random draw from one
``torch.Generator`` seeded by ``run.seed`` and checkpointed, so that a resumed run continues exactly. A step takes
a random batch of training sequences and encodes it (the data stay strings: MOSES's 1.6 M SMILES are never held
as one tensor).

Run folder::

    run/
        tokenizer.json    the vocabulary (SeqTokenizer.save)
        data.json         the data source, its fingerprint, L, the split sizes
        checkpoint/       config.json + model.safetensors + ema.safetensors + training_state.pt
        train_log.json    losses, wall-clock time, machine
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.diffusion import BitDenoiser, diffusion_loss
from bitcompose.diffusion.masked import MaskedDenoiser, masked_loss
from bitcompose.experiments.cache import cached
from bitcompose.nets.seq import SeqNetConfig, build_seq_net
from bitcompose.seq.config import SeqRunConfig
from bitcompose.seq.data import SequenceData, data_fingerprint, load_sequences
from bitcompose.seq.properties import LabelMemo
from bitcompose.seq.tokenizer import SeqTokenizer, build_tokenizer
from bitcompose.training.loop import CHECKPOINT_DIR, RunFolder, Trainer
from bitcompose.training.optim import OptimConfig, adamw_recipe
from bitcompose.training.run_config import stored_run_complete
from bitcompose.training.train_log import LOG_FILE, write_train_log

__all__ = [
    "KIND",
    "SeqTask",
    "train_seq",
    "train_or_load",
    "run_is_complete",
    "encode_codes",
    "make_denoiser",
    "TOKENIZER_FILE",
    "DATA_FILE",
    "LOG_FILE",
]

#: The cache's sub-folder of the sequence runs.
KIND = "seq"
TOKENIZER_FILE = "tokenizer.json"
DATA_FILE = "data.json"


def encode_codes(net_config: SeqNetConfig, ids: Tensor) -> Tensor:
    """Token ids ``long [B, L]`` → what the model diffuses: analog bits ``[B, L, nb]`` (bits) or one-hot codes
    ``[B, V, L]`` (masked, channels second)."""
    codes = net_config.codec.encode_sequence(ids)
    return codes if net_config.model == "bits" else codes.transpose(1, 2).contiguous()


def make_denoiser(net: nn.Module, net_config: SeqNetConfig) -> BitDenoiser | MaskedDenoiser:
    """The denoiser around a sequence network."""
    if net_config.model == "bits":
        return BitDenoiser(
            net, scale=net_config.bit_scale, self_condition=net_config.self_condition, channel_dim=-1
        )
    return MaskedDenoiser(net, num_values=net_config.vocab_size, scale=net_config.bit_scale)


def optim_config(run: SeqRunConfig) -> OptimConfig:
    """The run's optimiser settings for the shared training stack (:func:`~bitcompose.training.optim.adamw_recipe`)."""
    return adamw_recipe(run)


def run_is_complete(run_dir: str | Path, run: SeqRunConfig | None = None) -> bool:
    """Whether ``run_dir`` holds a finished run (of configuration ``run``, if given)."""
    return stored_run_complete(run_dir, SeqRunConfig, run, files=(TOKENIZER_FILE,))


class SeqTask:
    """One sequence training run's steps: a random batch of training sequences, encoded, and its loss.

    Args:
        run: the configuration.
        net: the network.
        net_config: its sizes.
        tokenizer: the run's tokeniser.
        sequences: the training sequences.
    """

    def __init__(
        self,
        run: SeqRunConfig,
        net: nn.Module,
        net_config: SeqNetConfig,
        tokenizer: SeqTokenizer,
        sequences: list[str],
    ) -> None:
        self.run, self.module, self.net_config = run, net, net_config
        self.tokenizer, self.sequences = tokenizer, sequences
        self.batch_size = run.batch_size
        self.generator = torch.Generator().manual_seed(run.seed)
        self.denoiser = make_denoiser(net, net_config)
        self.property_labels = LabelMemo()

    def labels(self, batch: list[str]) -> Tensor:
        """``long [B]``: each molecule's label, the bin of one of its properties drawn at random (−1, the null
        label, for ``cond_drop_prob`` of them); the properties of a molecule are computed once per run."""
        table = self.property_labels(batch)  # [B, P]
        gen, n = self.generator, len(batch)
        pick = table[torch.arange(n), torch.randint(table.shape[1], (n,), generator=gen)]
        return torch.where(torch.rand(n, generator=gen) < self.run.cond_drop_prob, -1, pick)

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """The loss of one random batch."""
        run, gen = self.run, self.generator
        idx = torch.randint(len(self.sequences), (run.batch_size,), generator=gen).tolist()
        batch = [self.sequences[i] for i in idx]
        ids = self.tokenizer.encode(batch, self.net_config.max_len)
        x0 = encode_codes(self.net_config, ids)
        cond = self.labels(batch) if run.condition == "properties" else None
        if isinstance(self.denoiser, MaskedDenoiser):
            t = torch.rand(run.batch_size, generator=gen)
            uniforms = torch.rand((run.batch_size, 1, self.net_config.max_len), generator=gen)
            return masked_loss(self.denoiser, x0, t=t, uniforms=uniforms)
        with_ce = run.ce_weight > 0
        out = diffusion_loss(
            self.denoiser,
            x0,
            cond=cond,
            generator=gen,
            self_cond_prob=run.self_cond_prob,
            with_logits=with_ce,
        )
        if not with_ce:
            return out.loss
        assert out.logits is not None  # [B, L, V] of the main (gradient) pass
        ce = F.cross_entropy(out.logits.flatten(0, 1).float(), ids.flatten(), label_smoothing=0.1)
        return out.loss + run.ce_weight * ce

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])


def _training_split(run: SeqRunConfig, data: SequenceData) -> list[str]:
    return data.train[: run.num_train] if run.num_train else data.train


def _tokenizer_and_length(run: SeqRunConfig, run_dir: Path, train: list[str]) -> tuple[SeqTokenizer, int]:
    """The run's tokeniser (built once, then read from the run folder) and its ``L``."""
    tok_path = run_dir / TOKENIZER_FILE
    tokenizer = (
        SeqTokenizer.load(tok_path)
        if tok_path.is_file()
        else build_tokenizer(train, run.tokenizer, vocab_size=run.vocab_size)
    )
    longest = max(len(tokenizer.split(t)) for t in train)  # every token is known: the vocabulary is theirs
    length = run.max_len or longest + 1
    if longest > length:
        raise ValueError(
            f"the longest training sequence has {longest} tokens, more than max_len={run.max_len}; "
            "raise max_len (0 = fit the data)"
        )
    if not tok_path.is_file():
        tokenizer.save(tok_path)
    return tokenizer, length


def train_seq(run: SeqRunConfig, run_dir: str | Path, *, progress: bool = True) -> Path:
    """Train (or resume, or skip if finished) a sequence model in ``run_dir``.

    Args:
        run: the configuration.
        run_dir: the run folder (created); an existing run of another configuration there is an error.
        progress: show a tqdm bar.

    Returns:
        ``run_dir`` as a Path (layout in the module docstring).
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    resuming = (ckpt_dir / "config.json").is_file()
    if resuming:
        stored = json.loads((ckpt_dir / "config.json").read_text())
        if not run.same_run(stored.get("run", {})):
            raise ValueError(f"{run_dir} holds a run of another configuration; choose another --out folder")
        if run_is_complete(run_dir, run):
            return run_dir
    data = load_sequences(run.data, seed=run.seed)
    train = _training_split(run, data)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer, length = _tokenizer_and_length(run, run_dir, train)
    net_config = run.net_config(tokenizer.vocab_size, length)
    info = {
        "data": run.data,
        "name": data.name,
        "fingerprint": data.fingerprint,
        "max_len": length,
        "num_train": len(train),
        "num_test": len(data.test),
    }
    (run_dir / DATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
    # nn.Module constructors draw from the global RNG: fork it, so the weights depend only on run.seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        net = build_seq_net(net_config)
    config: dict[str, Any] = {"kind": "seq", "run": run.to_dict(), "net": net_config.to_dict()}
    task = SeqTask(run, net, net_config, tokenizer, train)
    trainer = Trainer(
        task,
        optim_config(run),
        steps=run.steps,
        folder=RunFolder(run_dir, config, resume=resuming, checkpoint_every=run.save_every),
        log_every=run.log_every,
        precision=run.precision,
        progress=progress,
        desc=f"train seq {run.model}",
    )
    trainer.train()
    write_train_log(run_dir, config, trainer, net)
    return run_dir


def train_or_load(run: SeqRunConfig, *, cache: str | Path | None = None, progress: bool = True) -> Path:
    """The run folder of ``run`` in the harness's cache (kind ``seq``), training it there first if needed."""
    fingerprint = data_fingerprint(run.data, seed=run.seed)

    def train(folder: Path) -> dict[str, Any]:
        log = json.loads((train_seq(run, folder, progress=progress) / LOG_FILE).read_text())
        return {"steps": run.steps, "train_seconds": log.get("train_seconds")}

    name = f"{run.preset}-{run.model}"
    return cached(KIND, name, run.cache_spec(fingerprint), train, cache=cache).path
