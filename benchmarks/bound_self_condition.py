"""The study's self-conditioning claim by the likelihood bound, with the self-conditioning input as the variable.

A self-conditioning model trains half its examples with a zero self-conditioning input and half with its own
first-pass estimate, so it defines two denoisers: one pass with a zero input, or two passes (the bound's default,
as in sampling). Each gives a valid bound. This script scores the held-out split of a study data set with both,
for every cached self-conditioning model of the study and beside its sibling trained without self-conditioning,
so that the "without self-conditioning is better" verdict can be read with the input held fixed. Differences are
paired per image (same images, same seed of the time draws); s.e. over the images.

Usage::

    python benchmarks/bound_self_condition.py [--dataset mnist] [--draws 4] [--json]

Only models in the cache are scored (``bitcompose study --dataset D --grid ablations`` trains them); the others
are skipped, saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from bitcompose.experiments.image_models import is_cached
from bitcompose.images.likelihood import image_bpd
from bitcompose.study.cells import TRAIN_STEPS, load_or_train, splits
from bitcompose.study.grid import MODELS, model_config

#: (self-conditioning model, its sibling without self-conditioning)
PAIRS = (("binary", "binary-nosc"), ("binary-eps", "binary-eps-nosc"))


def _paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of ``a − b`` and its standard error."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return mean, math.sqrt(var / len(d))


def _cached(name: str, dataset: str) -> bool:
    train = splits(dataset)[0]
    config = model_config(MODELS[name], dataset, train.image_shape[1], TRAIN_STEPS[dataset])
    return is_cached(config, train, kind="study")


def scores(dataset: str, draws: int) -> dict[str, Any]:
    """Per model the bound (bits/dim ± s.e.) with the first-pass input and, for self-conditioning models, with a
    zero input; per pair the paired differences."""
    held_out = splits(dataset)[1]
    per_image: dict[str, list[float]] = {}
    rows: dict[str, Any] = {}

    def bound(name: str, self_condition: bool | None, label: str) -> None:
        model = load_or_train(MODELS[name], dataset, progress=False)
        r = image_bpd(
            model, held_out.images, held_out.labels, draws=draws, seed=0, self_condition=self_condition
        )
        per_image[label] = r["bpd_per_image"]
        rows[label] = {"bpd": r["bpd"], "bpd_se": r["bpd_se"], "seconds": r["bpd_seconds"]}

    for sc, nosc in PAIRS:
        if not (_cached(sc, dataset) and _cached(nosc, dataset)):
            print(f"skipped: {sc} / {nosc} on {dataset} are not both in the cache", file=sys.stderr)
            continue
        bound(sc, None, f"{sc} (first-pass input)")
        bound(sc, False, f"{sc} (zero input)")
        bound(nosc, None, nosc)
        for label in (f"{sc} (first-pass input)", f"{sc} (zero input)"):
            mean, se = _paired(per_image[label], per_image[nosc])
            rows[f"{label} − {nosc}"] = {"difference": mean, "se": se}
    return {"dataset": dataset, "images": len(held_out.images), "draws": draws, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist", choices=sorted(TRAIN_STEPS))
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = scores(args.dataset, args.draws)
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{out['dataset']}: {out['images']} held-out images, {out['draws']} draws each (bits per pixel-channel)"
    )
    for label, row in out["rows"].items():
        if "difference" in row:
            print(f"  {label}: {row['difference']:+.3f} ± {row['se']:.3f}")
        else:
            print(f"  {label}: {row['bpd']:.3f} ± {row['bpd_se']:.3f} ({row['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
