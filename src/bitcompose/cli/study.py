"""``bitcompose study``: the Bit Diffusion study (the paper's image ablations and the categorical baselines).

Examples::

    bitcompose study --grid quick --out docs/results/bit_study_digits           # digits, ≈ 15 min on 2 cores
    bitcompose study --dataset mnist --grid samplers --out docs/results/bit_study --json
    bitcompose study --dataset mnist --grid full --out docs/results/bit_study   # every part (hours; resumable)
"""

from __future__ import annotations

import argparse
from typing import Any

from bitcompose.cli.tables import run_table
from bitcompose.cli.types import CACHE_HELP, int_arg, output_folder
from bitcompose.core.names import STUDY_DATASETS, STUDY_GRIDS

__all__ = ["register"]


def _model_list(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    if not names:
        raise argparse.ArgumentTypeError("--models needs at least one model name")
    return names


def _study(args: argparse.Namespace) -> int:
    from bitcompose.study.table import StudyExperiment

    out = output_folder(args.out or f"runs/bit_study_{args.dataset}", example="docs/results/bit_study")
    experiment = StudyExperiment(
        args.grid, args.dataset, args.n, args.seed, args.train_steps, args.cache, not args.no_progress,
        args.inception, args.models,
    )  # fmt: skip
    run_table(experiment, out, json=args.json)
    return 0


def register(subparsers: Any) -> None:
    """Add ``study`` to the top-level parser."""
    p = subparsers.add_parser(
        "study",
        help="the Bit Diffusion study: encodings, losses, self-conditioning, samplers, td, baselines",
        description=(
            "Train (cached) and evaluate a grid of class-conditional models on small real discrete images: "
            "analog-bit encodings x losses, self-conditioning on/off, x0 vs eps, DDIM / DDPM / DPM-Solver++(2M) x "
            "steps, td, Appendix G, and the absorbing-state and continuous-pixel baselines. Each cell reports the "
            "classifier FID with its real-vs-real floor, class accuracy, invalid codes, NFE and seconds. --out "
            "collects the cells of every grid run there (resumable) and writes bit_study.md, bit_study.json and "
            "the figures."
        ),
    )
    p.add_argument("--dataset", choices=STUDY_DATASETS, default="digits", help="data set (digits)")
    p.add_argument("--grid", choices=STUDY_GRIDS, default="quick", help="which part of the study (quick)")
    p.add_argument(
        "--models", type=_model_list, default=None,
        help="only the cells of these models of the grid, comma-separated (e.g. gray,random,onehot of encodings)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="the results folder (default runs/bit_study_DATASET)")
    p.add_argument("--n", type=int_arg("--n", 2), default=500, help="samples per cell (500)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (0)")
    p.add_argument(
        "--train-steps", type=int_arg("--train-steps", 1), default=None,
        help="optimiser steps per model (default: 1500 for digits, 4000 for mnist / fashion_mnist)",
    )  # fmt: skip
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument(
        "--inception", action="store_true",
        help="also the Inception FID and its floor (the fid extra; ~1 min per cell and ~10 min once on 2 cores)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the grid's rows as one JSON list")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_study)
