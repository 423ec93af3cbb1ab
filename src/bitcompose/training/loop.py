"""The one training loop: every model of the project (image Bit Diffusion, both captioners, the 2-D models, the
evaluation classifiers) trains through :class:`Trainer`.

A run is a :class:`TrainTask` (the module to optimise and the loss of each step, with its own random streams) plus
an :class:`~bitcompose.training.optim.OptimConfig`. The trainer owns everything else: the optimiser and its
learning-rate schedule, gradient clipping, the EMA of the weights, bf16 autocast, ``DistributedDataParallel`` and
``torch.compile``, ``metrics.jsonl``, the progress bar, preview callbacks, atomic checkpoints and exact resume.

Step ``s`` (0-based): set the learning rate → ``task.loss(net, s)`` (under autocast) → backward → clip (or measure)
the gradient norm → optimiser step → EMA update. A task must draw all randomness of step ``s`` from streams
whose state it returns in :meth:`TrainTask.state_dict` (or derive it from ``s``), so that a resumed run computes
exactly what an uninterrupted one does.

Run folder (when ``run_dir`` is given): ``metrics.jsonl`` (one JSON line per ``log_every`` steps: step, loss,
grad_norm, lr, examples_per_s, elapsed_s) and ``checkpoint/`` (see :mod:`bitcompose.training.checkpoint`),
whose ``config.json`` holds the caller's config plus the ``step`` it was saved at.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from bitcompose.core.precision import autocast, resolve_precision
from bitcompose.training.checkpoint import (
    load_checkpoint,
    load_state_strict,
    remove_stale_temporaries,
    save_checkpoint,
)
from bitcompose.training.dist import DistInfo, all_reduce_mean
from bitcompose.training.ema import EMA
from bitcompose.training.optim import OptimConfig, build_optimizer, ema_decay, learning_rate

__all__ = [
    "Preview",
    "RunFolder",
    "TrainTask",
    "Trainer",
    "TrainResult",
    "NonFiniteLossError",
    "METRICS_FILE",
    "CHECKPOINT_DIR",
]

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class RunLock:
    """An exclusive lock on a run folder (``.lock``), so that two trainers never write into one folder; the
    operating system releases it when the process ends. Also clears the temporaries of interrupted saves."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / ".lock"
        self.file = open(self.path, "a+")  # noqa: SIM115 - held for the trainer's lifetime
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ValueError(f"{run_dir} is in use by {holder} (its lock file is {self.path})") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        remove_stale_temporaries(run_dir)

    def release(self) -> None:
        """Give the folder free (also happens when the process ends)."""
        if not self.file.closed:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_UN)
            self.file.close()


