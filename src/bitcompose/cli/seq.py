"""``bitcompose seq ...``: train sequence models on any file of sequences (or MOSES), sample them, evaluate."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bitcompose.cli.errors import CLIError
from bitcompose.cli.types import CACHE_HELP, float_arg, int_arg, json_line, output_path

__all__ = ["register"]


def _train(args: argparse.Namespace) -> int:
    from bitcompose.seq.config import preset
    from bitcompose.seq.data import MOSES, data_fingerprint, read_lines
    from bitcompose.seq.train import train_or_load, train_seq

    if args.data != MOSES:
        read_lines(args.data)  # a missing, empty or binary file is refused before anything is written
    else:
        data_fingerprint(MOSES)
        from bitcompose.seq.data import moses_file

        moses_file("train.csv.gz")
    overrides: dict[str, Any] = {"data": args.data, "model": args.model, "seed": args.seed}
    for name in ("steps", "tokenizer", "max_len", "batch_size", "num_train", "condition"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    run = preset(args.preset, **overrides)
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out must be a run folder, but {args.out} is a file")
    t0 = time.perf_counter()
    if args.out is not None:
        run_dir = train_seq(run, args.out, progress=not args.no_progress)
    else:
        run_dir = train_or_load(run, cache=args.cache, progress=not args.no_progress)
    print(
        f"{run.model} sequence model ({run.preset}, {run.steps} steps, seed {run.seed}) on {args.data}: "
        f"{run_dir} [{time.perf_counter() - t0:.1f} s]"
    )
    return 0


def _write_lines(out: Path, texts: list[str]) -> None:
    """One sequence per line, written atomically (through a temporary file beside ``out``)."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("".join(f"{t}\n" for t in texts))
    tmp.replace(out)


def _load(run_dir: str) -> Any:
    from bitcompose.seq.model import load_seq_model

    if not Path(run_dir).exists():
        raise CLIError(f"run folder not found: {run_dir}")
    return load_seq_model(run_dir)


