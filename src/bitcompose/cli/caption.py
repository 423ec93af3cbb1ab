"""``bitcompose caption ...``: train, sample, evaluate and sweep the captioning models."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bitcompose.cli.errors import CLIError
from bitcompose.cli.types import CACHE_HELP, float_arg, int_arg, json_line, output_path

__all__ = ["register"]


def _check_run_dir(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"run folder not found: {p}")
    return p


#: The decoding options of ``caption sample`` / ``evaluate`` and which captioner each applies to.
_DIFFUSION_ONLY, _AR_ONLY = ("steps", "td", "decode"), ("beam",)
_DECODE_DEFAULTS: dict[str, Any] = {"steps": 10, "td": 0.0, "decode": "bits", "beam": 1}


def _decoding(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The decoding settings for a ``kind`` captioner; an option given for the other kind is refused (it would be
    ignored)."""
    foreign = _AR_ONLY if kind == "diffusion" else _DIFFUSION_ONLY
    given = [f"--{name}" for name in foreign if getattr(args, name) is not None]
    if given:
        other = "autoregressive" if kind == "diffusion" else "diffusion"
        raise CLIError(f"{', '.join(given)} applies to the {other} captioner; this run is a {kind} captioner")
    settings = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in _DECODE_DEFAULTS.items()}
    if kind == "diffusion" and float(settings["td"]) >= int(settings["steps"]):
        raise CLIError(f"--td {settings['td']:g} must be below --steps {settings['steps']}")
    return settings


