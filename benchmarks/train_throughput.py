"""Training and sampling throughput of an image Bit Diffusion config, with its FLOPs and the machine's matmul rate.

One run prints (``--json``: one JSON object):

* ``train_img_per_s``: full optimiser steps of :class:`bitcompose.images.trainer.ImageTrainer` (batch
  preparation, the self-conditioning first pass, forward, backward, clipping, Adam, EMA) on fabricated data of the
  preset's shape; the median of ``--steps`` timed steps after ``--warmup`` untimed ones;
* ``sample_img_per_s``: 100-step DDIM of 16 images (``--sample-steps``, ``--sample-batch``) with the EMA weights;
* ``matmul_gflops``: the best rate of a 2048² fp32 matmul in the same run (and ``matmul_bf16_gflops``);
* ``mfu``: the training step's FLOP rate (FLOPs counted with ``FlopCounterMode``, attention on its math path so
  that it is counted) over ``matmul_gflops``;
* with ``--energy``: the same step with the energy parameterisation (ε = ∇ₓE, double backprop) and the ratio.

Example (the figures in docs/performance.md)::

    python benchmarks/train_throughput.py --preset bench32 --json
    python benchmarks/train_throughput.py --preset bench32 --precision fp32 --energy --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bitcompose.core.precision import cpu_has_fast_bf16
from bitcompose.data.images import IMAGE_DATASETS, ImageDataset
from bitcompose.diffusion.samplers import sample
from bitcompose.images.config import TrainConfig, preset
from bitcompose.images.model import make_denoiser
from bitcompose.images.trainer import ImageTrainer
from bitcompose.nets.unet import count_parameters
from bitcompose.training.dist import DistInfo, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fake_dataset(config: TrainConfig, n: int) -> ImageDataset:
    """Random integer images with the shape, value range and classes of the preset's data set."""
    info = IMAGE_DATASETS.get(config.data.name, IMAGE_DATASETS["digits"])
    k = config.data.levels or info.num_values
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, k, (n, info.channels, info.height, info.width), generator=g)
    classes = info.num_classes if config.data.conditional else 0
    labels = torch.arange(n) % classes if classes else None
    return ImageDataset(images=images, labels=labels, num_values=k, num_classes=classes, name="fake")


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Best FLOP/s of ``repeats`` timed ``size × size`` matmuls (2·size³ FLOPs each; best-of, since other
    processes only ever slow a trial down)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def train_flops_per_image(trainer: ImageTrainer) -> float:
    """FLOPs of one training step (loss + backward) per image; attention on its math path so it is counted."""
    with FlopCounterMode(display=False) as counter, sdpa_kernel([SDPBackend.MATH]):
        trainer.task.loss(trainer.net, 0).backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return counter.get_total_flops() / trainer.config.batch_size


