"""Argument types shared by the command groups: numbers checked at parse time, with one-line messages."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CACHE_HELP", "int_arg", "float_arg", "json_line", "strict_json", "output_path", "output_folder"]

#: The one meaning of ``--cache`` in every subcommand: the root of the model cache.
CACHE_HELP = "cache root of the trained models (default $BITCOMPOSE_CACHE, else ~/.cache/bitcompose)"


def int_arg(name: str, minimum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` that parses an integer ``>= minimum`` (if given); ``name`` appears in errors."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def float_arg(
    name: str, minimum: float | None = None, maximum: float | None = None, *, open_interval: bool = False
) -> Callable[[str], float]:
    """An argparse ``type`` that parses a finite number within ``[minimum, maximum]`` (or the open interval)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        low_ok = minimum is None or (value > minimum if open_interval else value >= minimum)
        high_ok = maximum is None or (value < maximum if open_interval else value <= maximum)
        if not math.isfinite(value) or not (low_ok and high_ok):
            lo = "-inf" if minimum is None else minimum
            hi = "inf" if maximum is None else maximum
            brackets = "()" if open_interval else "[]"
            raise argparse.ArgumentTypeError(
                f"{name} must lie in {brackets[0]}{lo}, {hi}{brackets[1]}, got {value}"
            )
        return value

    return parse


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by ``None``, so that it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def json_line(value: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (non-finite numbers become ``null``)."""
    return json.dumps(strict_json(value), indent=indent, allow_nan=False)


def output_path(
    path: str | Path,
    *,
    overwrite: bool = False,
    what: str = "--out",
    suffix: str | tuple[str, ...] | None = None,
    protect: Path | None = None,
) -> Path:
    """A file the command may write, checked before any work (the one output rule of every subcommand).

    Refused, each with a one-line :class:`CLIError`: a folder; a name without the expected ``suffix``; an
    existing file (unless ``overwrite``); an existing file inside the run folder ``protect`` (a run's own data,
    config and checkpoints are never replaced, even with ``overwrite``); a folder that cannot be created or written
    (tried by creating and removing a file there, which also holds for root and read-only file systems)."""
    from bitcompose.cli.errors import CLIError

    out = Path(path)
    if out.is_dir():
        raise CLIError(f"{what} {out} is a folder; give a file name")
    wanted = (suffix,) if isinstance(suffix, str) else suffix
    if wanted and out.suffix.lower() not in wanted:
        raise CLIError(f"{what} {out} must end in {' or '.join(wanted)}")
    if protect is not None and out.exists() and out.resolve().is_relative_to(protect.resolve()):
        raise CLIError(
            f"{what} {out} belongs to the run {protect} (its data or checkpoints); write elsewhere"
        )
    if out.exists() and not overwrite:
        raise CLIError(f"{what} {out} exists; choose another name or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the folder of {what} {out}: {exc.strerror}") from None
    _probe_writable(out.parent, f"cannot write {what} {out}")
    return out


def output_folder(path: str | Path | None, *, example: str, what: str = "--out") -> Path:
    """A results folder the command may write into (a table's ``--out``: kept cells are resumed, never
    replaced), checked before any work: given, not a file, and writable — tried in the folder, or in its nearest
    existing parent when it does not exist yet (nothing is created, so a command refused later leaves no trace)."""
    from bitcompose.cli.errors import CLIError

    if path is None:
        raise CLIError(f"--table needs {what} DIR (e.g. {what} {example})")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{what} must be a folder, but {out} is a file")
    base = out.absolute()
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise CLIError(f"cannot write into {what} {out}: {base} is a file")
    _probe_writable(base, f"cannot write into {what} {out}")
    return out


def _probe_writable(folder: Path, failure: str) -> None:
    """Create and remove a file in ``folder`` (which also holds for root and read-only file systems); a
    :class:`CLIError` ``"<failure>: <reason>"`` when that fails."""
    from bitcompose.cli.errors import CLIError

    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bitcompose-probe-"):
            pass
    except OSError as exc:
        raise CLIError(f"{failure}: {exc.strerror or exc}") from None