def _sample(args: argparse.Namespace) -> int:
    import torch

    out = output_path(args.out, overwrite=args.overwrite, suffix=".txt", protect=Path(args.run_dir))
    model = _load(args.run_dir)
    if model.kind == "masked" and (args.sampler != "ddim" or args.td):
        raise CLIError("--sampler and --td apply to the bits model; this run is the absorbing-state model")
    if args.td >= args.steps:
        raise CLIError(f"--td {args.td:g} must be below --steps {args.steps}")
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    ids, invalid = model.generate(
        args.n, steps=args.steps, sampler=args.sampler, td=args.td, generator=gen, return_invalid=True
    )
    seconds = time.perf_counter() - t0
    texts = model.tokenizer.decode(ids)
    _write_lines(out, texts)
    nfe = args.steps  # one network evaluation per step for every sampler here (DPM-Solver++(2M) is multistep)
    row = {
        "run": str(model.path),
        "model": model.kind,
        "n": args.n,
        "steps": args.steps,
        "sampler": args.sampler if model.kind == "bits" else "ancestral",
        "td": args.td,
        "nfe": nfe,
        "seed": args.seed,
        "seconds": round(seconds, 2),
        "invalid_codes": float(invalid.float().mean()),
        "empty": sum(not t for t in texts) / len(texts),
        "out": str(out),
    }
    if args.json:
        print(json_line(row))
    else:
        print(f"wrote {args.n} sequences to {out} ({nfe} network evaluations each, {seconds:.1f} s)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from bitcompose.seq.data import MOSES, read_lines
    from bitcompose.seq.evaluate import evaluate_sequences

    sequences = read_lines(args.file, allow_blank=True)
    model = None if args.run is None else _load(args.run)
    reference = args.reference or (MOSES if model is None else model.run.data)
    if args.floor_n is not None and reference != MOSES:
        raise CLIError("--floor-n applies to --reference moses")
    row = evaluate_sequences(
        sequences, reference=reference, model=model, seed=args.seed, floor_n=args.floor_n
    )
    if args.json:
        print(json_line(row))
    else:
        for key, value in row.items():
            if key == "floor":
                print("floor (reference sequences, same computation): " + ", ".join(
                    f"{k} {v:.3f}" for k, v in value.items() if isinstance(v, float)
                ))  # fmt: skip
            elif isinstance(value, float):
                print(f"{key:12s} {value:.4f}")
    return 0


def _table(args: argparse.Namespace) -> int:
    from bitcompose.cli.types import output_folder
    from bitcompose.seq.data import moses_file
    from bitcompose.seq.table import run_molecules

    out = output_folder(args.out, example="docs/results/molecules")
    moses_file("test_stats.npz")
    from bitcompose.seq.molecules import missing_rdkit

    why = missing_rdkit()
    if why is not None:
        raise CLIError(why)
    command = f"bitcompose seq table --out {args.out}"
    if args.n != 1000:
        command += f" --n {args.n}"
    if args.seed:
        command += f" --seed {args.seed}"
    if args.preset != "small":
        command += f" --preset {args.preset}"
    run, _ = run_molecules(
        out, preset_name=args.preset, n=args.n, seed=args.seed, cache=args.cache, command=command,
        progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"wrote {out / 'molecules.md'} ({len(run.computed)} cells computed, {run.meta['wall_minutes']:.1f} min)"
    )
    return 0


def _compose(args: argparse.Namespace) -> int:
    import torch

    from bitcompose.compose.composite_sampling import MCMCSettings
    from bitcompose.seq.compose import compose_molecules
    from bitcompose.seq.molecules import missing_rdkit
    from bitcompose.seq.properties import parse_request

    request = parse_request(args.request)  # a bad request is refused before the model is loaded
    mcmc = MCMCSettings(steps_per_level=args.steps_per_level, step=args.step, min_level=args.min_level)
    why = missing_rdkit()
    if why is not None:
        raise CLIError(why)
    out = None if args.out is None else output_path(args.out, overwrite=args.overwrite, suffix=".txt")
    model = _load(args.run_dir)
    guide = None
    if args.guide:
        from bitcompose.seq.guide import load_or_train_guide

        guide = load_or_train_guide(
            model, steps=args.guide_steps, cache=args.cache, progress=not args.no_progress
        )
    texts, report = compose_molecules(
        model, request, args.n, sampler=args.sampler, weight=args.weight, levels=args.levels, mcmc=mcmc,
        generator=torch.Generator().manual_seed(args.seed), guide=guide, progress=not args.no_progress,
    )  # fmt: skip
    if guide is not None:
        report["guide"] = guide.info
    report["seed"] = args.seed
    if out is not None:
        _write_lines(out, texts)
        report["out"] = str(out)
    if args.json:
        print(json_line(report))
    else:
        print(
            f"{report['request']} by {report['sampler']}: {report['satisfied']:.3f} ± {report['satisfied_se']:.3f} "
            f"valid and satisfying (valid {report['valid']:.3f}; n = {args.n}, NFE {report['nfe']}, "
            f"{report['seconds']:.1f} s)"
        )
    return 0


def _add_compose(sub: Any) -> None:
    from bitcompose.compose.composite_sampling import SAMPLERS
    from bitcompose.seq.properties import ATTRIBUTES

    p = sub.add_parser(
        "compose",
        help="sample a composed property request (e.g. 'qed:high AND NOT logp:2-3') of a conditioned model",
        description=(
            "Sample molecules of a property-conditioned bits model (seq train --condition properties) under a "
            "request of attributes joined by AND, each optionally NOT: the Composable-Diffusion conjunction of the "
            "model's conditionals (or, with --guide, classifier guidance by a property predictor), by reverse "
            "diffusion or annealed MCMC (trapezoid Metropolis tests). Reports the "
            "share of molecules that are valid AND satisfy every term (RDKit's QED and logP), with its s.e., NFE "
            f"and seconds. Attributes: {', '.join(a.name for a in ATTRIBUTES)}."
        ),
    )
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--request", required=True, help="e.g. 'qed:high AND logp:2-3'")
    p.add_argument("--sampler", choices=SAMPLERS, default="reverse")
    p.add_argument("--n", type=int_arg("--n", 1), default=300, help="molecules (300)")
    p.add_argument(
        "--weight", type=float_arg("--weight", 0.0), default=1.0, help="weight w of every term (1)"
    )
    p.add_argument("--levels", type=int_arg("--levels", 1), default=100, help="noise levels (100)")
    p.add_argument(
        "--steps-per-level", type=int_arg("--steps-per-level", 1), default=1, help="MCMC steps (1)"
    )
    p.add_argument(
        "--step",
        type=float_arg("--step", 0.0, open_interval=True),
        default=0.2,
        help="MCMC step / sigma_t (0.2)",
    )
    p.add_argument(
        "--min-level", type=float_arg("--min-level", 0.0, 1.0), default=0.5, help="MCMC on levels above"
    )
    p.add_argument(
        "--guide",
        action="store_true",
        help="classifier guidance by a noise-conditioned property predictor (trained and cached on first use) "
        "instead of the product of the model's conditionals; the model may be unconditional",
    )
    p.add_argument("--guide-steps", type=int_arg("--guide-steps", 1), default=None, help="its training steps")
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="text file for the molecules, one per line (never replaced)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_compose)


def _add_train(sub: Any) -> None:
    from bitcompose.seq.config import DEFAULT_PRESET, PRESETS

    p = sub.add_parser(
        "train",
        help="train a sequence model on MOSES or a file of sequences",
        description=(
            "Train Bit Diffusion (--model bits) or the absorbing-state baseline (--model masked) on token sequences: "
            "--data moses (the MOSES SMILES benchmark) or a text file with one sequence per line (a seeded 10 %% of "
            "its lines is held out). Without --out the run is cached by its configuration and data; an interrupted "
            "run resumes."
        ),
    )
    p.add_argument("--data", required=True, help="moses, or a text file with one sequence per line")
    p.add_argument("--out", default=None, help="run folder (default: the cache folder of this configuration)")
    p.add_argument("--model", choices=("bits", "masked"), default="bits")
    p.add_argument(
        "--preset", default=DEFAULT_PRESET, help=f"{' | '.join(PRESETS)} (default {DEFAULT_PRESET})"
    )
    p.add_argument("--tokenizer", choices=("smiles", "chars", "sentencepiece"), default=None)
    p.add_argument("--steps", type=int_arg("--steps", 1), default=None, help="override the preset's steps")
    p.add_argument("--batch-size", type=int_arg("--batch-size", 1), default=None)
    p.add_argument(
        "--max-len", type=int_arg("--max-len", 1), default=None, help="positions (default: longest + 1)"
    )
    p.add_argument(
        "--num-train", type=int_arg("--num-train", 1), default=None, help="use the first N training lines"
    )
    p.add_argument(
        "--condition",
        choices=("none", "properties"),
        default=None,
        help="properties: label each molecule with a QED or logP bin (for seq compose; bits model, SMILES)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train, on_interrupt="the run folder keeps its last checkpoint; run again to resume")


def _add_sample(sub: Any) -> None:
    from bitcompose.diffusion.options import SAMPLERS

    p = sub.add_parser("sample", help="sample N sequences of a trained model into a text file")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--n", type=int_arg("--n", 1), default=1000)
    p.add_argument("--out", required=True, help="text file, one sequence per line (never replaced)")
    p.add_argument("--steps", type=int_arg("--steps", 1), default=100, help="network evaluations (100)")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="bits model only (ddim)")
    p.add_argument("--td", type=float_arg("--td", 0.0), default=0.0, help="time difference in steps (bits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="print the settings and timings as one JSON line")
    p.set_defaults(func=_sample)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="MOSES metrics (molecules) or n-gram statistics (text) of a file of sequences",
        description=(
            "Score a file of sequences (one per line). --reference moses: MOSES's metrics (valid, unique@1k, "
            "unique@10k, novelty, FCD/Test, SNN/Test, Frag/Test, Scaf/Test, IntDiv) beside the same computation on "
            "MOSES training molecules (the floor). --reference FILE: distinct n-grams and novelty beside the "
            "reference's own. --run RUN adds the model's likelihood bound on the file's sequences."
        ),
    )
    p.add_argument("file", metavar="FILE.txt")
    p.add_argument("--reference", default=None, help="moses (default) or a text file of real sequences")
    p.add_argument("--run", default=None, help="a sequence run: its likelihood bound on the file's sequences")
    p.add_argument(
        "--floor-n",
        type=int_arg("--floor-n", 2),
        default=None,
        help="molecules of the floor (default: as many)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_evaluate)


def _add_table(sub: Any) -> None:
    from bitcompose.seq.config import DEFAULT_PRESET

    p = sub.add_parser(
        "table",
        help="the MOSES results page: both models trained (or loaded), sampled and scored",
        description=(
            "Train (or load from the cache) the bits and the absorbing-state model of a preset on MOSES, sample "
            "each at several samplers and step counts, score every sample with MOSES's metrics beside the floor of "
            "real molecules, and write molecules.md, molecules.json and molecules.png into --out (resumable)."
        ),
    )
    p.add_argument("--out", required=True, help="results folder (e.g. docs/results/molecules)")
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--n", type=int_arg("--n", 2), default=1000, help="molecules per cell (1000)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_table, on_interrupt="finished cells are kept in --out; run again to resume")


def register(subparsers: Any) -> None:
    """Add the ``seq`` command group (train, sample, evaluate, table, compose)."""
    group = subparsers.add_parser("seq", help="Bit Diffusion on token sequences (text, SMILES molecules)")
    sub = group.add_subparsers(dest="seq_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda a: group.print_help() or 2)
    _add_train(sub)
    _add_sample(sub)
    _add_evaluate(sub)
    _add_table(sub)
    _add_compose(sub)
