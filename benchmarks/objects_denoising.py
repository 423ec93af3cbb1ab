"""Held-out x0-MSE of the objects experiment's position models (score and energy), conditional and unconditional.

Separates "the energy model denoises worse" from "it samples worse": both cached models (``compose objects``
trains them on first use) denoise the same held-out scenes at the same noise, each with its own two-pass
self-conditioning estimate, clipped to ``[−1, 1]``; predicting 0 scores 1.0.

Usage::

    python benchmarks/objects_denoising.py [--n 256] [--times 0.02,0.1,0.3,0.5,0.85,0.95] [--json] [--train]

A model not in the cache is skipped, saying so (training one takes 20-55 min on 2 cores); ``--train`` trains it.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from bitcompose.objects.models import PARAMS, is_trained, load_or_train, test_scenes


def held_out_mse(param: str, n: int, times: list[float]) -> dict[str, float]:
    """``{"t=…/cond": mse, "t=…/uncond": mse}`` of the ``param`` position model on ``n`` held-out scenes."""
    ds = test_scenes().position_dataset()
    pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n]
    assert ds.labels is not None  # position scenes are labelled by a cell
    images, labels = ds.images[pick], ds.labels[pick]
    model = load_or_train("position", param, progress=False)
    den = model.denoiser
    x0 = model.codec.encode_images(images)
    out = {}
    for t in times:
        tt = torch.full((len(x0),), t)
        alpha = den.schedule.alpha(tt).view(-1, 1, 1, 1)
        sigma = den.schedule.sigma(tt).view(-1, 1, 1, 1)
        z = alpha * x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        for name, cond in (("cond", labels), ("uncond", torch.full_like(labels, -1))):
            with torch.no_grad():
                est = den(z, tt, None, cond).clamp(-1, 1)
                est = den(z, tt, est, cond).clamp(-1, 1)
            out[f"t={t:g}/{name}"] = float((est - x0).pow(2).mean())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--times", default="0.02,0.1,0.3,0.5,0.85,0.95")
    p.add_argument("--json", action="store_true")
    p.add_argument("--train", action="store_true", help="train the models not in the cache (20-55 min each)")
    args = p.parse_args()
    times = [float(t) for t in args.times.split(",")]
    params = [param for param in PARAMS if args.train or is_trained("position", param)]
    for param in sorted(set(PARAMS) - set(params)):
        print(f"skipped: the {param} position model is not in the cache (--train trains it)", file=sys.stderr)
    rows = {param: held_out_mse(param, args.n, times) for param in params}
    if args.json:
        print(json.dumps(rows))
        return
    for param, row in rows.items():
        print(param, "  ".join(f"{k} {v:.4f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
