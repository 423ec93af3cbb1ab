"""Training of the captioning models on the shared training stack, with a configuration-keyed cache.

Diffusion: the Bit Diffusion objective on the caption's analog bits (x0 prediction, per-element MSE,
self-conditioning on half of the examples; :func:`bitcompose.diffusion_loss`), image tokens computed once per step
and passed as ``cond``, optionally plus a label-smoothed cross-entropy on the softmax head's logits. AR:
cross-entropy under teacher forcing. Both: AdamW, linear warm-up (then constant or cosine decay to 10 %),
gradient clipping at 1, EMA of the weights with warm-up (used for sampling), every random draw from one explicit
``torch.Generator`` seeded by ``run.seed`` and checkpointed. Each step takes a random batch of training images
and one random reference caption of each.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitcompose.captioning.config import CaptionRunConfig, preset
from bitcompose.captioning.data import CaptionSplit, load_splits, tokenize_references
from bitcompose.captioning.model import TOKENIZER_FILE, build_net
from bitcompose.captioning.tokenizer import load_tokenizer, train_tokenizer
from bitcompose.diffusion import BitDenoiser, diffusion_loss
from bitcompose.experiments.cache import cached
from bitcompose.nets.ar_decoder import CaptionARNet
from bitcompose.nets.caption import CaptionDiffusionNet, CaptionNetConfig
from bitcompose.training.checkpoint import Checkpoint, load_checkpoint, load_state_strict
from bitcompose.training.loop import CHECKPOINT_DIR, RunFolder, Trainer
from bitcompose.training.optim import OptimConfig, adamw_recipe
from bitcompose.training.run_config import stored_run_complete
from bitcompose.training.train_log import LOG_FILE, write_train_log

#: The cache's sub-folder of the captioning runs.
KIND = "captions"

__all__ = ["CaptionTask", "train_captioner", "train_or_load", "run_is_complete", "optim_config"]


def optim_config(run: CaptionRunConfig) -> OptimConfig:
    """The run's optimiser settings for the shared training stack (:func:`~bitcompose.training.optim.adamw_recipe`)."""
    return adamw_recipe(run)


def run_is_complete(run_dir: str | Path, run: CaptionRunConfig | None = None) -> bool:
    """Whether ``run_dir`` holds a finished run (of configuration ``run``, if given)."""
    return stored_run_complete(run_dir, CaptionRunConfig, run, files=(TOKENIZER_FILE,))


class CaptionTask:
    """One captioning training run's steps: a random batch of images with one random reference caption each.

    Args:
        run: the configuration.
        net: the diffusion or AR network.
        net_config: its sizes.
        train: the training split.
        refs: tokenised references ``[N, R, L]``.
        ignore_index: the AR cross-entropy's ignored token id.
    """

    def __init__(
        self,
        run: CaptionRunConfig,
        net: nn.Module,
        net_config: CaptionNetConfig,
        train: CaptionSplit,
        refs: Tensor,
        ignore_index: int,
    ) -> None:
        self.run, self.module, self.net_config = run, net, net_config
        self.images, self.refs, self.ignore_index = train.images, refs, ignore_index
        self.batch_size = run.batch_size
        self.generator = torch.Generator().manual_seed(run.seed)
        self.denoiser = None
        if isinstance(net, CaptionDiffusionNet):
            self.denoiser = BitDenoiser(
                net, scale=net_config.bit_scale, self_condition=net_config.self_condition, channel_dim=-1
            )

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """The loss of one random batch."""
        run, gen = self.run, self.generator
        n_img, n_ref, _ = self.refs.shape
        idx = torch.randint(n_img, (run.batch_size,), generator=gen)
        which = torch.randint(n_ref, (run.batch_size,), generator=gen)
        tokens = self.refs[idx, which]
        images = self.images[idx]
        if self.denoiser is None:
            assert isinstance(self.module, CaptionARNet)
            return self.module.loss(images, tokens, ignore_index=self.ignore_index)
        assert isinstance(self.module, CaptionDiffusionNet)
        memory = self.module.encode(images)
        x0 = self.net_config.codec.encode_sequence(tokens)
        with_ce = run.ce_weight > 0
        out = diffusion_loss(
            self.denoiser,
            x0,
            cond=memory,
            generator=gen,
            self_cond_prob=run.self_cond_prob,
            with_logits=with_ce,
        )
        if not with_ce:
            return out.loss
        assert out.logits is not None  # [B, L, V] of the main (gradient) pass
        ce = F.cross_entropy(out.logits.flatten(0, 1).float(), tokens.flatten(), label_smoothing=0.1)
        return out.loss + run.ce_weight * ce

    def state_dict(self) -> dict[str, Any]:
        """The generator's state."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator's state."""
        self.generator.set_state(state["generator"])


