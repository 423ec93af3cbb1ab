"""The ``bitcompose`` command line.

Each command group lives in its own module with a ``register(subparsers)`` function; this module only assembles
them and turns user mistakes into one readable line and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from bitcompose.cli.errors import CLIError

__all__ = ["main", "build_parser", "CLIError"]

#: What an interrupted command has kept, unless it says so itself (a subcommand's ``on_interrupt`` default).
INTERRUPT_NOTE = "nothing was written"

# Modules under bitcompose.cli that define command groups (each has `register(subparsers)`).
COMMAND_MODULES: tuple[str, ...] = ("toy2d", "caption", "classifier", "images", "compose", "study", "seq")


class _Parser(argparse.ArgumentParser):
    """``argparse`` with its usage errors on one line (the usage itself stays behind ``--help``); sub-commands
    inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command."""
    parser = _Parser(prog="bitcompose", description="Bit Diffusion and composable energy-based diffusion.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"bitcompose.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (CLIError, ValueError, FileNotFoundError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"bitcompose: error: {msg}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if not _out_of_memory(exc):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"bitcompose: error: out of memory ({first[:160]}); lower the batch size", file=sys.stderr)
        return 2
    except MemoryError:
        print("bitcompose: error: out of memory; lower --n or the batch size", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        _close_progress_bars()  # else a bar redraws itself over the message at exit
        sub = next((v for k, v in vars(args).items() if k.endswith("_command") and isinstance(v, str)), None)
        name = " ".join(v for v in (args.command, sub) if v)
        said = str(exc) or f"interrupted; {getattr(args, 'on_interrupt', INTERRUPT_NOTE)}"
        print(f"bitcompose {name}: {said}", file=sys.stderr)
        return 130
    return int(result or 0)


def _close_progress_bars() -> None:
    """Close every live tqdm bar (an interrupted loop leaves its bar open)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _out_of_memory(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


if __name__ == "__main__":
    sys.exit(main())
