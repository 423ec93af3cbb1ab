"""The one cache of trained models: an entry per (kind, spec, data), trained on first use and kept.

An entry is the folder ``<root>/<kind>/<name>-<key>``: ``key`` is :func:`cache_key` of the spec (the canonical
dict of everything that changes the weights) and the data fingerprint; the training function writes whatever it
needs into the folder (and may resume from what an interrupted run left there); ``complete.json``, written
atomically once it returns, marks a finished entry and holds its record. ``root`` is ``--cache`` when given (always
the root, never a kind's folder), else ``$BITCOMPOSE_CACHE``, else ``~/.cache/bitcompose``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

__all__ = ["COMPLETE", "NETWORK", "CacheEntry", "cache_key", "cache_root", "cached", "entry_path"]

#: The file whose presence marks a finished entry.
COMPLETE = "complete.json"
#: The folder of a small network in an entry (``config.json`` + ``model.safetensors``, the checkpoint format:
#: :func:`~bitcompose.nets.classifier.save_network`).
NETWORK = "network"
#: Hex digits of a key (64 bits: collisions are out of reach for any cache a person keeps).
KEY_LENGTH = 16


def cache_root(cache: str | Path | None = None) -> Path:
    """The cache root: ``cache`` when given, else ``$BITCOMPOSE_CACHE``, else ``~/.cache/bitcompose``."""
    if cache is not None:
        return Path(cache).expanduser()
    return Path(os.environ.get("BITCOMPOSE_CACHE") or "~/.cache/bitcompose").expanduser()


def cache_key(spec: Mapping[str, Any], data: str | None = None) -> str:
    """The key of a spec (JSON-able: its canonical form, keys sorted) and a data fingerprint."""
    canonical = json.dumps({"spec": spec, "data": data}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def entry_path(
    kind: str, name: str, spec: Mapping[str, Any], data: str | None = None, cache: str | Path | None = None
) -> Path:
    """The folder of an entry (it need not exist yet)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return cache_root(cache) / kind / f"{slug}-{cache_key(spec, data)}"


@dataclass(frozen=True)
class CacheEntry:
    """A finished entry.

    Attributes:
        path: its folder.
        record: what the training function returned (training time, held-out scores, ...).
        fresh: trained by this call (``False``: found in the cache).
    """

    path: Path
    record: dict[str, Any]
    fresh: bool


def cached(
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    train: Callable[[Path], Mapping[str, Any]],
    *,
    data: str | None = None,
    cache: str | Path | None = None,
) -> CacheEntry:
    """The entry of ``spec`` trained on ``data``: found in the cache, or made there first by ``train(folder)``.

    Args:
        kind: the cache's sub-folder (``images``, ``classifiers``, ``guides``, ``toy2d``, ``captions``, ...).
        name: a readable prefix of the folder name (not part of the key).
        spec: everything that changes what is trained (JSON-able).
        train: trains into the folder (resuming from what is there) and returns the entry's record.
        data: the training data's fingerprint.
        cache: the cache root (see :func:`cache_root`).
    """
    folder = entry_path(kind, name, spec, data, cache)
    marker = folder / COMPLETE
    if marker.is_file():
        try:
            return CacheEntry(folder, dict(json.loads(marker.read_text())["record"]), fresh=False)
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"cache entry {folder} is corrupt ({err}); delete the folder to retrain it"
            ) from err
    folder.mkdir(parents=True, exist_ok=True)
    record = dict(train(folder))
    stamp = {
        "kind": kind,
        "spec": spec,
        "data": data,
        "record": record,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
    }
    tmp = folder / f".{COMPLETE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(stamp, indent=2, default=str) + "\n")
    os.replace(tmp, marker)
    return CacheEntry(folder, record, fresh=True)
