"""Cost of an energy-parameterised training step relative to a score step on the experiments' U-Nets.

Times full optimiser steps through the shared image trainer for the experiments' recipes
(``experiments.image_models.small_model_config``): the x0 score model and the x0-form energy model
(E = ‖x − α·f‖²/(2σ), ε̂ = ∇ₓE by double backprop), in fp32 and bf16 autocast, steps interleaved round by round
and the medians compared. ``--profile`` splits one step of each into its phases (the self-conditioning first pass, the
forward pass, the first backward that gives ε̂ with its graph, the loss's backward) to show where the time goes.

Recipes: ``digits`` (8×8, 17 levels, class-conditional, the table of docs/composition.md), ``mnist`` (14×14,
8 levels, unconditional: the guidance models), ``objects`` (16×16 RGB scenes, position-conditioned).

Example (the figures in docs/composition.md)::

    python benchmarks/energy_training_unet.py --rounds 20 --recipes digits,mnist,objects --precisions fp32,bf16 --profile --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from energy_training import interleaved_ms  # the sibling script's timing loop
from torch.nn.attention import SDPBackend, sdpa_kernel

from bitcompose.core.machine import machine_line
from bitcompose.core.precision import cpu_has_fast_bf16
from bitcompose.data.images import ImageDataset
from bitcompose.data.small_images import small_dataset
from bitcompose.diffusion.denoiser import BitDenoiser
from bitcompose.diffusion.loss import self_cond_input
from bitcompose.experiments.image_models import small_model_config
from bitcompose.images.config import DataConfig, TrainConfig
from bitcompose.images.model import make_denoiser
from bitcompose.images.trainer import ImageTrainer


def recipe(name: str, param: str, precision: str) -> tuple[TrainConfig, ImageDataset]:
    """The recipe's training config and data."""
    if name == "digits":
        cfg = small_model_config("bench-digits", DataConfig(name="digits", conditional=True), param, 10**6, 4)
        cfg = dataclasses.replace(cfg, self_cond_prob=0.5, cond_drop_prob=0.1)
        data = small_dataset("digits")
    elif name == "mnist":
        from bitcompose.guidance.data import splits
        from bitcompose.guidance.models import guidance_config

        cfg, data = guidance_config("mnist", param, 10**6), splits("mnist")[0]
    elif name == "objects":
        from bitcompose.objects.models import _dataset, objects_config

        cfg, data = objects_config("position", param, 10**6), _dataset("position")
    else:
        raise SystemExit(f"unknown recipe {name!r}")
    return dataclasses.replace(cfg, precision=precision, log_every=10**6, checkpoint_every=0), data


def step_times(name: str, precision: str, rounds: int, folder: Path) -> dict[str, float]:
    """Median ms per optimiser step of the score and the energy model, interleaved."""
    trainers = {}
    for param in ("score", "energy"):
        cfg, data = recipe(name, param, precision)
        trainers[param] = ImageTrainer(
            cfg, folder / f"{name}-{param}-{precision}", dataset=data, progress=False
        )
    ms = interleaved_ms({k: tr.train_step for k, tr in trainers.items()}, rounds)[0]
    return {"score_ms": ms["score"], "energy_ms": ms["energy"], "ratio": ms["energy"] / ms["score"]}


def phases(name: str, param: str, repeats: int) -> dict[str, float]:
    """Median ms of each phase of one fp32 training step (batch of the recipe, fixed draws)."""
    cfg, data = recipe(name, param, "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        tr = ImageTrainer(cfg, Path(tmp), dataset=data, progress=False)
        task, net = tr.task, tr.net
        den = make_denoiser(net, cfg.model, data.num_values)
        assert isinstance(den, BitDenoiser)  # the recipes are score or energy models, not the masked baseline
        den.train()
        batch = task.make_batch(0)
        x0, t, noise, labels = batch["x0"], batch["t"], batch["noise"], batch["labels"]
        alpha = den.schedule.alpha(t)[:, None, None, None]
        sigma = den.schedule.sigma(t)[:, None, None, None]
        x_t = alpha * x0 + sigma * noise
        rows: dict[str, list[float]] = {
            "self_cond_pass": [],
            "forward": [],
            "eps_backward": [],
            "loss_backward": [],
        }
        clock = [time.perf_counter()]

        def lap() -> float:
            now = time.perf_counter()
            ms, clock[0] = 1000 * (now - clock[0]), now
            return ms

        for _ in range(repeats + 2):
            net.zero_grad(set_to_none=True)
            lap()
            sc = self_cond_input(den, x_t, t, labels, batch["self_cond_mask"])
            t_sc = lap()
            if param == "energy":
                x = x_t.detach().requires_grad_(True)
                with sdpa_kernel([SDPBackend.MATH]):  # the fused kernels have no second derivative
                    e = den.energy(x, t, sc, labels)
                    t_fwd = lap()
                    (eps,) = torch.autograd.grad(e.sum(), x, create_graph=True)
                t_eps = lap()
                est = (x_t - sigma * eps) / alpha
            else:
                est = den.raw(x_t, t, sc, labels)
                t_fwd, t_eps = lap(), 0.0
            loss = (est - x0).pow(2).mean()
            lap()
            with sdpa_kernel([SDPBackend.MATH]):
                loss.backward()
            t_bwd = lap()
            for key, value in zip(rows, (t_sc, t_fwd, t_eps, t_bwd), strict=True):
                rows[key].append(value)
        return {k: statistics.median(v[2:]) for k, v in rows.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--recipes",
        default="digits",
        help="comma-separated recipes (default digits; the docs: digits,mnist,objects)",
    )
    p.add_argument(
        "--precisions", default=None,
        help="comma-separated: fp32, bf16 (default both where the CPU has fast bf16, else fp32)",
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=10, help="interleaved timed rounds (the docs: 20)")
    p.add_argument("--profile", action="store_true", help="also split one step into its phases (fp32)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if args.precisions is None:
        fast = torch.cuda.is_available() or cpu_has_fast_bf16()
        args.precisions = "fp32,bf16" if fast else "fp32"
        if args.precisions == "fp32":
            print(
                "skipped: bf16 (emulated on this CPU; --precisions fp32,bf16 times it anyway)",
                file=sys.stderr,
            )
    if args.recipes == "digits":
        print("skipped: the mnist and objects recipes (--recipes digits,mnist,objects)", file=sys.stderr)
    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.recipes.split(","):
            for precision in args.precisions.split(","):
                row = {
                    "recipe": name,
                    "precision": precision,
                    **step_times(name, precision, args.rounds, Path(tmp)),
                }
                rows.append(row)
                if not args.json:
                    print(f"{name:8s} {precision}: score {row['score_ms']:7.1f} ms, energy {row['energy_ms']:7.1f} ms "
                          f"({row['ratio']:.2f}×)", flush=True)  # fmt: skip
            if args.profile:
                for param in ("score", "energy"):
                    prof = {"recipe": name, "param": param, **phases(name, param, args.rounds)}
                    profiles.append(prof)
                    if not args.json:
                        print(f"  phases {param}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in prof.items()
                                                                if isinstance(v, float)), flush=True)  # fmt: skip
    report = {
        "rows": rows,
        "phases": profiles,
        "rounds": args.rounds,
        "machine": machine_line(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
