"""``bitcompose compose``: composition of trained image models.

Examples::

    bitcompose compose classes runs/demo/train --a 1 --b 7 --out docs/results/compose_digits.png
    bitcompose compose objects --k 3 --sampler hmc --param energy --json
    bitcompose compose objects --table --out docs/results/objects
    bitcompose compose prompts --json
    bitcompose compose guidance --dataset mnist --scale 4 --sampler hmc --json
    bitcompose compose guidance --dataset mnist --table --out docs/results/guidance
"""

from __future__ import annotations

import argparse
from typing import Any

from bitcompose.cli.errors import CLIError
from bitcompose.cli.tables import run_table
from bitcompose.cli.types import CACHE_HELP, float_arg, int_arg, json_line, output_folder, output_path
from bitcompose.core.names import MCMC_SAMPLERS, OBJECTS_WEIGHT, SMALL_IMAGE_DATASETS

SAMPLERS_CHOICES = MCMC_SAMPLERS

__all__ = ["register"]


def _samplers(text: str) -> tuple[str, ...]:
    from bitcompose.compose.composite_sampling import SAMPLERS

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SAMPLERS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"--samplers must be a comma-separated subset of {', '.join(SAMPLERS)}"
        )
    return names


def _classes(args: argparse.Namespace) -> int:
    from bitcompose.compose.composite_sampling import MCMCSettings
    from bitcompose.data.images import load_image_dataset
    from bitcompose.experiments.classifier import load_or_train_classifier
    from bitcompose.figures.plots import labelled_rows
    from bitcompose.images.composition import check_classes, compose_classes
    from bitcompose.images.model import load_model

    out = output_path(args.out, overwrite=args.overwrite, suffix=".png")
    report_path = output_path(out.with_suffix(".json"), overwrite=args.overwrite, what="the report")
    loaded = load_model(args.run, ema=not args.no_ema)
    check_classes(loaded, args.a, args.b, args.samplers)
    cfg = loaded.config.data
    dataset = load_image_dataset(cfg.name, root=cfg.root, path=cfg.path, levels=cfg.levels, fit=cfg.fit)
    classifier = load_or_train_classifier(dataset, progress=not args.no_progress)
    mcmc = MCMCSettings(steps_per_level=args.steps_per_level, step=args.step, min_level=args.mcmc_min_level)
    loaded.young_ema_notice()
    rows = compose_classes(
        loaded,
        args.a,
        args.b,
        samplers=args.samplers,
        n=args.n,
        alpha=args.alpha,
        mcmc=mcmc,
        seed=args.seed,
        classifier=classifier,
        progress=not args.no_progress,
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
        "min_level": args.mcmc_min_level,
        "png": str(out),
        "rows": {r.name: r.metrics for r in rows},
    }
    report_path.write_text(json_line(report, indent=2) + "\n")
    print(json_line(report) if args.json else f"{out}\n{report_path}")
    return 0


def _mcmc(args: argparse.Namespace) -> Any:
    from bitcompose.compose.composite_sampling import MCMCSettings

    return MCMCSettings(
        steps_per_level=args.steps_per_level,
        step=args.step,
        min_level=args.mcmc_min_level,
        resample_ess=args.resample_ess,
    )


