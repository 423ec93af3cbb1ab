"""Quality against network evaluations for the samplers of one trained model: DDIM, DDPM, DPM-Solver++(2M), and
Appendix G's momentum estimate and self-guidance.

For every (sampler, steps) it samples the same ``--n`` images (same labels, same seed) and reports NFE, images/s,
class accuracy and classifier FID (with its real-vs-real floor) from the in-project classifier, and the invalid-code
fraction. Prints a table, or one JSON object with ``--json``.

Example (the figures in docs/results/sampling.md)::

    make demo && python benchmarks/few_step_sampling.py runs/demo/train --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

import torch

from bitcompose.experiments.classifier import load_or_train_classifier
from bitcompose.images.evaluate import generate, score_samples
from bitcompose.images.model import load_model
from bitcompose.images.trainer import load_training_data

#: (label, sampler, extra settings) of each row family.
VARIANTS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("ddim", "ddim", {}),
    ("ddpm", "ddpm", {}),
    ("dpmpp2m", "dpmpp2m", {}),
    ("ddim + momentum 0.5", "ddim", {"momentum": 0.5}),
    ("ddim + self-guidance 3", "ddim", {"self_guidance": 3.0}),
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.run)
    dataset = load_training_data(model.config)
    classifier = load_or_train_classifier(dataset, progress=False)
    rows = []
    for label, sampler, extra in VARIANTS:
        for steps in args.steps:
            sampling = dataclasses.replace(model.config.sample, sampler=sampler, steps=steps, **extra)  # type: ignore[arg-type]
            gen = generate(model, args.n, sampling, seed=args.seed, progress=False)
            scores = score_samples(gen, dataset, classifier, seed=args.seed)
            rows.append(
                {
                    "variant": label,
                    "sampler": sampler,
                    **extra,
                    "steps": steps,
                    "nfe": steps * (2 if extra.get("self_guidance") else 1),
                    "img_per_s": args.n / gen.seconds,
                    "class_accuracy": scores.get("class_accuracy"),
                    "classifier_fid": scores["classifier_fid"],
                    "classifier_fid_floor": scores["classifier_fid_floor"],
                    "invalid_code_fraction": scores["invalid_code_fraction"],
                }
            )
    return {
        "run": args.run,
        "n": args.n,
        "seed": args.seed,
        "rows": rows,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a trained run folder (e.g. runs/demo/train)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[5, 10, 20, 50])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{'variant':<24} {'steps':>5} {'NFE':>4} {'img/s':>7} {'acc':>6} {'cFID':>7} (floor {out['rows'][0]['classifier_fid_floor']:.3f})"
    )
    for r in out["rows"]:
        acc = "–" if r["class_accuracy"] is None else f"{r['class_accuracy']:.3f}"
        print(
            f"{r['variant']:<24} {r['steps']:>5} {r['nfe']:>4} {r['img_per_s']:>7.1f} {acc:>6} {r['classifier_fid']:>7.3f}"
        )


if __name__ == "__main__":
    main()
