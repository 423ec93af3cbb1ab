"""Atomic, portable checkpoints.

A checkpoint is a folder::

    checkpoint/
        config.json          the run configuration (plain JSON)
        model.safetensors    the online weights
        ema.safetensors      the EMA weights (absent when the run keeps no EMA)
        training_state.pt    optimiser state, step, RNG generator states (loadable with weights_only=True)

:func:`save_checkpoint` writes everything into a temporary sibling folder, fsyncs the files and the folder,
then swaps it in with renames: the previous checkpoint is moved aside (``.<name>.old``), the new one renamed
into place, and only then the old one deleted. An interrupted save therefore leaves either the old or the
new checkpoint complete; if it is interrupted between the two renames, the next :func:`load_checkpoint` /
:func:`save_checkpoint` restores the old one from ``.<name>.old``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from bitcompose.core.config import CONFIG_FILE, MODEL_FILE

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "load_state_strict",
    "find_checkpoint",
    "remove_stale_temporaries",
]

EMA_FILE = "ema.safetensors"
STATE_FILE = "training_state.pt"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint folder.
        config: the run configuration (JSON dict).
        model_state: online weights by name.
        ema_state: EMA weights by name, or ``None`` when the checkpoint has none.
        training_state: optimiser state, step, generator states, ... (whatever the trainer stored).
    """

    path: Path
    config: dict[str, Any]
    model_state: dict[str, Tensor]
    ema_state: dict[str, Tensor] | None
    training_state: dict[str, Any]


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    # clone() breaks storage sharing (tied weights), which safetensors refuses to write.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(plain, str(path), metadata={"format": "pt"})


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary folders that interrupted saves left in ``folder`` (``.<name>.tmp-<pid>`` of processes
    that no longer run); returns what was removed. Call it only while holding the run folder's lock."""
    removed = []
    for tmp in folder.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not tmp.is_dir() or not pid.isdigit() or (int(pid) != os.getpid() and _alive(int(pid))):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _backup_name(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def _recover(path: Path) -> None:
    """Restore ``path`` from its backup when a save was interrupted between its two renames."""
    backup = _backup_name(path)
    if backup.is_dir() and not path.exists():
        os.replace(backup, path)


def save_checkpoint(
    path: str | Path,
    *,
    config: dict[str, Any],
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor] | None,
    training_state: dict[str, Any],
) -> None:
    """Write a checkpoint folder atomically (see the module docstring).

    Args:
        path: the checkpoint folder (created or replaced).
        config: JSON-serialisable run configuration.
        model_state: the model's ``state_dict()``.
        ema_state: the EMA weights, or ``None``.
        training_state: anything ``torch.save`` stores and ``torch.load(weights_only=True)`` reads back
            (tensors, numbers, strings, lists, dicts): optimiser state, step, generator states.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    try:
        config_text = json.dumps(config, indent=2, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"checkpoint config is not JSON-serialisable: {exc}") from exc
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / CONFIG_FILE).write_text(config_text + "\n")
        _save_tensors(model_state, tmp / MODEL_FILE)
        if ema_state is not None:
            _save_tensors(ema_state, tmp / EMA_FILE)
        torch.save(training_state, tmp / STATE_FILE)
        for file in tmp.iterdir():
            _fsync_path(file)
        _fsync_path(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = _backup_name(path)
    if backup.exists():
        shutil.rmtree(backup)
    if path.exists():
        os.replace(path, backup)
    os.replace(tmp, path)
    _fsync_path(path.parent)
    if backup.exists():
        shutil.rmtree(backup)


def _load_tensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise ValueError(f"corrupt checkpoint file {path}: {exc}") from exc


def load_checkpoint(path: str | Path, *, training_state: bool = True) -> Checkpoint:
    """Read a checkpoint folder written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint folder.
        training_state: also read ``training_state.pt`` (needed to resume, not to sample; ``False`` gives an
            empty dict, so a damaged training state never blocks sampling).

    Raises:
        FileNotFoundError: the folder or one of its required files is missing.
        ValueError: a file is corrupt (truncated safetensors, bad JSON, unreadable training state).
    """
    path = Path(path)
    _recover(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {path}")
    for name in (CONFIG_FILE, MODEL_FILE, *((STATE_FILE,) if training_state else ())):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path} is incomplete: {name} is missing")
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt checkpoint file {path / CONFIG_FILE}: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"corrupt checkpoint file {path / CONFIG_FILE}: expected a JSON object")
    model_state = _load_tensors(path / MODEL_FILE)
    ema_state = _load_tensors(path / EMA_FILE) if (path / EMA_FILE).is_file() else None
    state = _load_training_state(path / STATE_FILE) if training_state else {}
    return Checkpoint(path, config, model_state, ema_state, state)


def _load_training_state(file: Path) -> dict[str, Any]:
    try:
        with (
            warnings.catch_warnings()
        ):  # a foreign pickle protocol warns before the refusal below says it all
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"refusing {file}: it holds Python objects that a bitcompose training state never has (safe "
            "weights-only loading rejected it); it may be unsafe, or written by another program"
        ) from None
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(f"corrupt checkpoint file {file}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise ValueError(f"corrupt checkpoint file {file}: expected a dict")
    return state


def load_state_strict(module: nn.Module, state: dict[str, Tensor], what: str = "weights") -> None:
    """``module.load_state_dict(state)`` with a one-line ``ValueError`` naming what does not match.

    Args:
        module: the freshly built model.
        state: the stored weights.
        what: how to call the weights in the message (e.g. "model weights of checkpoint runs/x").
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: stored {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} with other shapes (e.g. {shapes[0]})")
    if problems:
        raise ValueError(f"{what} do not match the configured model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for ``path``: a checkpoint itself, or a run folder holding ``checkpoint/``."""
    path = Path(path)
    _recover(path / "checkpoint")
    if (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file():
        return path
    if (path / "checkpoint").is_dir():
        return path / "checkpoint"
    if not path.exists():
        raise FileNotFoundError(f"no such run or checkpoint folder: {path}")
    raise FileNotFoundError(f"{path} is neither a checkpoint folder nor a run folder with checkpoint/")
