"""Training and sampling throughput of an image Bit Diffusion config, with FLOPs and the matmul reference.

Measures, on one device:

* training images/s: full optimiser steps of :class:`bitcompose.images.trainer.Trainer` (batch preparation, the
  self-conditioning first pass, forward, backward, clipping, Adam, EMA) on fabricated data of the preset's shape;
* sampling images/s: DDIM with the run's sampler settings (``--sample-steps`` network evaluations per image), and
  network evaluations (NFE) per second;
* FLOPs per image of one training step and of one network forward, counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions; a multiply-add counts 2);
* the FLOP/s of a plain large matmul on the same device, so that the fraction of the machine's matmul throughput
  reached by training can be stated.

Example (the numbers in docs/training.md)::

    OMP_NUM_THREADS=2 python benchmarks/train_throughput.py --preset digits --batch-size 32
    python benchmarks/train_throughput.py --preset cifar10 --batch-size 128 --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bitcompose.data.images import IMAGE_DATASETS, ImageDataset
from bitcompose.diffusion import diffusion_loss
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
    processes on a shared machine only ever slow a trial down)."""
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


def count_train_flops(trainer: ImageTrainer) -> tuple[float, float]:
    """FLOPs of one training step (loss + backward) and of one forward of the net, per image."""
    batch = trainer.make_batch(0)
    cfg = trainer.config
    n = batch["x0"].shape[0]
    with FlopCounterMode(display=False) as counter:
        out = diffusion_loss(
            make_denoiser(trainer.net, cfg.model),
            batch["x0"],
            cond=batch["labels"],
            self_cond_prob=cfg.self_cond_prob,
            t=batch["t"],
            noise=batch["noise"],
            self_cond_mask=batch["self_cond_mask"],
        )
        out.loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    step_flops = counter.get_total_flops() / n
    den = make_denoiser(trainer.net, cfg.model)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        den(
            batch["x0"],
            batch["t"],
            torch.zeros_like(batch["x0"]) if cfg.model.self_condition else None,
            batch["labels"],
        )
    return step_flops, counter.get_total_flops() / n


def run(args: argparse.Namespace) -> dict[str, Any]:
    overrides = [f"batch_size={args.batch_size}", "checkpoint_every=0", "sample_every=0", *args.set]
    config = preset(args.preset).with_overrides(overrides)
    device = resolve_device(args.device)
    config = config.with_overrides([f"device={device}"])
    data = fake_dataset(config, max(4 * args.batch_size, 64))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = ImageTrainer(config, tmp, dataset=data, progress=False, dist_info=DistInfo(device=device))
        step_flops, fwd_flops = count_train_flops(trainer)
        for _ in range(args.warmup):
            trainer.train_step()
        times = []
        for _ in range(args.steps):
            _sync(device)
            start = time.perf_counter()
            trainer.train_step()
            _sync(device)
            times.append(time.perf_counter() - start)
        train_s, best_s = sum(times) / len(times), min(times)

        den = make_denoiser(trainer.ema.module, config.model).eval()
        codec, spec = trainer.codec, trainer.spec
        sb = args.sample_batch or args.batch_size
        shape = (sb, spec.channels * codec.num_bits, spec.image_size, spec.image_size)
        labels = torch.arange(sb, device=device) % spec.num_classes if spec.num_classes else None
        g = torch.Generator(device).manual_seed(0)
        sample(den, shape, steps=1, cond=labels, generator=g, progress=False)  # warm-up
        _sync(device)
        start = time.perf_counter()
        sample(den, shape, steps=args.sample_steps, cond=labels, generator=g, progress=False)
        _sync(device)
        sample_s = time.perf_counter() - start

    mm_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    mm_size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    peak = matmul_flops_per_s(device, mm_dtype, mm_size, repeats=20 if device.type == "cuda" else 8)
    train_ips = args.batch_size / train_s
    return {
        "preset": args.preset,
        "overrides": args.set,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "parameters": count_parameters(trainer.net),
        "batch_size": args.batch_size,
        "precision": trainer.precision,
        "train_step_ms": 1000 * train_s,
        "train_images_per_s": train_ips,
        "train_images_per_s_best_step": args.batch_size / best_s,
        "sample_images_per_s": sb / sample_s,
        "sample_steps": args.sample_steps,
        "sample_nfe_images_per_s": sb * args.sample_steps / sample_s,
        "train_flops_per_image": step_flops,
        "forward_flops_per_image": fwd_flops,
        "train_flops_per_s": step_flops * train_ips,
        "matmul_flops_per_s": peak,
        "matmul": f"{mm_size}x{mm_size} {str(mm_dtype).removeprefix('torch.')}",
        "fraction_of_matmul": step_flops * train_ips / peak,
        "fraction_of_matmul_best_step": step_flops * args.batch_size / best_s / peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="digits", help="a training preset (digits, mnist, cifar10, ...)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    p.add_argument("--sample-batch", type=int, default=None, help="sampling batch (default: --batch-size)")
    p.add_argument("--sample-steps", type=int, default=20, help="sampling steps (network evaluations)")
    p.add_argument(
        "--matmul-size", type=int, default=None, help="reference matmul size (default 2048 CPU, 8192 GPU)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return
    print(f"{r['preset']} {r['overrides']} on {r['device']} ({r['torch_threads']} threads), {r['precision']}")
    print(f"  parameters               {r['parameters']:,}")
    print(
        f"  train  batch {r['batch_size']:<5}       {r['train_images_per_s']:10.1f} images/s ({r['train_step_ms']:.1f} ms/step)"
    )
    print(
        f"  sample {r['sample_steps']} steps          {r['sample_images_per_s']:10.2f} images/s ({r['sample_nfe_images_per_s']:.1f} NFE·images/s)"
    )
    print(
        f"  FLOPs / image            train step {r['train_flops_per_image'] / 1e6:.2f} MFLOP, forward {r['forward_flops_per_image'] / 1e6:.2f} MFLOP"
    )
    print(f"  training FLOP/s          {r['train_flops_per_s'] / 1e9:.2f} GFLOP/s")
    print(f"  matmul {r['matmul']:<17} {r['matmul_flops_per_s'] / 1e9:.2f} GFLOP/s")
    print(
        f"  fraction of matmul       {100 * r['fraction_of_matmul']:.1f} % "
        f"(best step: {r['train_images_per_s_best_step']:.1f} images/s, {100 * r['fraction_of_matmul_best_step']:.1f} %)"
    )


if __name__ == "__main__":
    main()
