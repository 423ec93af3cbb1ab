"""``bitcompose toy2d``: the 2-D composition benchmark (one cell as JSON, or the full table)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bitcompose.cli.errors import CLIError
from bitcompose.cli.tables import run_table
from bitcompose.cli.types import CACHE_HELP, float_arg, int_arg, json_line, output_folder, output_path

if TYPE_CHECKING:
    from bitcompose.toy2d.run import CellOptions

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``toy2d`` command."""
    p = subparsers.add_parser(
        "toy2d",
        help="2-D composition benchmark (product / mixture / negation) with exact targets",
        description=(
            "Train (or load from the cache) the 2-D component models, compose them and sample with reverse "
            "diffusion or annealed MCMC; print the metrics as one JSON object, or run every cell with --table."
        ),
    )
    _cell_arguments(p)
    _training_arguments(p)
    _sampler_arguments(p)
    _output_arguments(p)
    p.set_defaults(func=_run)


def _cell_arguments(p: argparse.ArgumentParser) -> None:
    from bitcompose.toy2d.run import CELL_N, CELL_PARAMS, SAMPLERS, TABLE_N
    from bitcompose.toy2d.tasks import TASKS

    p.add_argument("--task", choices=sorted(TASKS), default="product")
    p.add_argument(
        "--param",
        choices=CELL_PARAMS,
        default="energy",
        help="score (ε) or energy networks, or exact (closed-form component densities, no training)",
    )
    p.add_argument("--sampler", choices=SAMPLERS, default="hmc")
    p.add_argument(
        "--n",
        type=int_arg("--n", 2),
        default=None,
        help=f"number of samples (default {CELL_N} for one cell, {TABLE_N} per cell with --table)",
    )
    p.add_argument("--seed", type=int_arg("--seed", 0), default=0, help="sampling seed")


def _training_arguments(p: argparse.ArgumentParser) -> None:
    from bitcompose.toy2d.run import DEFAULT_TRAIN_BATCH, DEFAULT_TRAIN_STEPS

    p.add_argument(
        "--train-steps",
        type=int_arg("--train-steps", 0),
        default=DEFAULT_TRAIN_STEPS,
        help=f"training steps per model (default {DEFAULT_TRAIN_STEPS}; the paper's setting is 15000)",
    )
    p.add_argument(
        "--train-batch",
        type=int_arg("--train-batch", 1),
        default=DEFAULT_TRAIN_BATCH,
        help=f"training batch (fresh samples per step; default {DEFAULT_TRAIN_BATCH}; the paper's is 1000)",
    )
    p.add_argument("--train-seed", type=int_arg("--train-seed", 0), default=0, help="training seed")
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--no-cache", action="store_true", help="retrain without reading or writing the cache")
    p.add_argument(
        "--schedule",
        choices=("cosine", "linear"),
        default="cosine",
        help="the T=100 beta schedule: cosine (the released notebook) or linear (Ho et al.)",
    )


def _sampler_arguments(p: argparse.ArgumentParser) -> None:
    from bitcompose.toy2d.run import STEPS_PER_LEVEL

    p.add_argument(
        "--no-final-step",
        action="store_true",
        help="score annealed-MCMC samples at level 0 instead of after the final noise-free step to the data",
    )
    p.add_argument(
        "--mixture-sharpen",
        type=float_arg("--mixture-sharpen", 0.0, open_interval=True),
        default=None,
        help="mixture task: the notebook's heuristic sharpening of raw energies (3.5); default: exact mixture",
    )
    p.add_argument(
        "--steps-per-level",
        type=int_arg("--steps-per-level", 1),
        default=STEPS_PER_LEVEL,
        help=f"MCMC steps per noise level (default {STEPS_PER_LEVEL}, the notebook's)",
    )
    p.add_argument(
        "--resample-ess",
        type=float_arg("--resample-ess", 0.0, 1.0, open_interval=True),
        default=None,
        help="extension: resample annealed-MCMC particles by their importance weights when the ESS falls below "
        "this fraction of n (energy/exact models; default off = the paper's samplers)",
    )