class _StopRequest:
    """While training: the first Ctrl-C asks to stop after the current step (a second one stops at once)."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def __del__(self) -> None:
        self.restore()


class TrainTask(Protocol):
    """What a training run provides to :class:`Trainer`.

    Attributes:
        module: the network that is optimised, averaged (EMA) and saved.
        batch_size: examples per step (for the throughput in the logs).
    """

    module: nn.Module
    batch_size: int

    def loss(self, net: nn.Module, step: int) -> Tensor:
        """The scalar loss of optimiser step ``step``; ``net`` is ``module``, possibly wrapped (DDP, compile)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The task's resumable state (generator states, ...): tensors, numbers, strings, lists, dicts."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        ...


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns.

    Attributes:
        step: steps done so far. loss: mean loss of the last logging window (nan if none).
        train_seconds: wall time of this call. run_dir: the run folder (or None). checkpoint: the checkpoint
        folder (or None).
    """

    step: int
    loss: float
    train_seconds: float
    run_dir: Path | None
    checkpoint: Path | None


@dataclass(frozen=True)
class RunFolder:
    """Where a run keeps its ``metrics.jsonl`` and checkpoints, and how it resumes.

    Attributes:
        path: the run folder.
        config: the JSON config stored in every checkpoint's ``config.json`` (with the step added).
        resume: continue from ``path/checkpoint`` when it exists; without it an existing checkpoint is an error.
        checkpoint_every: steps between checkpoints (0: only at the end).
        check_resume: called with a checkpoint's stored config before resuming; raises ``ValueError`` when the
            checkpoint belongs to another run.
    """

    path: str | Path
    config: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    checkpoint_every: int = 0
    check_resume: Callable[[dict[str, Any]], None] | None = None


@dataclass(frozen=True)
class Preview:
    """``fn(module, step)`` called with the EMA (or online) weights every ``every`` steps and once at the end,
    after the final checkpoint (``every`` 0: never)."""

    fn: Callable[[nn.Module, int], Any]
    every: int = 0


class Trainer:
    """Trains a :class:`TrainTask` (see the module docstring).

    Args:
        task: the model and its loss.
        optim: optimiser, schedule, clipping and EMA settings.
        steps: total optimiser steps of the run.
        folder: the run folder, its checkpoints and how to resume (``None``: train in memory, no logs, no
            checkpoints).
        log_every: steps between lines of ``metrics.jsonl``.
        preview: a callback on the EMA (or online) weights during training (main process only).
        precision: ``auto``, ``fp32`` or ``bf16`` (autocast of the loss; ``auto``: bf16 where the hardware runs it
            fast, see :mod:`bitcompose.core.precision`).
        compile: wrap the network with ``torch.compile``.
        dist_info: distributed placement (default: one process on the module's device).
        progress: show a tqdm bar (main process only).
        desc: the bar's label.
    """

    def __init__(
        self,
        task: TrainTask,
        optim: OptimConfig,
        *,
        steps: int,
        folder: RunFolder | None = None,
        log_every: int = 50,
        preview: Preview | None = None,
        precision: str = "fp32",
        compile: bool = False,
        dist_info: DistInfo | None = None,
        progress: bool = True,
        desc: str = "train",
    ) -> None:
        checkpoint_every = 0 if folder is None else folder.checkpoint_every
        preview_every = 0 if preview is None else preview.every
        if steps < 0 or log_every < 1 or checkpoint_every < 0 or preview_every < 0:
            raise ValueError("steps, checkpoint_every and preview_every must be >= 0 and log_every >= 1")
        self.task, self.optim, self.steps = task, optim, steps
        self.run_dir = None if folder is None else Path(folder.path)
        self.config = {} if folder is None else dict(folder.config)
        self.log_every, self.checkpoint_every = log_every, checkpoint_every
        self.preview_fn = None if preview is None else preview.fn
        self.preview_every = preview_every
        resume = folder is not None and folder.resume
        check_resume = None if folder is None else folder.check_resume
        module = task.module
        device = next(module.parameters()).device
        self.info = dist_info if dist_info is not None else DistInfo(device=device)
        self.device = self.info.device
        self.precision = resolve_precision(precision, self.device)
        self.progress = progress and self.info.is_main
        self.desc = desc
        self.ema = None if optim.ema_decay is None else EMA(module, optim.ema_decay)
        self.optimizer = build_optimizer(optim, module.parameters())
        self.step = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._lock = None if self.run_dir is None or not self.info.is_main else RunLock(self.run_dir)
        ckpt = self.checkpoint_dir
        if ckpt is not None and ckpt.exists():
            if not resume:
                raise ValueError(
                    f"{self.run_dir} already holds a checkpoint; resume it (--resume) or choose another folder"
                )
            self._restore(ckpt, check_resume)
        net: nn.Module = module
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)
        if compile:
            net = torch.compile(net)  # type: ignore[assignment]
        self.net = net

    def release(self) -> None:
        """Give the run folder free for another trainer (after :meth:`train`, and when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _acquire(self) -> None:
        if self._lock is None and self.run_dir is not None and self.info.is_main:
            self._lock = RunLock(self.run_dir)

    # ----------------------------------------------------------------------------------------------- state

    @property
    def checkpoint_dir(self) -> Path | None:
        """``run_dir/checkpoint`` (None for an in-memory run)."""
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_DIR

    @property
    def sampling_module(self) -> nn.Module:
        """The weights used for sampling: the EMA shadow, or the online module without EMA."""
        return self.task.module if self.ema is None else self.ema.module

    def _restore(self, folder: Path, check: Callable[[dict[str, Any]], None] | None) -> None:
        ckpt = load_checkpoint(folder)
        if check is not None:
            check(ckpt.config)
        load_state_strict(self.task.module, ckpt.model_state, what=f"model weights of {folder}")
        if self.ema is not None:
            if ckpt.ema_state is None:
                raise ValueError(f"cannot resume {folder}: ema.safetensors is missing")
            self.ema.load_state_dict(ckpt.ema_state)
            self.ema.to(self.device)
        ts = ckpt.training_state
        try:
            self.optimizer.load_state_dict(ts["optimizer"])
            self.task.load_state_dict(ts["task"])
            self.step = int(ts["step"])
            self.seconds = float(ts.get("seconds", 0.0))
            self.cpu_seconds = float(ts.get("cpu_seconds", 0.0))
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(f"cannot resume {folder}: bad training_state.pt ({exc})") from exc
        self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop metric lines logged after the checkpoint (they will be logged again) and a torn last line."""
        if self.run_dir is None or not self.info.is_main:
            return
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill during the write
            if (
                isinstance(record, dict)
                and isinstance(record.get("step"), int)
                and record["step"] <= self.step
            ):
                kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    def save(self) -> Path | None:
        """Write ``run_dir/checkpoint`` (main process; others return the path). ``None`` for in-memory runs."""
        folder = self.checkpoint_dir
        if folder is None or not self.info.is_main:
            return folder
        remove_stale_temporaries(folder.parent)
        save_checkpoint(
            folder,
            config={**self.config, "step": self.step},
            model_state=self.task.module.state_dict(),
            ema_state=None if self.ema is None else self.ema.state_dict(),
            training_state={
                "step": self.step,
                "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds,
                "optimizer": self.optimizer.state_dict(),
                "task": self.task.state_dict(),
                "world_size": self.info.world_size,
            },
        )
        return folder

    # ----------------------------------------------------------------------------------------------- steps

    def train_step(self) -> tuple[Tensor, Tensor]:
        """One optimiser step; returns ``(loss, grad_norm)`` as device tensors (no host sync)."""
        lr = learning_rate(self.optim, self.step, self.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.task.module.train()
        with autocast(self.precision, self.device):
            loss = self.task.loss(self.net, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.task.module.parameters() if p.grad is not None]
        if self.optim.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.optim.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params]))  # type: ignore[union-attr]
        self.optimizer.step()
        if self.ema is not None:
            self.ema.decay = ema_decay(self.optim, self.step)
            self.ema.update(self.task.module)
        self.step += 1
        return loss.detach().float(), grad_norm.detach().float()

    def _log(self, record: dict[str, Any]) -> None:
        if self.run_dir is None or not self.info.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _preview(self) -> None:
        if self.preview_fn is not None and self.info.is_main:
            self.preview_fn(self.sampling_module, self.step)

    def train(self, until: int | None = None) -> TrainResult:
        """Train up to step ``until`` (default ``steps``), with logging, previews and checkpoints; the run folder
        is locked while it runs."""
        self._acquire()
        try:
            return self._train(until)
        finally:
            self.release()

    def _train(self, until: int | None) -> TrainResult:
        end = self.steps if until is None else min(until, self.steps)
        start_time = time.perf_counter()
        window_loss: Tensor | None = None
        window_norm: Tensor | None = None
        window_steps, window_start = 0, time.perf_counter()
        last_loss = math.nan
        bar = tqdm(
            total=end, initial=self.step, disable=not self.progress, desc=self.desc, dynamic_ncols=True
        )
        stop = _StopRequest()
        try:
            while self.step < end:
                if stop.requested:
                    raise self._interrupted(bar)
                t0, c0 = time.perf_counter(), time.process_time()
                loss, norm = self.train_step()
                self.seconds += time.perf_counter() - t0
                self.cpu_seconds += time.process_time() - c0
                window_loss = loss if window_loss is None else window_loss + loss
                window_norm = norm if window_norm is None else window_norm + norm
                window_steps += 1
                bar.update(1)
                if self.step % self.log_every == 0 or self.step == end:
                    assert window_loss is not None and window_norm is not None
                    mean_loss = float(all_reduce_mean(window_loss / window_steps, self.info))
                    self._check_finite(mean_loss)
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "step": self.step,
                        "loss": mean_loss,
                        "grad_norm": float(window_norm / window_steps),
                        "lr": learning_rate(self.optim, self.step - 1, self.steps),
                        "examples_per_s": window_steps * self.task.batch_size / max(elapsed, 1e-9),
                        "elapsed_s": round(self.seconds, 3),
                    }
                    last_loss = mean_loss
                    self._log(record)
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                    window_loss, window_norm, window_steps, window_start = None, None, 0, time.perf_counter()
                if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < end:
                    self._check_finite_window(window_loss, window_steps)
                    self.save()
                if self.preview_every and self.step % self.preview_every == 0 and self.step < end:
                    self._preview()
        finally:
            stop.restore()
        bar.close()
        train_seconds = time.perf_counter() - start_time
        self._check_finite_window(window_loss, window_steps)
        folder = self.save()
        if self.preview_every and self.step == self.steps:
            self._preview()
        if self.info.distributed:
            torch.distributed.barrier()
        return TrainResult(self.step, last_loss, train_seconds, self.run_dir, folder)

    def _interrupted(self, bar: Any) -> KeyboardInterrupt:
        """Ctrl-C between two steps: save a checkpoint and say where it stands."""
        bar.close()
        folder = self.save()
        where = (
            ""
            if folder is None
            else f"; the checkpoint in {folder} holds step {self.step} (resume with --resume)"
        )
        return KeyboardInterrupt(f"interrupted at step {self.step}{where}")

    def _check_finite(self, loss: float) -> None:
        if not math.isfinite(loss):
            kept = (
                ""
                if self.checkpoint_dir is None
                else f"; the last good checkpoint in {self.checkpoint_dir} is kept"
            )
            raise NonFiniteLossError(
                f"training diverged: the loss is {loss} at step {self.step} (try a lower optim.lr){kept}"
            )

    def _check_finite_window(self, window_loss: Tensor | None, window_steps: int) -> None:
        if window_loss is not None and window_steps > 0:
            self._check_finite(float(window_loss / window_steps))
