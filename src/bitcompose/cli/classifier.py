"""``bitcompose classifier train``: train (or load from the cache) the in-project CNN classifier of an image data
set and print its held-out accuracy as one JSON object."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bitcompose.cli.errors import CLIError
from bitcompose.cli.types import CACHE_HELP, float_arg, int_arg, json_line

__all__ = ["register"]


def _train(args: argparse.Namespace) -> int:
    from bitcompose.experiments.classifier import cached_classifier

    if args.dataset == "npz" and args.path is None:
        raise CLIError("--dataset npz needs --path FILE.npz")
    start = time.perf_counter()
    clf, entry = cached_classifier(
        args.dataset,
        cache=args.cache,
        path=args.path,
        root=args.root,
        levels=args.levels,
        steps=args.steps,
        seed=args.seed,
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        progress=not args.no_progress,
    )
    info = clf.info
    report = {
        "dataset": info.get("dataset"),
        "num_values": clf.num_values,
        "num_classes": clf.config.num_classes,
        "val_accuracy": info.get("val_accuracy"),
        "num_train": info.get("num_train"),
        "num_val": info.get("num_val"),
        "steps": info.get("steps"),
        "seed": info.get("seed"),
        "train_seconds": info.get("train_seconds"),
        "cached": not entry.fresh,
        "seconds": round(time.perf_counter() - start, 3),
        "path": info.get("path"),
    }
    print(json_line(report))
    return 0


def register(subparsers: Any) -> None:
    """Add the ``classifier`` command group (``train``)."""
    group = subparsers.add_parser("classifier", help="the in-project CNN classifier used for classifier FID")
    sub = group.add_subparsers(dest="classifier_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda a: group.print_help() or 2)

    p = sub.add_parser(
        "train",
        help="train (or load from the cache) the classifier of a data set; prints its held-out accuracy as JSON",
        description=(
            "Train the data set's CNN classifier deterministically on the train part of split(val_fraction, "
            "split_seed), cache it under $BITCOMPOSE_CACHE/classifiers (default ~/.cache/bitcompose/classifiers) "
            "and print a JSON object with val_accuracy."
        ),
    )
    p.add_argument(
        "--dataset", required=True, help="digits | mnist | fashion_mnist | cifar10 | imagenet64 | npz"
    )
    p.add_argument(
        "--root", default=None, help="folder of the data files (cifar10, imagenet64, fashion_mnist)"
    )
    p.add_argument("--path", default=None, help="the .npz file for --dataset npz")
    p.add_argument(
        "--levels", type=int_arg("--levels", 1), default=None, help="requantise pixels to this many values"
    )
    p.add_argument(
        "--steps", type=int_arg("--steps", 1), default=None, help="training steps (default per data set)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    p.add_argument(
        "--val-fraction",
        type=float_arg("--val-fraction", 0.0, 1.0, open_interval=True),
        default=0.1,
        help="held-out fraction (default 0.1)",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
