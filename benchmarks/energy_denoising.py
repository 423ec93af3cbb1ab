"""How well energy-parameterised Bit Diffusion models denoise, beside score models trained the same way.

Every variant is the experiments' CPU recipe (``experiments.image_models.small_model_config``: U-Net base 32,
mults (1, 2), attention at 4×4, self-conditioning, Adam 1e-3, batch 64) trained class-conditionally on the train split of the
8×8 digits (17 levels, binary bits) for ``--steps`` steps from the same seed, through the shared image trainer.
Each is scored on the held-out split: the mean squared error of its clipped x0 estimate (first pass, no
self-conditioning estimate) at fixed times, with the same noise for every variant; predicting 0 scores 1.0. The
median time of a training step is printed beside it (its ratio to the x0 score model's).

Variants: the x0 and ε score models; the energies ``x0`` (E = ‖x − α·f‖²/(2σ)), ``diff`` (‖f − x‖², the
former ε-like default) and ``norm`` (½‖f‖², RRR's), each trained on the x0 MSE and on the ε MSE.

At its defaults (the three variants that decide: x0 and ε score models and the default x0-form energy, 100 steps;
a few minutes on 2 cores) it says what it skipped. The table in docs/composition.md is every variant at 200 steps::

    python benchmarks/energy_denoising.py --steps 200 --all --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bitcompose.core.machine import machine_line
from bitcompose.data.small_images import small_dataset
from bitcompose.experiments.image_models import small_model_config
from bitcompose.images.config import DataConfig, TrainConfig
from bitcompose.images.model import load_model
from bitcompose.images.trainer import ImageTrainer

TIMES = (0.1, 0.5, 0.85, 0.95)
#: (name, prediction, energy form, loss target)
VARIANTS = (
    ("x0 score model", "x0", "diff", "x0"),
    ("ε score model", "eps", "diff", "eps"),
    ("energy x0-form, x0-MSE", "energy", "x0", "x0"),
    ("energy x0-form, ε-MSE", "energy", "x0", "eps"),
    ("energy ‖f − x‖², ε-MSE (the former default)", "energy", "diff", "eps"),
    ("energy ‖f − x‖², x0-MSE", "energy", "diff", "x0"),
    ("energy ½‖f‖², x0-MSE", "energy", "norm", "x0"),
    ("energy ½‖f‖², ε-MSE", "energy", "norm", "eps"),
)

#: How many of :data:`VARIANTS` run without ``--all``: the score models and the default energy.
DEFAULT_VARIANTS = 3


def config(prediction: str, energy: str, target: str, steps: int, precision: str) -> TrainConfig:
    base = small_model_config("bench-digits", DataConfig(name="digits", conditional=True), "score", steps, 4)
    model = dataclasses.replace(base.model, prediction=prediction, energy=energy, loss_target=target)
    optim = dataclasses.replace(base.optim, ema_decay=None)  # a short run: its online weights
    return dataclasses.replace(
        base, model=model, optim=optim, self_cond_prob=0.5, cond_drop_prob=0.1, precision=precision,
        log_every=1, checkpoint_every=0,
    )  # fmt: skip


@torch.no_grad()
def held_out_mse(run: Path, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    loaded = load_model(run, ema=False)
    den = loaded.denoiser.eval()
    x0 = loaded.codec.encode_images(images)
    out = {}
    for t_value in TIMES:
        g = torch.Generator().manual_seed(int(1000 * t_value))
        t = torch.full((len(x0),), t_value)
        noise = torch.randn(x0.shape, generator=g)
        alpha, sigma = den.schedule.alpha(t)[:, None, None, None], den.schedule.sigma(t)[:, None, None, None]
        est = den(alpha * x0 + sigma * noise, t, torch.zeros_like(x0) if den.self_condition else None, labels)
        out[f"t={t_value:g}"] = float((est.clamp(-den.scale, den.scale) - x0).pow(2).mean())
    return out


def step_ms(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:], strict=False)]
    return 1000 * statistics.median(times[len(times) // 5 :])  # the first steps warm up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per model (the table: 200)")
    parser.add_argument(
        "--all", action="store_true", help="every variant (the table), not only the first three"
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = small_dataset("digits")
    train, held_out = data.split(0.1, 0)
    assert held_out.labels is not None
    rows: list[dict[str, Any]] = []
    variants = VARIANTS if args.all else VARIANTS[:DEFAULT_VARIANTS]
    if not args.all:
        skipped = ", ".join(v[0] for v in VARIANTS[DEFAULT_VARIANTS:])
        print(f"skipped (--all runs them): {skipped}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for name, prediction, energy, target in variants:
            cfg = config(prediction, energy, target, args.steps, args.precision)
            run = Path(tmp) / name.replace(" ", "_")
            start = time.perf_counter()
            ImageTrainer(cfg, run, dataset=train, progress=False).train()
            row: dict[str, Any] = {
                "variant": name,
                "prediction": prediction,
                "energy": energy,
                "target": target,
            }
            row |= held_out_mse(run, held_out.images, held_out.labels)
            row |= {"step_ms": step_ms(run), "train_seconds": time.perf_counter() - start}
            rows.append(row)
            if not args.json:
                print(name, {k: round(v, 3) for k, v in row.items() if isinstance(v, float)}, flush=True)
    base = rows[0]["step_ms"]
    for r in rows:
        r["step_ratio"] = r["step_ms"] / base
    report = {"steps": args.steps, "precision": args.precision, "machine": machine_line(), "rows": rows}
    print(json.dumps(report, indent=1) if args.json else "")


if __name__ == "__main__":
    main()