def time_steps(trainer: ImageTrainer, warmup: int, steps: int, device: torch.device) -> float:
    """Median seconds of ``steps`` timed optimiser steps after ``warmup`` untimed ones."""
    for _ in range(warmup):
        trainer.train_step()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        trainer.train_step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_trainer(args: argparse.Namespace, device: torch.device, *extra: str) -> ImageTrainer:
    overrides = ["checkpoint_every=0", "sample_every=0", f"device={device}", *args.set, *extra]
    if args.batch_size:
        overrides.append(f"batch_size={args.batch_size}")
    if args.precision:
        overrides += [f"precision={args.precision}", f"sample.precision={args.precision}"]
    config = preset(args.preset).with_overrides(overrides)
    data = fake_dataset(config, max(4 * config.batch_size, 64))
    return ImageTrainer(
        config, tempfile.mkdtemp(), dataset=data, progress=False, dist_info=DistInfo(device=device)
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    trainer = make_trainer(args, device)
    cfg = trainer.config
    flops = train_flops_per_image(trainer)
    step_s = time_steps(trainer, args.warmup, args.steps, device)

    den = make_denoiser(trainer.ema.module, cfg.model, trainer.spec.num_values).eval()
    spec = trainer.spec
    shape = (args.sample_batch, spec.channels * trainer.codec.num_bits, spec.image_size, spec.image_size)
    labels = torch.arange(args.sample_batch, device=device) % spec.num_classes if spec.num_classes else None
    g = torch.Generator(device).manual_seed(0)
    prec = cfg.sample.precision
    sample(den, shape, steps=2, cond=labels, generator=g, precision=prec)  # warm-up
    _sync(device)
    start = time.perf_counter()
    sample(den, shape, steps=args.sample_steps, cond=labels, generator=g, precision=prec)
    _sync(device)
    sample_s = time.perf_counter() - start

    mm_size = 2048 if device.type == "cpu" else 8192
    repeats = 8 if device.type == "cpu" else 20
    fp32 = matmul_flops_per_s(device, torch.float32, mm_size, repeats)
    # on a CPU without AVX-512 BF16 / AMX a bf16 matmul is emulated: 2048² ten times can take many minutes there
    fast_bf16 = device.type != "cpu" or cpu_has_fast_bf16()
    bf16 = matmul_flops_per_s(device, torch.bfloat16, mm_size, repeats) if fast_bf16 else None
    train_ips = cfg.batch_size / step_s
    out: dict[str, Any] = {
        "preset": args.preset,
        "overrides": args.set,
        "device": str(device),
        "params": count_parameters(trainer.net),
        "batch_size": cfg.batch_size,
        "precision": trainer.precision,
        "sample_precision": prec,
        "train_img_per_s": train_ips,
        "sample_img_per_s": args.sample_batch / sample_s,
        "sample_steps": args.sample_steps,
        "sample_batch": args.sample_batch,
        "train_gflop_per_img": flops / 1e9,
        "train_gflops": flops * train_ips / 1e9,
        "matmul_gflops": fp32 / 1e9,
        "matmul_bf16_gflops": None if bf16 is None else bf16 / 1e9,
        "skipped": [] if fast_bf16 else ["the bf16 matmul (emulated on this CPU, minutes)"],
        "mfu": flops * train_ips / fp32,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "cpu": platform.processor() or platform.machine(),
        "load_avg_1min": os.getloadavg()[0],
    }
    if args.energy:
        energy = make_trainer(args, device, "model.prediction=energy")
        energy_s = time_steps(energy, args.warmup, args.steps, device)
        out["energy_train_img_per_s"] = cfg.batch_size / energy_s
        out["energy_step_ratio"] = energy_s / step_s
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--preset", default="bench32", help="a training preset (bench32, digits, mnist, cifar10, ...)"
    )
    p.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default=None, help="default: the preset's"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--sample-batch", type=int, default=16)
    p.add_argument("--sample-steps", type=int, default=100, help="sampling steps (network evaluations)")
    p.add_argument("--energy", action="store_true", help="also time the energy parameterisation")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return
    print(
        f"{r['preset']} on {r['device']} ({r['torch_threads']} threads), {r['precision']}, {r['params']:,} params"
    )
    print(f"  train  batch {r['batch_size']:<4}          {r['train_img_per_s']:8.1f} images/s")
    print(
        f"  sample {r['sample_steps']} steps × {r['sample_batch']}    {r['sample_img_per_s']:8.2f} images/s"
    )
    print(
        f"  training                  {r['train_gflops']:8.1f} GFLOP/s ({r['train_gflop_per_img']:.2f} GFLOP/image)"
    )
    bf16 = r["matmul_bf16_gflops"]
    bf16_text = "skipped (emulated here)" if bf16 is None else f"{bf16:.1f}"
    print(f"  matmul 2048² fp32 / bf16  {r['matmul_gflops']:8.1f} / {bf16_text} GFLOP/s")
    print(f"  mfu (vs fp32 matmul)      {r['mfu']:8.2f}")
    if args.energy:
        print(
            f"  energy training           {r['energy_train_img_per_s']:8.1f} images/s ({r['energy_step_ratio']:.2f}× the step)"
        )


if __name__ == "__main__":
    main()
