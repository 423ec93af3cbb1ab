"""Cost of energy-parameterised training (ε = ∇ₓE, double backprop) relative to score training on the 2-D models.

Times full optimiser steps of the 2-D benchmark's residual MLP (batch 1000, the notebook's recipe) through the
shared training loop: the ε (score) model, the energy model with autograd's double backprop, and the energy model
with its loss compiled (``torch.func.grad`` inside ``torch.compile``; the compile time is reported apart).
Steps are interleaved round by round and the medians compared.

Example (the figures in docs/performance.md)::

    python benchmarks/energy_training.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from bitcompose.toy2d.train import ToyTask, TrainConfig, make_model, optim_config
from bitcompose.training.loop import Trainer


def make(param: str, compile: bool) -> Trainer:
    cfg = TrainConfig("ring", param, steps=10**6, batch=1000, compile=compile)
    return Trainer(ToyTask(cfg, make_model(cfg)), optim_config(cfg), steps=cfg.steps, progress=False)


def interleaved_ms(
    steps: dict[str, Callable[[], Any]], rounds: int, warmup: int = 3
) -> tuple[dict[str, float], dict[str, float]]:
    """``(median ms per call, warm-up seconds)`` of each callable: ``warmup`` untimed calls each (their time is
    returned apart: it holds a compile), then ``rounds`` rounds calling each once in turn, so that a drift of the
    machine affects all alike."""
    warmup_s = {}
    for name, step in steps.items():
        start = time.perf_counter()
        for _ in range(warmup):
            step()
        warmup_s[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}, warmup_s


def run(rounds: int) -> dict[str, Any]:
    trainers = {
        "score": make("score", False),
        "energy": make("energy", False),
        "energy_compiled": make("energy", True),
    }
    ms, warmup_s = interleaved_ms({k: tr.train_step for k, tr in trainers.items()}, rounds)
    compile_s = warmup_s["energy_compiled"]
    return {
        "score_step_ms": ms["score"],
        "energy_step_ms": ms["energy"],
        "energy_compiled_step_ms": ms["energy_compiled"],
        "energy_ratio": ms["energy"] / ms["score"],
        "energy_compiled_ratio": ms["energy_compiled"] / ms["score"],
        "compile_seconds": compile_s,
        "batch": 1000,
        "rounds": rounds,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=40, help="interleaved timed rounds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    r = run(args.rounds)
    if args.json:
        print(json.dumps(r))
        return
    print(f"score step           {r['score_step_ms']:7.1f} ms")
    print(f"energy step          {r['energy_step_ms']:7.1f} ms  ({r['energy_ratio']:.2f}×)")
    print(
        f"energy step compiled {r['energy_compiled_step_ms']:7.1f} ms  ({r['energy_compiled_ratio']:.2f}×; compile {r['compile_seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
