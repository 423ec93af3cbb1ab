"""The error type for user mistakes on the command line."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user mistake (bad option, missing file, ...): printed as one line, exit code 2, no traceback."""