def _objects(args: argparse.Namespace) -> int:
    from bitcompose.objects.cells import objects_cell
    from bitcompose.objects.table import ObjectsExperiment, TablePlan

    if args.previous is not None and not args.table:
        raise CLIError(
            "--previous goes with --table (it puts an earlier table's numbers beside the new ones)"
        )
    if args.plan != "full" and not args.table:
        raise CLIError("--plan goes with --table")
    if args.table:
        out = output_folder(args.out, example="docs/results/objects")
        make = TablePlan.core if args.plan == "core" else TablePlan
        plan = make(n=args.n or TablePlan.n, mcmc=_mcmc(args))
        experiment = ObjectsExperiment(
            plan, args.seed, args.weight, args.cache, not args.no_progress, previous=args.previous,
            train_steps=args.train_steps,
        )  # fmt: skip
        run_table(experiment, out, json=args.json)
        return 0
    if args.k is None or args.sampler is None:
        raise CLIError("give --k K and --sampler S for one cell, or --table --out DIR")
    png = None if args.out is None else output_path(args.out, overwrite=args.overwrite, suffix=".png")
    res = objects_cell(
        args.k, args.sampler, param=args.param, n=args.n or 300, seed=args.seed, weight=args.weight,
        mcmc=_mcmc(args), train_steps=args.train_steps, cache=args.cache, progress=not args.no_progress,
    )  # fmt: skip
    if png is not None:
        from bitcompose.objects.figures import marked_samples

        marked_samples(
            [
                (
                    f"k={args.k} {args.sampler}",
                    *(res.tensors[key][:12] for key in ("images", "cells", "success")),
                )
            ],
            png,
        )
        res.report["png"] = str(png)
    if args.json:
        print(json_line(res.report))
    else:
        r = res.report
        print(
            f"k={r['k']} {r['sampler']} ({r['param']}): accuracy {r['accuracy']:.3f} ± {r['accuracy_se']:.3f} "
            f"over n={r['n']}, NFE {r['nfe']}, {r['seconds']:.0f} s"
        )
    return 0


def _prompts(args: argparse.Namespace) -> int:
    from bitcompose.objects.prompts import PROMPT_PAIRS, prompt_rows

    png = None if args.out is None else output_path(args.out, overwrite=args.overwrite, suffix=".png")
    rows = prompt_rows(
        pairs=PROMPT_PAIRS, samplers=args.samplers, param=args.param, n=args.n, seed=args.seed,
        weight=args.weight, mcmc=_mcmc(args), train_steps=args.train_steps, cache=args.cache,
        progress=not args.no_progress,
    )  # fmt: skip
    if png is not None:
        from bitcompose.figures.plots import labelled_rows

        labelled_rows(
            [(f"{r.report['prompt']} ({r.report['sampler']})", r.images[:10]) for r in rows], png, 4
        )
    if args.json:
        print(json_line([r.report for r in rows]))
    else:
        for r in (row.report for row in rows):
            print(
                f"{r['prompt']:<40} {r['sampler']:<8} accuracy {r['accuracy']:.3f} ± {r['accuracy_se']:.3f}"
            )
    return 0


def _guidance(args: argparse.Namespace) -> int:
    from bitcompose.guidance.cells import check_cell, guidance_cell
    from bitcompose.guidance.table import GuidanceExperiment, GuidancePlan

    if args.previous is not None and not args.table:
        raise CLIError(
            "--previous goes with --table (it puts an earlier table's numbers beside the new ones)"
        )
    if args.table:
        out = output_folder(args.out, example="docs/results/guidance")
        plan = GuidancePlan(dataset=args.dataset, n=args.n or GuidancePlan.n, mcmc=_mcmc(args))
        experiment = GuidanceExperiment(
            plan,
            args.seed,
            args.cache,
            not args.no_progress,
            previous=args.previous,
            train_steps=args.train_steps,
        )
        run_table(experiment, out, json=args.json)
        return 0
    if args.scale is None or args.sampler is None:
        raise CLIError("give --scale W and --sampler S for one cell, or --table --out DIR")
    n = args.n or 300
    check_cell(args.dataset, args.scale, args.sampler, args.param, n, _mcmc(args))
    png = None if args.out is None else output_path(args.out, overwrite=args.overwrite, suffix=".png")
    res = guidance_cell(
        args.dataset, args.scale, args.sampler, param=args.param, n=n, seed=args.seed, mcmc=_mcmc(args),
        levels=args.levels, train_steps=args.train_steps, cache=args.cache, progress=not args.no_progress,
    )  # fmt: skip
    r = res.report
    if png is not None:
        from bitcompose.figures.plots import labelled_rows

        images, labels = res.tensors["images"], res.tensors["labels"]
        rows = [(f"class {c}", images[labels == c][:10]) for c in range(int(labels.max()) + 1)]
        labelled_rows(rows, png, r["num_values"], title=f"{r['dataset']}, w = {r['scale']:g}, {r['sampler']}")
        r["png"] = str(png)
    if args.json:
        print(json_line(r))
    else:
        print(
            f"{r['dataset']} w={r['scale']:g} {r['sampler']} ({r['param']}): accuracy {r['accuracy']:.3f} ± "
            f"{r['accuracy_se']:.3f}, classifier FID {r['classifier_fid']:.2f} ± {r['classifier_fid_se']:.2f} "
            f"(floor {r['classifier_fid_floor']:.2f}) over n={r['n']}, NFE {r['nfe']}, {r['seconds']:.0f} s"
        )
    return 0


