"""What machine a result came from: CPU model, cores, threads, torch version, load (recorded beside numbers)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from bitcompose.core.precision import cpu_has_fast_bf16

__all__ = ["machine_info", "machine_line"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """``{cpu, cpu_count, platform, torch, torch_threads, omp_num_threads, cpu_fast_bf16, cuda, load_average}``."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": load,
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """One line for a results page: ``"<cpu>, N cores, torch X, T threads, load a/b/c"``."""
    m = info or machine_info()
    gpu = f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU"
    load = "/".join(str(x) for x in m.get("load_average", []))
    return (
        f"{m['cpu']}, {m['cpu_count']} cores{gpu}, {m['platform']}, torch {m['torch']}, "
        f"{m['torch_threads']} threads, load average {load}"
    )
