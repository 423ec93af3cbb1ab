"""The vocabulary every sampler shares: generators, progress bars, per-step callbacks and one result type.

* ``generator``: every random draw comes from it; ``None`` means a fresh generator seeded from the operating
  system (a different run each call). The global RNG is never used.
* ``progress``: a tqdm bar when true (default false).
* ``callback(info)``: called after every step with a :class:`StepInfo`.
* The result is a :class:`SampleResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["StepInfo", "SampleResult", "Callback", "resolve_generator", "progress_bar", "keep_finite"]

T = TypeVar("T")


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports after each step.

    Attributes:
        step: index of the step (0 = the first, noisiest).
        t: the time the model was queried at (for annealed MCMC: the level's time).
        t_next: the time the state is at after the step.
        x: the state ``[B, *dims]`` after the step.
        x0: the clipped x0 estimate of the step ``[B, *dims]`` (``None`` where the sampler has none).
        nfe: model evaluations so far (each on the whole batch).
        acceptance: mean Metropolis acceptance of the step (NaN without Metropolis).
    """

    step: int
    t: float
    t_next: float
    x: Tensor
    x0: Tensor | None
    nfe: int
    acceptance: float = math.nan


Callback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class SampleResult:
    """What every sampler returns.

    Attributes:
        samples: ``[B, *dims]``.
        nfe: model evaluations in all (each on the whole batch).
        acceptance: float64 ``[L]`` per level of the annealing grid (index 0 = least noisy): the mean
            Metropolis acceptance of the steps run at that level, NaN where none ran; ``None`` for samplers
            without Metropolis steps.
        rejected_nonfinite: proposals or steps rejected because their values were not finite.
        resampled: how many times SMC resampled the particles (with groups: the times any group was).
        times: the query time of every step, in order.
    """

    samples: Tensor
    nfe: int
    acceptance: Tensor | None = None
    rejected_nonfinite: int = 0
    resampled: int = 0
    times: list[float] = field(default_factory=list)


def resolve_generator(
    generator: torch.Generator | None, device: torch.device | str | None = None
) -> torch.Generator:
    """``generator``, or a fresh one (on ``device``) seeded from the operating system's entropy."""
    if generator is not None:
        return generator
    g = torch.Generator(device=device if device is not None else "cpu")
    g.seed()
    return g


def progress_bar(items: Iterable[T], *, progress: bool, desc: str, total: int | None = None) -> Iterator[T]:
    """``items`` wrapped in a tqdm bar when ``progress`` is true."""
    return iter(tqdm(items, disable=not progress, desc=desc, total=total, dynamic_ncols=True))


def keep_finite(new: Tensor, old: Tensor, t: float) -> tuple[Tensor, int]:
    """``new`` where a sample is finite, ``old`` where it is not (NaN or ±inf anywhere in it), and how many samples
    were held back; a ``ValueError`` when no sample is finite (the model is broken, not a few samples).

    Args:
        new: ``[B, *dims]`` the state after a step.
        old: ``[B, *dims]`` the state before it.
        t: the time of the step (for the message).
    """
    ok = torch.isfinite(new).flatten(1).all(1)
    if bool(ok.all()):
        return new, 0
    if not bool(ok.any()):
        raise ValueError(f"the model returned non-finite values for every sample at t={t:.4g}")
    mask = ok.reshape(-1, *([1] * (new.ndim - 1)))
    return torch.where(mask, new, old), int((~ok).sum())
