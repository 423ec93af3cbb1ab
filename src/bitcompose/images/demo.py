"""The CPU demo: train a class-conditional Bit Diffusion model on 8×8 digits, sample one row per class, score it.

``bitcompose demo --out runs/demo`` (``make demo``) writes

* ``samples.png``: a grid with one row per class 0..9 (10 samples each, EMA weights);
* ``metrics.json``: class accuracy of the samples under the in-project classifier, classifier FID and its
  real-vs-real floor, KID, invalid-code fraction, wall times, steps, seed and sampler settings;
* ``train/``: the run folder (``checkpoint/``, ``metrics.jsonl``, ``config.json``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from bitcompose.core.machine import machine_info
from bitcompose.experiments.classifier import cached_classifier
from bitcompose.figures.grids import save_grid
from bitcompose.images.config import TrainConfig, preset
from bitcompose.images.evaluate import generate, score_samples
from bitcompose.images.model import load_model
from bitcompose.images.trainer import ImageTrainer, load_training_data

__all__ = ["demo_config", "run_demo"]


def demo_config(overrides: list[str] | None = None) -> TrainConfig:
    """The ``digits`` preset with optional ``key=value`` overrides, forced to the CPU."""
    return preset("digits").with_overrides(["device=cpu", *(overrides or [])])


def run_demo(out: str | Path, *, overrides: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train, sample and score the demo model; returns the metrics written to ``out/metrics.json``.

    Args:
        out: output folder (its ``train/`` sub-folder is replaced).
        overrides: ``key=value`` config overrides (e.g. ``["steps=500"]``).
        progress: show progress bars.
    """
    start = time.perf_counter()
    out = Path(out)
    config = demo_config(overrides)
    run_dir = out / "train"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_training_data(config)
    result = ImageTrainer(config, run_dir, dataset=dataset, progress=progress).train()

    eval_start = time.perf_counter()
    model = load_model(run_dir, ema=True)
    generated = generate(model, config.sample.num_eval, seed=config.seed, progress=progress)
    classifier, classifier_entry = cached_classifier(dataset, progress=progress)
    scores = score_samples(generated, dataset, classifier, seed=config.seed)

    # One row per class: the first 10 samples of each class.
    assert generated.labels is not None
    rows = [generated.images[generated.labels == c][:10] for c in range(model.spec.num_classes)]
    grid = save_grid(
        torch.cat(rows), out / "samples.png", nrow=10, num_values=model.spec.num_values, upscale=8
    )

    metrics: dict[str, Any] = {
        **scores,
        "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - eval_start, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
        "sample_seconds": round(generated.seconds, 2),
        "steps": result.step,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "final_loss": result.loss,
        "sampler": generated.settings,
        "classifier_cached": not classifier_entry.fresh,
        "machine": machine_info(),
        "config": config.to_dict(),
        "samples_png": str(grid),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