def _output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print compact JSON (one line)")
    p.add_argument("--progress", action="store_true", help="show progress bars on stderr")
    p.add_argument("--table", action="store_true", help="run every task x param x sampler; write --out")
    p.add_argument(
        "--out",
        default=None,
        help="output folder: --table writes toy2d.md, toy2d.png and its resumable cells there (required); one "
        "cell writes toy2d_TASK_PARAM_SAMPLER.png and .json when given",
    )
    p.add_argument("--overwrite", action="store_true", help="one cell: replace its existing .png and .json")
    p.add_argument("--tasks", default=None, help="--table: comma-separated subset of tasks (default all)")
    p.add_argument(
        "--params", default=None, help="--table: comma-separated subset of params (default all three)"
    )
    p.add_argument(
        "--samplers", default=None, help="--table: comma-separated subset of samplers (default all)"
    )
    p.add_argument("--workers", type=int_arg("--workers", 1), default=2, help="processes for --table")


def _subset(text: str | None, allowed: tuple[str, ...], flag: str) -> tuple[str, ...]:
    if text is None:
        return allowed
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    bad = [item for item in items if item not in allowed]
    if bad or not items:
        raise CLIError(f"{flag} takes a comma-separated subset of {', '.join(allowed)}; got {text!r}")
    return tuple(item for item in allowed if item in items)


def _options(args: argparse.Namespace, n: int) -> CellOptions:
    """The settings ``run_cell`` and the table share (samples, sampling seed, training, sampler options)."""
    from bitcompose.toy2d.run import CellOptions

    return CellOptions(
        n=n if args.n is None else args.n,
        seed=args.seed,
        train_steps=args.train_steps,
        train_seed=args.train_seed,
        train_batch=args.train_batch,
        schedule=args.schedule,
        cache=args.cache,
        use_cache=not args.no_cache,
        final_step=not args.no_final_step,
        mixture_sharpen=args.mixture_sharpen,
        steps_per_level=args.steps_per_level,
        resample_ess=args.resample_ess,
    )


def _check_options(args: argparse.Namespace) -> None:
    """Options that would be ignored, or an untrained network evaluated, are refused before any work."""
    if args.table:
        return
    if args.resample_ess is not None and args.sampler == "reverse":
        raise CLIError("--resample-ess resamples annealed-MCMC particles; --sampler reverse has none")
    if args.mixture_sharpen is not None and args.task != "mixture":
        raise CLIError(f"--mixture-sharpen applies to --task mixture, not {args.task}")
    if args.train_steps == 0 and args.param != "exact":
        raise CLIError(
            "--train-steps 0 would evaluate untrained networks; give a positive --train-steps, or --param exact "
            "(closed-form components, no training)"
        )


def _run(args: argparse.Namespace) -> int:
    from bitcompose.toy2d.run import CELL_N, CELL_PARAMS, SAMPLERS, TABLE_N, run_cell

    _check_options(args)
    if args.table:
        from bitcompose.toy2d.table import Toy2dExperiment, summary_checks
        from bitcompose.toy2d.tasks import TASKS

        if args.no_cache:
            raise CLIError(
                "--table always uses the model cache; drop --no-cache or point --cache to a new dir"
            )
        experiment = Toy2dExperiment(
            _options(args, TABLE_N),
            tasks=_subset(args.tasks, tuple(TASKS), "--tasks"),
            params=_subset(args.params, CELL_PARAMS, "--params"),
            samplers=_subset(args.samplers, SAMPLERS, "--samplers"),
            workers=args.workers,
        )
        run = run_table(
            experiment, output_folder(args.out, example="docs/results"), json=False, workers=args.workers
        )
        for line in summary_checks(run.rows):
            print(line)
        return 0
    outputs = None
    if args.out is not None:
        folder = Path(args.out)
        if folder.exists() and not folder.is_dir():
            raise CLIError(
                f"--out {folder} is a file; one cell writes toy2d_TASK_PARAM_SAMPLER.png/.json into a folder"
            )
        stem = folder / f"toy2d_{args.task}_{args.param}_{args.sampler}"
        outputs = [output_path(stem.with_suffix(x), overwrite=args.overwrite) for x in (".png", ".json")]
    result = run_cell(args.task, args.param, args.sampler, _options(args, CELL_N), progress=args.progress)
    if outputs is not None:
        from bitcompose.toy2d.report import render_figure

        png, report = outputs
        render_figure([(result.report, result.tensors.get("samples"))], png)
        report.write_text(json_line(result.report, indent=2) + "\n")
        print(f"wrote {png} and {report}", file=sys.stderr)
    print(json_line(result.report, indent=None if args.json else 2))
    return 0
