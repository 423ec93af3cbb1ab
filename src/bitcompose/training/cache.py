"""Where trained models are cached: ``$BITCOMPOSE_CACHE/<kind>``, else ``~/.cache/bitcompose/<kind>``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str, root: str | Path | None = None) -> Path:
    """The cache folder of one kind of model (``toy2d``, ``captions``, ``classifiers``, ...).

    Args:
        kind: the sub-folder.
        root: an explicit folder to use as is (returned unchanged).
    """
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get("BITCOMPOSE_CACHE") or "~/.cache/bitcompose"
    return Path(base).expanduser() / kind
