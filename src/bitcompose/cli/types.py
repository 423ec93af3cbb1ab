"""Argument types shared by the command groups: numbers checked at parse time, with one-line messages."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["int_arg", "float_arg"]


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