def _parent(run: CaptionRunConfig, run_dir: Path, cache: str | Path | None, progress: bool) -> Checkpoint:
    """The finished parent run of ``run.init_from`` (trained or loaded from the cache); copies its tokenizer."""
    parent_run = preset(run.init_from, model=run.model, seed=run.seed)
    parent_dir = train_or_load(parent_run, cache=cache, progress=progress)
    tok_path = run_dir / TOKENIZER_FILE
    if not tok_path.is_file():
        shutil.copyfile(parent_dir / TOKENIZER_FILE, tok_path)
    return load_checkpoint(parent_dir / CHECKPOINT_DIR)


def _parent_info(parent: Checkpoint) -> dict[str, Any]:
    log_path = parent.path.parent / LOG_FILE
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    return {
        "init_from": str(parent.path),
        "parent_steps": log.get("steps"),
        "parent_train_seconds": log.get("train_seconds"),
        "parent_train_cpu_seconds": log.get("train_cpu_seconds"),
    }


def train_captioner(
    run: CaptionRunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    cache: str | Path | None = None,
) -> Path:
    """Train (or resume, or skip if finished) a captioning run in ``run_dir``.

    Args:
        run: the configuration.
        run_dir: the run folder (created); an existing run of another configuration there is an error.
        progress: show a tqdm bar.
        cache: the cache root where the parent run of ``run.init_from`` is kept (default ``$BITCOMPOSE_CACHE``,
            else ``~/.cache/bitcompose``).

    Returns:
        ``run_dir`` as a Path, holding ``tokenizer.model``, ``checkpoint/``, ``metrics.jsonl`` and
        ``train_log.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    resuming = (ckpt_dir / "config.json").is_file()
    stored: dict[str, Any] = {}
    if resuming:
        stored = json.loads((ckpt_dir / "config.json").read_text())
        if not run.same_run(stored.get("run", {})):
            raise ValueError(f"{run_dir} holds a run of another configuration; choose another --out folder")
        if run_is_complete(run_dir, run):
            return run_dir

    train = load_splits(run)["train"]
    parent = _parent(run, run_dir, cache, progress) if run.init_from and not resuming else None
    tok_path = run_dir / TOKENIZER_FILE
    if tok_path.is_file():
        tokenizer = load_tokenizer(tok_path)
    else:
        tokenizer = train_tokenizer(train.captions, run.vocab_size, tok_path, model_type=run.tokenizer)
    net_config = run.net_config(tokenizer.vocab_size)
    refs = tokenize_references(train.captions, tokenizer, run.max_len)  # [N, R, L]

    # Initialisation draws from the global RNG inside nn.Module constructors; fork it so that the caller's
    # global state is untouched and the weights depend only on run.seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        net = build_net(run, net_config)
    config: dict[str, Any] = {"kind": "captioning", "run": run.to_dict(), "net": net_config.to_dict()}
    if parent is not None:
        if parent.config.get("net") != net_config.to_dict():
            raise ValueError(f"init_from={run.init_from!r}: the parent run's network differs from this run's")
        load_state_strict(net, parent.model_state, what=f"model weights of {parent.path}")
        config["parent"] = _parent_info(parent)
    elif "parent" in stored:
        config["parent"] = stored["parent"]
    pad_id, eos_id = int(tokenizer.pad_id), int(tokenizer.eos_id)
    task = CaptionTask(run, net, net_config, train, refs, ignore_index=pad_id if pad_id != eos_id else -100)
    trainer = Trainer(
        task,
        optim_config(run),
        steps=run.steps,
        folder=RunFolder(run_dir, config, resume=resuming, checkpoint_every=run.save_every),
        log_every=run.log_every,
        progress=progress,
        desc=f"train {run.model}",
    )
    if parent is not None and parent.ema_state is not None and trainer.ema is not None:
        trainer.ema.load_state_dict(parent.ema_state)
    trainer.train()
    write_train_log(run_dir, config, trainer, net)
    return run_dir


def train_or_load(run: CaptionRunConfig, *, cache: str | Path | None = None, progress: bool = True) -> Path:
    """The run folder of ``run`` in the harness's cache (kind ``captions``), training it there first if needed."""

    def train(folder: Path) -> dict[str, Any]:
        log = json.loads(
            (train_captioner(run, folder, progress=progress, cache=cache) / LOG_FILE).read_text()
        )
        return {"steps": run.steps, "train_seconds": log.get("train_seconds")}

    return cached(KIND, f"{run.preset}-{run.model}", run.cache_spec(), train, cache=cache).path
