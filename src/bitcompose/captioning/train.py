"""Training of the captioning models, with resumable checkpoints and a configuration-keyed cache.

Diffusion: the Bit Diffusion objective on the caption's analog bits (x0 prediction, per-element MSE,
self-conditioning on half of the examples; :func:`bitcompose.diffusion_loss`), image tokens computed once per step
and passed as ``cond``. AR: cross-entropy under teacher forcing. Both: AdamW, linear warm-up (then constant or
cosine decay to 10 %), gradient clipping at 1, EMA of the weights (used for sampling), every random draw from one
explicit ``torch.Generator`` seeded by ``run.seed``. Each step takes a random batch of training images and one
random reference caption of each.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bitcompose.captioning.config import CaptionRunConfig, default_cache_dir, preset
from bitcompose.captioning.data import load_splits, tokenize_references
from bitcompose.captioning.model import TOKENIZER_FILE, build_net
from bitcompose.captioning.tokenizer import load_tokenizer, train_tokenizer
from bitcompose.diffusion import BitDenoiser, diffusion_loss
from bitcompose.nets.ar_decoder import CaptionARNet
from bitcompose.nets.caption import CaptionDiffusionNet
from bitcompose.training.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from bitcompose.training.ema import EMA

__all__ = ["train_captioner", "train_or_load", "run_is_complete", "learning_rate"]

CHECKPOINT_DIR = "checkpoint"
LOG_FILE = "train_log.json"


def learning_rate(run: CaptionRunConfig, step: int) -> float:
    """Learning rate at optimiser step ``step`` (0-based): linear warm-up, then constant or cosine to 10 %."""
    if run.warmup > 0 and step < run.warmup:
        return run.lr * (step + 1) / run.warmup
    if run.lr_schedule == "constant":
        return run.lr
    progress = (step - run.warmup) / max(1, run.steps - run.warmup)
    return run.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def run_is_complete(run_dir: str | Path, run: CaptionRunConfig | None = None) -> bool:
    """Whether ``run_dir`` holds a finished run (of configuration ``run``, if given)."""
    ckpt = Path(run_dir) / CHECKPOINT_DIR
    if not (ckpt / "config.json").is_file() or not (Path(run_dir) / TOKENIZER_FILE).is_file():
        return False
    try:
        config = json.loads((ckpt / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if run is not None and not run.same_run(config.get("run", {})):
        return False
    return bool(config.get("complete", False))


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def train_captioner(
    run: CaptionRunConfig,
    run_dir: str | Path,
    *,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> Path:
    """Train (or resume, or skip if finished) a captioning run in ``run_dir``.

    Args:
        run: the configuration.
        run_dir: the run folder (created); an existing run of another configuration there is an error.
        progress: show a tqdm bar.
        cache_dir: where the parent run of ``run.init_from`` is cached (default :func:`default_cache_dir`).

    Returns:
        ``run_dir`` as a Path, holding ``tokenizer.model``, ``checkpoint/`` and ``train_log.json``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    resume = None
    if (ckpt_dir / "config.json").is_file():
        resume = load_checkpoint(ckpt_dir)
        if not run.same_run(resume.config.get("run", {})):
            raise ValueError(f"{run_dir} holds a run of another configuration; choose another --out folder")
        if resume.config.get("complete"):
            return run_dir

    splits = load_splits(run)
    train = splits["train"]
    tok_path = run_dir / TOKENIZER_FILE
    parent = None
    if run.init_from and resume is None:
        parent_run = preset(run.init_from, model=run.model, seed=run.seed)
        parent_dir = train_or_load(parent_run, cache_dir=cache_dir, progress=progress)
        parent = load_checkpoint(parent_dir / CHECKPOINT_DIR)
        if not tok_path.is_file():
            shutil.copyfile(parent_dir / TOKENIZER_FILE, tok_path)
        parent_log = (
            json.loads((parent_dir / LOG_FILE).read_text()) if (parent_dir / LOG_FILE).is_file() else {}
        )
    if tok_path.is_file():
        tokenizer = load_tokenizer(tok_path)
    else:
        tokenizer = train_tokenizer(train.captions, run.vocab_size, tok_path, model_type=run.tokenizer)
    net_config = run.net_config(tokenizer.vocab_size)
    refs = tokenize_references(train.captions, tokenizer, run.max_len)  # [N, R, L]
    n_img, n_ref, _ = refs.shape

    # Initialisation draws from the global RNG inside nn.Module constructors; fork it so that the caller's
    # global state is untouched and the weights depend only on run.seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        net = build_net(run, net_config)
    ema = EMA(net, run.ema_decay)
    opt = torch.optim.AdamW(net.parameters(), lr=run.lr, betas=(0.9, 0.99), weight_decay=run.weight_decay)
    gen = torch.Generator().manual_seed(run.seed)
    den = None
    if isinstance(net, CaptionDiffusionNet):
        den = BitDenoiser(
            net, scale=net_config.bit_scale, self_condition=net_config.self_condition, channel_dim=-1
        )
    pad_id, eos_id = int(tokenizer.pad_id), int(tokenizer.eos_id)
    ignore = pad_id if pad_id != eos_id else -100

    step, seconds, cpu_seconds, losses = 0, 0.0, 0.0, []
    if parent is not None:
        if parent.config.get("net") != net_config.to_dict():
            raise ValueError(f"init_from={run.init_from!r}: the parent run's network differs from this run's")
        load_state_strict(net, parent.model_state, what=f"model weights of {parent.path}")
        if parent.ema_state is not None:
            ema.load_state_dict(parent.ema_state)
    if resume is not None:
        load_state_strict(net, resume.model_state, what=f"model weights of {ckpt_dir}")
        if resume.ema_state is not None:
            ema.load_state_dict(resume.ema_state)
        state = resume.training_state
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, seconds = int(state["step"]), float(state["seconds"])
        cpu_seconds = float(state.get("cpu_seconds", 0.0))
        losses = [list(x) for x in state.get("losses", [])]

    config = {"kind": "captioning", "run": run.to_dict(), "net": net_config.to_dict(), "complete": False}
    parent_info: dict[str, Any] = {}
    if run.init_from:
        if parent is not None:
            parent_info = {
                "init_from": str(parent.path),
                "parent_steps": parent_log.get("steps"),
                "parent_train_seconds": parent_log.get("train_seconds"),
                "parent_train_cpu_seconds": parent_log.get("train_cpu_seconds"),
            }
            config["parent"] = parent_info
        elif resume is not None:
            parent_info = dict(resume.config.get("parent", {}))
            config["parent"] = parent_info

    def save(complete: bool) -> None:
        config["complete"] = complete
        save_checkpoint(
            ckpt_dir,
            config=config,
            model_state=net.state_dict(),
            ema_state=ema.state_dict(),
            training_state={
                "step": step,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "losses": losses,
            },
        )

    net.train()
    bar = tqdm(total=run.steps, initial=step, disable=not progress, desc=f"train {run.model}")
    running, count = 0.0, 0
    while step < run.steps:
        t0, c0 = time.perf_counter(), time.process_time()
        for group in opt.param_groups:
            group["lr"] = learning_rate(run, step)
        idx = torch.randint(n_img, (run.batch_size,), generator=gen)
        which = torch.randint(n_ref, (run.batch_size,), generator=gen)
        tokens = refs[idx, which]
        images = train.images[idx]
        if den is not None:
            assert isinstance(net, CaptionDiffusionNet)
            memory = net.encode(images)
            x0 = net_config.codec.encode_sequence(tokens)
            loss = diffusion_loss(den, x0, cond=memory, generator=gen, self_cond_prob=run.self_cond_prob).loss
            if run.ce_weight > 0:
                # the last call inside diffusion_loss is the main (gradient) pass; its logits are [B, L, V]
                logits, net.last_logits = net.last_logits, None
                assert logits is not None
                ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten(), label_smoothing=0.1)
                loss = loss + run.ce_weight * ce
        else:
            assert isinstance(net, CaptionARNet)
            loss = net.loss(images, tokens, ignore_index=ignore)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        ema.decay = min(run.ema_decay, (1.0 + step) / (10.0 + step))  # warm EMA start
        ema.update(net)
        step += 1
        seconds += time.perf_counter() - t0
        cpu_seconds += time.process_time() - c0
        running += loss.item()
        count += 1
        bar.update(1)
        if step % run.log_every == 0 or step == run.steps:
            losses.append([step, running / count, round(seconds, 1)])
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count = 0.0, 0
        if step % run.save_every == 0 and step < run.steps:
            save(False)
    bar.close()
    save(True)
    log = {
        "run": run.to_dict(),
        "net": net_config.to_dict(),
        "steps": step,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        **parent_info,
        "losses": losses,
        "machine": _machine(),
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    (run_dir / LOG_FILE).write_text(json.dumps(log, indent=2) + "\n")
    return run_dir


def train_or_load(
    run: CaptionRunConfig, *, cache_dir: str | Path | None = None, progress: bool = True
) -> Path:
    """The run folder of ``run`` in the cache (``cache_dir`` or :func:`default_cache_dir`), training it if needed."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    run_dir = base / run.cache_key()
    if run_is_complete(run_dir, run):
        return run_dir
    return train_captioner(run, run_dir, progress=progress, cache_dir=cache_dir)