def _add_mcmc_options(p: argparse.ArgumentParser, *, weight: bool = True) -> None:
    from bitcompose.compose.composite_sampling import MCMCSettings  # noqa: PLC0415 (torch only when the command runs)

    p.add_argument("--seed", type=int_arg("--seed", 0), default=0, help="sampling seed (default 0)")
    if weight:
        p.add_argument(
            "--weight",
            type=float_arg("--weight"),
            default=OBJECTS_WEIGHT,
            help=f"guidance weight w per condition ({OBJECTS_WEIGHT:g})",
        )
    p.add_argument(
        "--steps-per-level",
        type=int_arg("--steps-per-level", 1),
        default=MCMCSettings.steps_per_level,
        help=f"MCMC steps per level ({MCMCSettings.steps_per_level})",
    )
    p.add_argument(
        "--step",
        type=float_arg("--step", 0.0, open_interval=True),
        default=MCMCSettings.step,
        help=f"step size / σ_t ({MCMCSettings.step})",
    )
    p.add_argument(
        "--mcmc-min-level",
        type=float_arg("--mcmc-min-level", 0.0, 1.0),
        default=MCMCSettings.min_level,
        help=f"MCMC on the levels >= this fraction of the grid ({MCMCSettings.min_level}: the noisier half)",
    )
    p.add_argument(
        "--resample-ess",
        type=float_arg("--resample-ess", 0.0, 1.0, open_interval=True),
        default=None,
        help="SMC: anneal from noise, resample when ESS < this fraction (energy models only)",
    )
    p.add_argument(
        "--train-steps", type=int_arg("--train-steps", 1), default=None,
        help="training steps of the models trained on first use (default: the recipe's, 4000; fewer to try "
        "the command in minutes: another model, cached apart)",
    )  # fmt: skip
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_classes(sub: Any) -> None:
    """The ``compose classes`` subcommand."""
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
        type=float_arg("--mcmc-min-level", 0.0, 1.0),
        default=0.5,
        help="MCMC on the levels >= this fraction of the grid (0.5: the noisier half)",
    )
    p.add_argument("--seed", type=int_arg("--seed", 0), default=0, help="sampling seed")
    p.add_argument("--out", required=True, help="the grid .png (the .json is written beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    p.add_argument("--no-ema", action="store_true", help="sample the online weights, not the EMA")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_classes)


def _add_objects(sub: Any) -> None:
    """The ``compose objects`` subcommand."""
    p = sub.add_parser(
        "objects",
        help="k objects at requested positions: CFG conjunction of position-conditioned models, any sampler",
        description=(
            "Ask each sample for k objects at random grid cells by composing k position-conditioned Bit Diffusion "
            "models (trained and cached on first use) and score it with the separately trained evaluator. "
            "--table runs the whole experiment into --out (markdown, JSON, figures); it resumes when interrupted."
        ),
    )
    p.add_argument("--k", type=int_arg("--k", 1), default=None, help="objects requested per sample (1-5)")
    p.add_argument("--sampler", choices=SAMPLERS_CHOICES, default=None, help="reverse|ula|mala|uhmc|hmc")
    p.add_argument("--param", choices=("score", "energy"), default="score", help="parameterisation (score)")
    p.add_argument(
        "--n", type=int_arg("--n", 1), default=None, help="samples (default 300, also per cell of --table)"
    )
    p.add_argument("--table", action="store_true", help="run the whole table into --out")
    p.add_argument(
        "--plan", choices=("full", "core"), default="full",
        help="--table: full (also MALA, SMC and the prompt rows) or core (reverse vs HMC of both models at k = 5, "
        "the matched-cost reverse, accuracy vs k)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="--table: the results folder; else a .png of samples")
    p.add_argument(
        "--previous", default=None, metavar="JSON",
        help="--table: an earlier run's objects.json, whose numbers the page shows beside this run's",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out .png")
    _add_mcmc_options(p)
    p.set_defaults(func=_objects)


def _add_prompts(sub: Any) -> None:
    """The ``compose prompts`` subcommand."""
    p = sub.add_parser(
        "prompts",
        help="prompt AND / AND NOT on the object scenes: reverse diffusion vs MCMC",
        description=(
            "Compose a prompt-conditioned Bit Diffusion model (colour + shape of one object): 'A AND B' and "
            "'A AND NOT B' for fixed prompt pairs, scored by the separately trained evaluator; also 'A' alone."
        ),
    )
    p.add_argument("--samplers", type=_samplers, default=("reverse", "hmc"), help="default reverse,hmc")
    p.add_argument("--param", choices=("score", "energy"), default="score", help="parameterisation (score)")
    p.add_argument("--n", type=int_arg("--n", 1), default=300, help="samples per row (default 300)")
    p.add_argument("--out", default=None, help="a .png of the samples")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out .png")
    _add_mcmc_options(p)
    p.set_defaults(func=_prompts)


def _add_guidance(sub: Any) -> None:
    """The ``compose guidance`` subcommand."""
    p = sub.add_parser(
        "guidance",
        help="classifier guidance of an unconditional model by a noise-conditioned classifier: reverse vs MCMC",
        description=(
            "Sample q_t(x)·p(y | x_t, t)^w: an unconditional Bit Diffusion model (score or energy) guided towards "
            "each requested class by a noise-conditioned classifier on its analog bits (both trained and cached "
            "on first use), by reverse diffusion or reverse diffusion plus MCMC; score the samples with a "
            "separately trained evaluation classifier (class accuracy, classifier FID with its real-vs-real floor). "
            "--table runs the whole experiment into --out (markdown, JSON, figures); it resumes when interrupted."
        ),
    )
    p.add_argument("--dataset", choices=SMALL_IMAGE_DATASETS, default="mnist", help="data set (mnist)")
    p.add_argument("--scale", type=float_arg("--scale", 0.0), default=None, help="guidance scale w >= 0")
    p.add_argument("--sampler", choices=SAMPLERS_CHOICES, default=None, help="reverse|ula|mala|uhmc|hmc")
    p.add_argument("--param", choices=("score", "energy"), default="score", help="parameterisation (score)")
    p.add_argument(
        "--n", type=int_arg("--n", 2), default=None, help="samples (default 300, also per table cell)"
    )
    p.add_argument(
        "--levels", type=int_arg("--levels", 2), default=100, help="levels of the annealing grid (100)"
    )
    p.add_argument("--table", action="store_true", help="run the whole table into --out")
    p.add_argument(
        "--out", default=None, help="--table: the results folder; else a .png of samples per class"
    )
    p.add_argument(
        "--previous", default=None, metavar="JSON",
        help="--table: an earlier run's guidance.json, whose numbers the page shows beside this run's",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out .png")
    _add_mcmc_options(p, weight=False)
    p.set_defaults(func=_guidance)


def register(subparsers: Any) -> None:
    """Add the ``compose`` command group."""
    group = subparsers.add_parser("compose", help="compose trained image models (AND / NOT, guidance)")
    sub = group.add_subparsers(dest="compose_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda a: group.print_help() or 2)
    _add_classes(sub)
    _add_objects(sub)
    _add_prompts(sub)
    _add_guidance(sub)
