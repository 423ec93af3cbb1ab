"""Prompt composition on the objects scenes: "A AND B" and "A AND NOT B" for attribute prompts ("red square").

The model is a Bit Diffusion U-Net conditioned on ONE object's prompt (its colour and shape; 12 prompts) with a
null condition. ``A AND B`` is the CFG conjunction with weights ``(w, w)``, ``A AND NOT B`` with ``(w, −w)``
(Composable Diffusion's negation). The evaluator's prompt outputs score a sample: AND succeeds when both prompts are
present, NOT when A is present and B absent, the row "A" when A is present. Each pair also gets the row "A" (A's conditional model alone, guided
with ``w``) scored by both rules: what the operator must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bitcompose.core.names import OBJECTS_WEIGHT
from bitcompose.data.objects import NUM_CELLS, NUM_PROMPTS, prompt_name
from bitcompose.objects.cells import accuracy
from bitcompose.objects.evaluator import load_or_train_evaluator, presence
from bitcompose.objects.models import PARAMS, load_or_train
from bitcompose.objects.sampling import MCMCSettings, check_request, sample_conjunction

__all__ = ["PROMPT_PAIRS", "OPERATORS", "PromptRow", "prompt_rows"]

#: The (A, B) prompt pairs of the table, as prompt ids ``colour·3 + shape``: red square / blue ring, green plus /
#: yellow square (different colours and shapes).
PROMPT_PAIRS: tuple[tuple[int, int], ...] = ((0, 8), (4, 9))
OPERATORS = ("A", "AND", "NOT")


@dataclass
class PromptRow:
    """A row's report (JSON-ready) and its samples ``long [n, 3, 16, 16]``."""

    report: dict[str, Any]
    images: Tensor


def prompt_rows(
    *,
    pairs: tuple[tuple[int, int], ...] = PROMPT_PAIRS,
    samplers: tuple[str, ...] = ("reverse", "hmc"),
    param: str = "score",
    n: int = 300,
    seed: int = 0,
    weight: float = OBJECTS_WEIGHT,
    mcmc: MCMCSettings | None = None,
    train_steps: int | None = None,
    cache: str | Path | None = None,
    progress: bool = True,
    levels: int = 100,
) -> list[PromptRow]:
    """One row per pair and operator (``A`` alone with reverse diffusion; ``AND`` and ``NOT`` with each sampler,
    on ``levels`` noise levels); reports ``{prompt, operator, sampler, param, n, accuracy, accuracy_se, share_a, share_b, nfe, seconds, ...}``."""
    if param not in PARAMS:
        raise ValueError(f"param must be one of {', '.join(PARAMS)}, got {param!r}")
    for a, b in pairs:
        if a == b or not (0 <= a < NUM_PROMPTS and 0 <= b < NUM_PROMPTS):
            raise ValueError(
                f"a prompt pair needs two different prompts in 0..{NUM_PROMPTS - 1}, got {(a, b)}"
            )
    mcmc = mcmc or MCMCSettings()
    check_request(samplers, param, mcmc)
    loaded = load_or_train("prompt", param, steps=train_steps, cache=cache, progress=progress)
    evaluator = load_or_train_evaluator(cache, progress=progress)
    rows = []
    for a, b in pairs:
        jobs: list[tuple[str, list[int], list[float], str]] = [("A", [a], [weight], "reverse")]
        jobs += [("AND", [a, b], [weight, weight], s) for s in samplers]
        jobs += [("NOT", [a, b], [weight, -weight], s) for s in samplers]
        for op, prompts, weights, sampler in jobs:
            gen = torch.Generator().manual_seed(seed)
            # every slot asks for the same prompts: one target, so SMC resamples the row as one group
            conds = torch.tensor(prompts).expand(n, len(prompts))
            images, info = sample_conjunction(loaded, conds, weights, sampler, mcmc, gen, progress, levels)
            found = presence(evaluator, images)[:, NUM_CELLS:]
            has_a, has_b = found[:, a], found[:, b]
            and_ok, not_ok = has_a & has_b, has_a & ~has_b
            acc, se = accuracy({"A": has_a, "AND": and_ok, "NOT": not_ok}[op])
            name = {"A": prompt_name(a), "AND": f"{prompt_name(a)} AND {prompt_name(b)}"}.get(
                op, f"{prompt_name(a)} AND NOT {prompt_name(b)}"
            )
            report = {
                "prompt": name,
                "operator": op,
                "a": a,
                "b": b,
                "param": param,
                "n": n,
                "seed": seed,
                "accuracy": acc,
                "accuracy_se": se,
                "and_accuracy": float(and_ok.double().mean()),
                "not_accuracy": float(not_ok.double().mean()),
                "share_a": float(has_a.double().mean()),
                "share_b": float(has_b.double().mean()),
                **info,
                "weight": weight,
                "model_steps": loaded.step,
                "ema_weights": loaded.ema,
                "evaluator_prompt_accuracy": evaluator.info.get("prompt_accuracy"),
            }
            rows.append(PromptRow(report, images))
    return rows
