"""The OpenMP wait policy chosen at import, before torch loads (imports nothing heavy).

Measured on a 2-core AMD EPYC VM (docs/performance.md): a digits training step runs ≈ 2.2× faster with
``OMP_WAIT_POLICY=PASSIVE`` when other jobs hold the cores (load 3.2–3.6), and ≈ 2.2× slower when the machine is
idle (the default spins and wakes its threads at once). So the passive policy is set only when the machine is
already busy, and never over the user's own choice.
"""

from __future__ import annotations

import os

__all__ = ["BUSY_LOAD_PER_CORE", "busy", "choose_wait_policy"]

#: The 1-minute load average per core above which the machine counts as busy.
BUSY_LOAD_PER_CORE = 0.75


def busy(load: float, cores: int) -> bool:
    """Whether a 1-minute load average ``load`` on ``cores`` cores means other work holds the CPU."""
    return load >= BUSY_LOAD_PER_CORE * max(cores, 1)


def choose_wait_policy(environ: dict[str, str] | None = None) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` (default ``os.environ``) when the machine is busy and the
    variable is unset; returns what was set (``None``: nothing)."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env:
        return None
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        return None
    if not busy(load, os.cpu_count() or 1):
        return None
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"


choose_wait_policy()  # on import: ``bitcompose/__init__.py`` imports this module before anything loads torch
