"""``bitcompose toy2d``: the 2-D composition benchmark (one cell as JSON, or the full table)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from bitcompose.cli.errors import CLIError

__all__ = ["register"]


def _positive_int(name: str, minimum: int = 1):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be >= {minimum}, got {value}")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``toy2d`` command."""
    from bitcompose.toy2d.run import DEFAULT_TRAIN_STEPS, SAMPLERS
    from bitcompose.toy2d.tasks import TASKS
    from bitcompose.toy2d.train import PARAMS

    p = subparsers.add_parser(
        "toy2d",
        help="2-D composition benchmark (product / mixture / negation) with exact targets",
        description=(
            "Train (or load from the cache) the 2-D component models, compose them and sample with reverse "
            "diffusion or annealed MCMC; print the metrics as one JSON object, or run every cell with --table."
        ),
    )
    p.add_argument("--task", choices=sorted(TASKS), default="product")
    p.add_argument("--param", choices=PARAMS, default="energy", help="score (ε) or energy parameterisation")
    p.add_argument("--sampler", choices=SAMPLERS, default="hmc")
    p.add_argument("--n", type=_positive_int("--n", 2), default=2000, help="number of samples (default 2000)")
    p.add_argument("--seed", type=_positive_int("--seed", 0), default=0, help="sampling seed")
    p.add_argument(
        "--train-steps",
        type=_positive_int("--train-steps", 0),
        default=DEFAULT_TRAIN_STEPS,
        help=f"training steps per model (default {DEFAULT_TRAIN_STEPS}; the paper's setting is 15000)",
    )
    p.add_argument("--train-seed", type=_positive_int("--train-seed", 0), default=0, help="training seed")
    p.add_argument(
        "--cache", default=None, help="model cache dir (default $BITCOMPOSE_CACHE/toy2d or ~/.cache/...)"
    )
    p.add_argument("--no-cache", action="store_true", help="retrain without reading or writing the cache")
    p.add_argument("--json", action="store_true", help="print compact JSON (one line)")
    p.add_argument("--progress", action="store_true", help="show progress bars on stderr")
    p.add_argument("--table", action="store_true", help="run every task x param x sampler; write --out")
    p.add_argument("--out", default="docs/results", help="output dir of --table (toy2d.md, toy2d.png)")
    p.add_argument("--workers", type=_positive_int("--workers"), default=2, help="processes for --table")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.table:
        from bitcompose.toy2d.table import run_table, summary_checks

        if args.no_cache:
            raise CLIError(
                "--table always uses the model cache; drop --no-cache or point --cache to a new dir"
            )
        command = "bitcompose " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None
        rows = run_table(
            args.out,
            n=args.n,
            seed=args.seed,
            train_steps=args.train_steps,
            train_seed=args.train_seed,
            cache=args.cache,
            workers=args.workers,
            command=command,
        )
        for line in summary_checks(rows):
            print(line)
        print(f"wrote {args.out}/toy2d.md and {args.out}/toy2d.png")
        return 0
    from bitcompose.toy2d.run import run_cell

    result = run_cell(
        args.task,
        args.param,
        args.sampler,
        n=args.n,
        seed=args.seed,
        train_steps=args.train_steps,
        train_seed=args.train_seed,
        cache=args.cache,
        use_cache=not args.no_cache,
        progress=args.progress,
    )
    print(json.dumps(result.metrics, indent=None if args.json else 2))
    return 0
