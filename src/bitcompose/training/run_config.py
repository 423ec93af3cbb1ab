"""What the Transformer run configurations (captioning, sequences) share: the checks of their optimiser fields,
the comparison with a stored run, and presets with overrides.

Each application keeps its own frozen :class:`~bitcompose.core.config.Config` (its data and network fields differ);
these helpers are the part that would otherwise be written twice.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from bitcompose.core.config import Config

__all__ = ["check_run_fields", "same_run", "from_preset", "stored_run_complete"]

R = TypeVar("R", bound=Config)

#: The learning-rate schedules of :func:`~bitcompose.training.optim.adamw_recipe`.
LR_SCHEDULES = ("constant", "cosine")


def check_run_fields(run: Any, *, at_least_one: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the first bad optimiser field of ``run``: ``lr_schedule``, each of
    ``at_least_one`` (integers that must be ≥ 1), ``ema_decay`` in [0, 1), ``self_cond_prob`` in [0, 1],
    ``ce_weight`` ≥ 0 and ``lr`` > 0."""
    if run.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {run.lr_schedule!r}")
    for name in at_least_one:
        if getattr(run, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(run, name)}")
    if not 0.0 <= run.ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {run.ema_decay}")
    if not 0.0 <= run.self_cond_prob <= 1.0:
        raise ValueError(f"self_cond_prob must lie in [0, 1], got {run.self_cond_prob}")
    if run.ce_weight < 0:
        raise ValueError(f"ce_weight must be >= 0, got {run.ce_weight}")
    if run.lr <= 0:
        raise ValueError(f"lr must be positive, got {run.lr}")


def same_run(run: Config, stored: Mapping[str, Any]) -> bool:
    """Whether a stored ``to_dict`` (possibly from an older version, missing newer fields) is ``run``."""
    try:
        return type(run).from_dict(dict(stored)) == run
    except (TypeError, ValueError):
        return False


def from_preset(presets: Mapping[str, R], name: str, what: str, overrides: Mapping[str, Any]) -> R:
    """``presets[name]`` with field ``overrides``; a ``ValueError`` naming ``what`` (e.g. ``"sequence"``) for an
    unknown preset or field."""
    if name not in presets:
        raise ValueError(f"unknown {what} preset {name!r}; expected one of {', '.join(presets)}")
    try:
        replaced: R = dataclasses.replace(cast(Any, presets[name]), **overrides)
        return replaced
    except TypeError as exc:
        raise ValueError(f"bad {what} config override: {exc}") from exc


def stored_run_complete(
    run_dir: str | Path, run_class: type[Config], run: Config | None = None, *, files: Iterable[str] = ()
) -> bool:
    """Whether ``run_dir`` holds a finished run of ``run_class`` (of configuration ``run``, if given): its
    checkpoint's ``config.json`` (``{"run": …, "step": …}``) has reached the run's ``steps``, and every one of
    ``files`` (e.g. the tokeniser) is present beside the checkpoint folder."""
    from bitcompose.training.loop import CHECKPOINT_DIR  # the trainer imports configs: import it when asked

    ckpt = Path(run_dir) / CHECKPOINT_DIR
    if not (ckpt / "config.json").is_file() or not all((Path(run_dir) / f).is_file() for f in files):
        return False
    try:
        config = json.loads((ckpt / "config.json").read_text())
        stored = run_class.from_dict(config.get("run", {}))
    except (OSError, json.JSONDecodeError, TypeError, ValueError):
        return False
    if run is not None and not same_run(run, config.get("run", {})):
        return False
    return int(config.get("step", 0)) >= int(cast(Any, stored).steps)