def _train(args: argparse.Namespace) -> int:
    from bitcompose.captioning.config import preset
    from bitcompose.captioning.train import train_captioner, train_or_load

    overrides: dict[str, Any] = {"model": args.model, "seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    run = preset(args.preset, **overrides)
    t0 = time.perf_counter()
    if args.out is not None:
        run_dir = train_captioner(run, args.out, progress=not args.no_progress, cache=args.cache)
    else:
        run_dir = train_or_load(run, cache=args.cache, progress=not args.no_progress)
    print(
        f"{run.model} captioner ({run.preset}, {run.steps} steps, seed {run.seed}): {run_dir} "
        f"[{time.perf_counter() - t0:.1f} s]"
    )
    return 0


def _sample(args: argparse.Namespace) -> int:
    import torch

    from bitcompose.captioning.data import load_splits
    from bitcompose.captioning.model import load_captioner
    from bitcompose.captioning.sheet import caption_sheet

    out = None if args.out is None else output_path(args.out, overwrite=args.overwrite, suffix=".png")
    cap = load_captioner(_check_run_dir(args.run_dir))
    decoding = _decoding(args, cap.kind)
    split = load_splits(cap.run)[args.split]
    if args.n > len(split):
        raise CLIError(f"--n {args.n} is more than the {len(split)} images of the {args.split} split")
    data = split.head(args.n)
    gen = torch.Generator().manual_seed(args.seed)
    captions = cap.caption(data.images, generator=gen, **decoding)
    for image_id, text in zip(data.ids, captions, strict=True):
        print(f"{image_id}\t{text}")
    if out is not None:
        path = caption_sheet(data.images, captions, out, ids=data.ids)
        print(f"wrote {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from bitcompose.captioning.data import load_splits
    from bitcompose.captioning.evaluate import evaluate_captioner
    from bitcompose.captioning.model import load_captioner

    cap = load_captioner(_check_run_dir(args.run_dir))
    decoding = _decoding(args, cap.kind)
    data = load_splits(cap.run)[args.split]
    scores = evaluate_captioner(cap, data, seed=args.seed, **decoding)
    row = {
        "model": cap.kind,
        "steps": decoding["steps"] if cap.kind == "diffusion" else cap.net_config.max_len,
        "td": decoding["td"] if cap.kind == "diffusion" else None,
        **scores,
    }
    if args.json:
        print(json_line(row))
    else:
        print(
            f"{cap.kind} on {args.split} ({len(data)} images): BLEU-4 {100 * scores['bleu4']:.1f}  "
            f"CIDEr-D {scores['cider']:.3f}  ROUGE-L {100 * scores['rouge_l']:.1f}"
        )
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from bitcompose.captioning.sweep import run_sweep, table3_rows

    overrides = {} if args.train_steps is None else {"steps": args.train_steps}
    command = f"bitcompose caption sweep --preset {args.preset} --seed {args.seed}"
    if args.select_split != "val":
        command += f" --select-split {args.select_split}"
    if args.train_steps is not None:
        command += f" --train-steps {args.train_steps}"
    if args.out is not None:
        command += f" --out {args.out}"
    result = run_sweep(
        args.preset, out=args.out, cache=args.cache, seed=args.seed, select_split=args.select_split,
        command=command, progress=not args.no_progress, **overrides,
    )  # fmt: skip
    if args.json:
        print(json_line(result.rows))
    else:
        for r in table3_rows(result.rows, "test", args.select_split):
            td = "-" if r["td"] is None else f"{r['td']:g}"
            print(
                f"{r['model']:9s} steps {r['steps']:3d} td {td:>3s}  BLEU-4 {100 * r['bleu4']:.1f}  "
                f"CIDEr-D {r['cider']:.3f}  ROUGE-L {100 * r['rouge_l']:.1f}"
            )
    return 0


def _add_train(sub: Any) -> None:
    """The ``caption train`` subcommand."""
    from bitcompose.captioning.config import PRESETS

    p = sub.add_parser(
        "train",
        help="train a captioner (cached by configuration unless --out is given)",
        description=(
            "Train a Bit Diffusion captioner (--model diffusion) or its autoregressive baseline (--model ar) of the "
            "same size on the captioned synthetic scenes. A run is cached by its configuration, so a second call "
            "with the same settings loads it; an interrupted run resumes."
        ),
    )
    p.add_argument("--preset", default="scenes-small", help=f"{' | '.join(PRESETS)} (default scenes-small)")
    p.add_argument("--model", choices=("diffusion", "ar"), default="diffusion")
    p.add_argument("--out", default=None, help="run folder (default: the cache folder of this configuration)")
    p.add_argument(
        "--steps", type=int_arg("--steps", 1), default=None, help="override the preset's training steps"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)


def _add_sample(sub: Any) -> None:
    """The ``caption sample`` subcommand."""
    p = sub.add_parser("sample", help="caption N images of a split; optional PNG sheet")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--n", type=int_arg("--n", 1), default=8)
    _decoding_arguments(p)
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG sheet of images with their captions")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_sample)


def _decoding_arguments(p: argparse.ArgumentParser) -> None:
    """``--steps``, ``--td``, ``--decode`` (diffusion) and ``--beam`` (autoregressive); unset unless given."""
    p.add_argument("--steps", type=int_arg("--steps", 1), default=None, help="diffusion sampling steps (10)")
    p.add_argument(
        "--td", type=float_arg("--td", 0.0), default=None, help="diffusion time difference in steps (0)"
    )
    p.add_argument("--beam", type=int_arg("--beam", 1), default=None, help="AR beam width (1 = greedy)")
    p.add_argument(
        "--decode",
        choices=("bits", "argmax"),
        default=None,
        help="diffusion read-out: threshold the bits (paper, default) or argmax of the softmax head",
    )


def _add_evaluate(sub: Any) -> None:
    """The ``caption evaluate`` subcommand."""
    p = sub.add_parser("evaluate", help="BLEU-4, CIDEr-D, ROUGE-L on a split")
    p.add_argument("run_dir", metavar="RUN_DIR")
    _decoding_arguments(p)
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_evaluate)


def _add_sweep(sub: Any) -> None:
    """The ``caption sweep`` subcommand."""
    p = sub.add_parser("sweep", help="steps x td study vs the AR baseline (Tables 3 and 4 of the paper)")
    p.add_argument("--preset", default="scenes-small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument(
        "--out", default=None, help="folder for captioning.md and captioning.json (e.g. docs/results)"
    )
    p.add_argument(
        "--train-steps",
        type=int_arg("--train-steps", 1),
        default=None,
        help="override the preset's training steps",
    )
    p.add_argument(
        "--select-split", choices=("val", "test"), default="val",
        help="split on which the best td per steps is chosen (val; test reproduces the old optimistic choice)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the rows as one JSON list")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_sweep)


def register(subparsers: Any) -> None:
    """Add the ``caption`` command group (train, sample, evaluate, sweep)."""
    group = subparsers.add_parser("caption", help="image captioning with Bit Diffusion and an AR baseline")
    sub = group.add_subparsers(dest="caption_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda a: group.print_help() or 2)
    _add_train(sub)
    _add_sample(sub)
    _add_evaluate(sub)
    _add_sweep(sub)
