"""Which precision to compute in: ``auto`` picks bf16 autocast where the hardware runs bf16 fast.

``auto`` → ``bf16`` on CUDA and on CPUs with native bf16 matrix instructions (AVX-512 BF16 or AMX-BF16, read
from ``/proc/cpuinfo``), ``fp32`` elsewhere (on a CPU without them bf16 is emulated and slower than fp32).
Autocast covers the network only: losses, EMA weights, sampler coefficients and the final x0 estimate stay fp32.
"""

from __future__ import annotations

import functools
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "cpu_has_fast_bf16", "resolve_precision", "autocast"]

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (Linux ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@functools.cache
def _slow_bf16_notice() -> None:
    """Once per process: bf16 asked for on a CPU that emulates it."""
    print(
        "bitcompose: notice: bf16 was asked for, but this CPU has no AVX-512 BF16 or AMX: bf16 is emulated and "
        "several times slower than fp32 here (precision auto picks fp32)",
        file=sys.stderr,
    )


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32`` or ``bf16`` for ``precision`` (``auto``, ``fp32`` or ``bf16``) on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "bf16" and kind == "cpu" and not cpu_has_fast_bf16():
        _slow_bf16_notice()
    if precision != "auto":
        return precision
    if kind == "cuda":
        return "bf16"
    return "bf16" if kind == "cpu" and cpu_has_fast_bf16() else "fp32"


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager[object]:
    """A bf16 autocast context for ``precision == "bf16"`` (resolved), a no-op otherwise."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()
