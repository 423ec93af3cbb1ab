"""bf16 against fp32 sampling of one trained model: speed and what it does to the samples.

Samples the same ``--n`` images (same labels, same seed) with the network in fp32 and under bf16 autocast (the
sampler's coefficients and x0 estimates stay fp32) and reports, for each: images/s, class accuracy and classifier
FID (with its real-vs-real floor) from the in-project classifier; and the fraction of decoded pixel codes that are
identical between the two runs.

Example (the figures in docs/performance.md)::

    make demo && python benchmarks/sample_precision.py runs/demo/train --json
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    model = load_model(args.run)
    dataset = load_training_data(model.config)
    classifier = load_or_train_classifier(dataset, progress=False)
    out: dict[str, Any] = {
        "run": args.run,
        "n": args.n,
        "seed": args.seed,
        "steps": model.config.sample.steps,
    }
    images = {}
    for precision in ("fp32", "bf16"):
        sampling = dataclasses.replace(model.config.sample, precision=precision)
        gen = generate(model, args.n, sampling, seed=args.seed, progress=False)
        scores = score_samples(gen, dataset, classifier, seed=args.seed)
        images[precision] = gen.images
        out[precision] = {
            "img_per_s": args.n / gen.seconds,
            "class_accuracy": scores.get("class_accuracy"),
            "classifier_fid": scores["classifier_fid"],
            "classifier_fid_floor": scores["classifier_fid_floor"],
            "invalid_code_fraction": scores["invalid_code_fraction"],
        }
    out["identical_code_fraction"] = float((images["fp32"] == images["bf16"]).double().mean())
    out["identical_image_fraction"] = float(
        (images["fp32"] == images["bf16"]).flatten(1).all(1).double().mean()
    )
    out["torch"] = torch.__version__
    out["load_avg_1min"] = os.getloadavg()[0]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a trained run folder (e.g. runs/demo/train)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    r = run(args)
    print(json.dumps(r) if args.json else json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
