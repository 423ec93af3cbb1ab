"""``bitcompose compose``: composition of trained image models.

Examples::

    bitcompose compose classes runs/demo/train --a 1 --b 7 --out docs/results/compose_digits.png
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bitcompose.cli.errors import CLIError
from bitcompose.cli.types import float_arg, int_arg, json_line

__all__ = ["register"]


def _samplers(text: str) -> tuple[str, ...]:
    from bitcompose.images.composition import SAMPLERS

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SAMPLERS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"--samplers must be a comma-separated subset of {', '.join(SAMPLERS)}"
        )
    return names


def _classes(args: argparse.Namespace) -> int:
    from bitcompose.data.images import load_image_dataset
    from bitcompose.figures.plots import labelled_rows
    from bitcompose.images.classifier import load_or_train_classifier
    from bitcompose.images.composition import compose_classes
    from bitcompose.images.model import load_model

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must end in .png, got {args.out!r}")
    loaded = load_model(args.run)
    cfg = loaded.config.data
    dataset = load_image_dataset(cfg.name, root=cfg.root, path=cfg.path, levels=cfg.levels)
    classifier = load_or_train_classifier(dataset, progress=not args.no_progress)
    rows = compose_classes(
        loaded,
        args.a,
        args.b,
        samplers=args.samplers,
        n=args.n,
        alpha=args.alpha,
        steps_per_level=args.steps_per_level,
        step=args.step,
        mcmc_min_level=args.mcmc_min_level,
        seed=args.seed,
        classifier=classifier,
    )
    title = f"{loaded.spec.name}: class {args.a} AND/NOT class {args.b} (seed {args.seed})"
    labelled_rows([(r.name, r.images[: args.show]) for r in rows], out, loaded.spec.num_values, title=title)
    report: dict[str, Any] = {
        "run": str(loaded.path),
        "a": args.a,
        "b": args.b,
        "alpha": args.alpha,
        "n": args.n,
        "seed": args.seed,
        "steps_per_level": args.steps_per_level,
        "step": args.step,
        "mcmc_min_level": args.mcmc_min_level,
        "png": str(out),
        "rows": {r.name: r.metrics for r in rows},
    }
    out.with_suffix(".json").write_text(json_line(report, indent=2) + "\n")
    print(json_line(report) if args.json else f"{out}\n{out.with_suffix('.json')}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``compose`` command group."""
    group = subparsers.add_parser("compose", help="compose trained image models (AND / NOT, guidance)")
    sub = group.add_subparsers(dest="compose_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda a: group.print_help() or 2)

    p = sub.add_parser(
        "classes",
        help="class A AND class B, A NOT B of a class-conditional model: reverse diffusion vs annealed MCMC",
        description=(
            "Sample class A, class B, Product(A, B) and Negation(A, B) of a trained class-conditional image "
            "model with reverse diffusion and annealed MCMC; write a labelled grid PNG and a JSON beside it "
            "(NFE, seconds, acceptance, and the evaluation classifier's share of A and B per row)."
        ),
    )
    p.add_argument("run", help="run folder (with checkpoint/) of a class-conditional model")
    p.add_argument("--a", type=int_arg("--a", 0), required=True, help="class A")
    p.add_argument("--b", type=int_arg("--b", 0), required=True, help="class B")
    p.add_argument("--samplers", type=_samplers, default=("reverse", "hmc"), help="default reverse,hmc")
    p.add_argument("--n", type=int_arg("--n", 1), default=100, help="samples per row (default 100)")
    p.add_argument("--show", type=int_arg("--show", 1), default=12, help="samples shown per row (default 12)")
    p.add_argument("--alpha", type=float_arg("--alpha", 0.0), default=0.5, help="negation strength (0.5)")
    p.add_argument(
        "--steps-per-level", type=int_arg("--steps-per-level", 1), default=2, help="MCMC steps per level (2)"
    )
    p.add_argument(
        "--step", type=float_arg("--step", 0.0, open_interval=True), default=0.2, help="step size / σ_t (0.2)"
    )
    p.add_argument(
        "--mcmc-min-level",
        type=int_arg("--mcmc-min-level", 0),
        default=50,
        help="MCMC at levels >= this (50)",
    )
    p.add_argument("--seed", type=int_arg("--seed", 0), default=0, help="sampling seed")
    p.add_argument("--out", required=True, help="the grid .png (the .json is written beside it)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_classes)
