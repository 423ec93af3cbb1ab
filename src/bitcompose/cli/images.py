"""``bitcompose train | sample | evaluate | demo``: image Bit Diffusion from the command line.

Examples::

    bitcompose train --preset digits --out runs/digits
    bitcompose train --preset cifar10 --root ~/data --out runs/c10 --set optim.lr=2e-4 --set model.encoding=gray
    torchrun --nproc_per_node=8 -m bitcompose.cli train --preset cifar10 --root ~/data --out runs/c10
    bitcompose train --out runs/c10 --resume                     # continue (config read from the checkpoint)
    bitcompose sample runs/digits --n 100 --out runs/digits.png --label 3
    bitcompose evaluate runs/digits --json --out runs/eval.json
    bitcompose demo --out runs/demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bitcompose.cli.errors import CLIError
from bitcompose.cli.types import float_arg, int_arg, json_line, output_path
from bitcompose.core.names import DIFFUSION_SAMPLERS

#: ``bitcompose.diffusion.samplers.SAMPLERS``, spelled here so that parsing arguments does not import torch.
SAMPLER_CHOICES = DIFFUSION_SAMPLERS

__all__ = ["register"]


# ------------------------------------------------------------------------------------------------------- train


def _train_config(args: argparse.Namespace) -> tuple[Any, Path, Any]:
    """The run's config (fitted to the data for a new run), its folder, and the loaded data (None on resume)."""
    from bitcompose.images.config import fit_to_data, not_square, preset
    from bitcompose.images.model import parse_checkpoint_config
    from bitcompose.images.trainer import load_training_data
    from bitcompose.training.checkpoint import find_checkpoint, load_checkpoint

    if args.preset is None and args.data is None and not args.resume:
        raise CLIError("give --data my.npz (your own images), --preset NAME, or --resume to continue a run")
    out = Path(args.out) if args.out else Path("runs") / (args.preset or Path(args.data or "run").stem)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a run folder")
    overrides = list(args.set or [])
    if args.data is not None:
        data = Path(args.data).expanduser().resolve()
        if data.is_dir():
            overrides += ["data.name=png", f"data.path={data}"]
        else:
            if data.suffix != ".npz":
                raise CLIError(f"--data must be an .npz file or a folder of PNG files, got {args.data!r}")
            if not data.is_file():
                raise CLIError(f"--data file not found: {args.data}")
            overrides += ["data.name=npz", f"data.path={data}"]
    if args.root is not None:
        overrides.append(f"data.root={Path(args.root).expanduser().resolve()}")
    if args.levels is not None:
        overrides.append(f"data.levels={args.levels}")
    if args.fit is not None:
        overrides.append(f"data.fit={args.fit}")
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    resuming = args.resume and (out / "checkpoint").exists()
    if not args.resume and (out / "checkpoint").exists():
        raise CLIError(f"{out} already holds a checkpoint; resume it (--resume) or choose another folder")
    if args.resume and not resuming and args.preset is None and args.data is None:
        find_checkpoint(out)  # says what is missing: no such run or checkpoint folder
    if resuming and args.preset is None:
        base, _ = parse_checkpoint_config(load_checkpoint(find_checkpoint(out)).config, where=str(out))
        return base.with_overrides(overrides), out, None
    config = preset(args.preset or "custom").with_overrides(overrides)
    dataset = load_training_data(config)
    c, h, w = dataset.image_shape
    if h != w:
        raise CLIError(f"{args.data or dataset.name}: {not_square(h, w)}")
    size_model = (args.preset or "custom") == "custom" and not any(o.startswith("model.") for o in overrides)
    config, notes = fit_to_data(
        config, channels=c, image_size=h, labelled=dataset.labels is not None, num_images=len(dataset),
        size_model=size_model,
    )  # fmt: skip
    for note in notes:
        print(f"bitcompose: {note}", file=sys.stderr)
    return config, out, dataset


def _cmd_train(args: argparse.Namespace) -> int:
    from bitcompose.images.trainer import ImageTrainer
    from bitcompose.nets.unet import count_parameters
    from bitcompose.training.dist import cleanup_distributed

    config, out, dataset = _train_config(args)
    try:
        trainer = ImageTrainer(
            config, out, dataset=dataset, resume=args.resume, progress=not args.no_progress
        )
        if trainer.info.is_main:
            spec, m = trainer.spec, config.model
            print(
                f"bitcompose: {spec.name}: {len(trainer.dataset)} images {spec.channels}x{spec.image_size}x"
                f"{spec.image_size}, {spec.num_values} values, {spec.num_classes or 'no'} classes; U-Net "
                f"{m.base_channels}x{m.channel_mults}, attention at {m.attn_resolutions or 'none'}, "
                f"{count_parameters(trainer.net):,} parameters, {config.precision} -> {trainer.precision}; "
                f"config: {out / 'config.json'}",
                file=sys.stderr,
            )
        result = trainer.train()
        if trainer.info.is_main:
            print(
                json_line(
                    {
                        "run": str(out),
                        "checkpoint": str(result.checkpoint),
                        "step": result.step,
                        "loss": result.loss,
                        "train_seconds": round(result.train_seconds, 2),
                        "world_size": trainer.info.world_size,
                    }
                )
            )
    finally:
        cleanup_distributed()
    return 0


# ------------------------------------------------------------------------------------------------------ sample


#: At most this many samples, in at most this many labelled rows, are drawn in ``sample``'s picture (every one is
#: in the ``.npz``).
GRID_CAP, GRID_ROWS = 400, 20


def run_folder(path: str | Path) -> Path:
    """The run folder of ``path`` (a run folder, or its ``checkpoint`` folder): what outputs must never replace."""
    p = Path(path)
    return p.parent if (p / "model.safetensors").is_file() and not (p / "checkpoint").is_dir() else p


def _checked_sampling(args: argparse.Namespace, model: Any) -> Any:
    """:func:`_sampling`, with the settings that cannot work together refused before any sampling."""
    sampling = _sampling(args, model)
    if sampling.td >= sampling.steps:
        raise CLIError(
            f"--td {sampling.td:g} must be below the number of steps ({sampling.steps}): the first step would "
            "jump to t = 0"
        )
    return sampling


def _load(args: argparse.Namespace) -> Any:
    from bitcompose.images.model import load_model
    from bitcompose.training.dist import resolve_device

    return load_model(args.run, ema=not args.no_ema, device=resolve_device(args.device))


def _labels(args: argparse.Namespace, model: Any, n: int) -> Any:
    import torch

    classes = model.spec.num_classes
    if args.guidance and classes == 0:
        raise CLIError("--guidance needs a class-conditional model")
    if args.guidance and model.config.cond_drop_prob == 0:
        print(
            "bitcompose: warning: this model was trained without label dropout (cond_drop_prob=0), so its "
            "null-class prediction is untrained and --guidance has no meaning",
            file=sys.stderr,
        )
    if args.label is None:
        return None
    if classes == 0:
        raise CLIError("--label given, but this model is unconditional")
    if not 0 <= args.label < classes:
        raise CLIError(f"--label must lie in 0..{classes - 1}, got {args.label}")
    return torch.full((n,), args.label, dtype=torch.long)


#: The sampler settings ``bitcompose sample`` and ``evaluate`` take from the command line (``None``: the run's).
SAMPLING_ARGS = ("steps", "sampler", "td", "guidance", "precision", "momentum", "self_guidance")


def _sampling(args: argparse.Namespace, model: Any) -> Any:
    """The run's ``config.sample`` with the settings given on the command line."""
    import dataclasses

    given = {name: getattr(args, name) for name in SAMPLING_ARGS if getattr(args, name) is not None}
    return dataclasses.replace(model.config.sample, **given)


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from bitcompose.figures.grids import save_grid
    from bitcompose.images.evaluate import generate

    run = run_folder(args.run)
    out = output_path(args.out, overwrite=args.overwrite, suffix=".png", protect=run)
    npz = output_path(out.with_suffix(".npz"), overwrite=args.overwrite, what="the samples file", protect=run)
    model = _load(args)
    labels = _labels(args, model, args.n)
    sampling = _checked_sampling(args, model)
    gen = generate(
        model,
        args.n,
        sampling,
        labels=labels,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    upscale = max(1, 64 // model.spec.image_size)
    k = model.spec.num_values
    shown = min(args.n, GRID_CAP)  # the picture stays readable; the .npz keeps every sample
    if gen.labels is not None and args.label is None and not args.nrow:  # one labelled row per class
        from bitcompose.figures.plots import labelled_rows

        classes = sorted(set(gen.labels.tolist()))[:GRID_ROWS]
        per_class = max(1, min(GRID_CAP // GRID_ROWS * 2, GRID_CAP // len(classes)))
        rows = [(f"class {c}", gen.images[gen.labels == c][:per_class]) for c in classes]
        shown = sum(len(images) for _, images in rows)
        labelled_rows(rows, out, k)
    else:
        nrow = args.nrow or max(1, round(shown**0.5))
        save_grid(gen.images[:shown], out, nrow=nrow, num_values=k, upscale=upscale)
    arrays: dict[str, Any] = {"samples": gen.images.numpy(), "num_values": np.int64(model.spec.num_values)}
    if gen.labels is not None:
        arrays["labels"] = gen.labels.numpy()
    np.savez_compressed(npz, **arrays)
    print(
        json_line(
            {
                "png": str(out),
                "png_images": shown,
                "npz": str(npz),
                "n": args.n,
                **gen.settings,
                "seconds": round(gen.seconds, 2),
            }  # fmt: skip
        )
    )
    return 0


# ---------------------------------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from bitcompose.experiments.classifier import load_or_train_classifier
    from bitcompose.images.evaluate import generate, inception_scores, score_samples
    from bitcompose.images.model import load_model
    from bitcompose.images.trainer import load_training_data
    from bitcompose.metrics.inception import find_inception_weights
    from bitcompose.training.dist import cleanup_distributed, init_distributed

    protect = run_folder(args.run)
    out = (
        None
        if args.out is None
        else output_path(args.out, overwrite=args.overwrite, suffix=".json", protect=protect)
    )
    if args.bpd_data is not None and not Path(args.bpd_data).expanduser().is_file():
        raise CLIError(f"--bpd-data {args.bpd_data}: no such file")
    inception = args.inception
    if inception:
        find_inception_weights()  # the fid extra is there, or one line saying how to install it (before any work)
    info = init_distributed(args.device)  # under torchrun the ranks share the sampling batches
    try:
        model = load_model(args.run, ema=not args.no_ema, device=info.device)
        data_config = model.config
        if args.root is not None:
            data_config = data_config.with_overrides([f"data.root={Path(args.root).expanduser().resolve()}"])
        if args.data is not None:
            data = Path(args.data).expanduser().resolve()
            kind = "png" if data.is_dir() else "npz"
            data_config = data_config.with_overrides([f"data.name={kind}", f"data.path={data}"])
        dataset = load_training_data(data_config) if info.is_main else None
        if dataset is not None and (
            dataset.num_values != model.spec.num_values
            or dataset.image_shape != (model.spec.channels, model.spec.image_size, model.spec.image_size)
        ):
            raise CLIError(f"the data set {dataset.name!r} does not match the model's data ({model.spec})")
        if dataset is not None and dataset.labels is None and not inception:
            inception = _unlabelled_needs_inception()
        n = args.n or model.config.sample.num_eval
        labels = _labels(args, model, n)
        gen = generate(
            model,
            n,
            _checked_sampling(args, model),
            labels=labels,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            dist_info=info,
        )
    finally:
        cleanup_distributed()
    if not info.is_main or dataset is None:
        return 0
    report: dict[str, Any] = {"checkpoint": str(model.path), "checkpoint_step": model.step}
    if dataset.labels is not None:  # the in-project classifier needs labels
        classifier = load_or_train_classifier(dataset, progress=not args.no_progress)
        report |= score_samples(gen, dataset, classifier, seed=args.seed)
    else:
        report |= {"num_samples": len(gen.images), "invalid_code_fraction": gen.invalid_fraction}
    if inception:
        report |= inception_scores(gen, dataset, seed=args.seed)
    report |= {"sampler": gen.settings, "sample_seconds": round(gen.seconds, 2)}
    if args.bpd_n > 0:
        report |= _bound_report(args, model, dataset)
    if n < 100:
        report["note"] = (
            f"with {n} samples the scores are very noisy: KID is unbiased and can be negative, FID is biased "
            "upwards; compare runs at equal n of several hundred or more"
        )
    text = json_line(report, indent=None if args.json else 2)
    if out is not None:
        out.write_text(json_line(report, indent=2) + "\n")
    if args.json:
        print(text)
    else:
        keys = ("class_accuracy", "classifier_fid", "classifier_fid_floor", "classifier_kid", "inception_fid",
                "inception_fid_floor", "inception_kid", "bpd", "bpd_se")  # fmt: skip
        for key in keys:
            if key in report:
                print(f"{key:>22}: {report[key]:.4f}")
        print(f"{'invalid_code_fraction':>22}: {report['invalid_code_fraction']:.2e}")
        if "note" in report:
            print(f"{'note':>22}: {report['note']}")
        if out is not None:
            print(f"full report: {out}")
    return 0


def _unlabelled_needs_inception() -> bool:
    """Unlabelled data: the classifier cannot score them, so the Inception scores do (said in one line), or
    the command stops here, before sampling, saying how to install them."""
    from bitcompose.metrics.inception import find_inception_weights

    try:
        find_inception_weights()
    except FileNotFoundError as exc:
        raise CLIError(
            f"the data have no labels, so the in-project classifier cannot score samples; {exc}"
        ) from None
    print("bitcompose: the data have no labels: scoring with the Inception FID and KID", file=sys.stderr)
    return True


def _bound_report(args: argparse.Namespace, model: Any, dataset: Any) -> dict[str, Any]:
    """The likelihood bound (bits per pixel-channel) on the first ``--bpd-n`` images of ``--bpd-data`` (default:
    the data the run names, usually its own training data, which the report says)."""
    from bitcompose.data.images import load_image_dataset
    from bitcompose.images.likelihood import image_bpd

    source = "the run's training data"
    if args.bpd_data is not None:
        path = Path(args.bpd_data).expanduser().resolve()
        data = model.config.data
        dataset = load_image_dataset("npz", path=str(path), levels=data.levels, fit=data.fit)
        if dataset.num_values != model.spec.num_values:
            raise CLIError(
                f"--bpd-data {path} has {dataset.num_values} levels; the model was trained on {model.spec.num_values}"
            )
        source = str(path)
    n = min(args.bpd_n, len(dataset))
    labels = None if dataset.labels is None else dataset.labels[:n]
    if model.spec.num_classes > 0 and labels is None:
        raise CLIError(
            "the model is class-conditional: the bound needs labelled images (--bpd-data with labels)"
        )
    report = image_bpd(model, dataset.images[:n], labels, seed=args.seed, progress=not args.no_progress)
    del report["bpd_per_image"]  # the report stays one readable line
    return report | {"bpd_data": source}


# -------------------------------------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from bitcompose.images.demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file; the demo writes a folder")
    held = [p.name for p in (out / "train", out / "samples.png", out / "metrics.json") if p.exists()]
    if held and not args.overwrite:
        raise CLIError(
            f"--out {out} holds an earlier demo ({', '.join(held)}); choose another folder or pass --overwrite "
            "to replace it"
        )
    output_path(out / "metrics.json", overwrite=True)  # the folder can be created and written
    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    m = run_demo(out, overrides=overrides, progress=not args.no_progress)
    print(
        f"demo: {m['steps']} steps in {m['train_seconds']:.0f} s (total {m['total_seconds']:.0f} s); "
        f"class accuracy {m['class_accuracy']:.3f}, classifier FID {m['classifier_fid']:.2f} "
        f"(real-vs-real floor {m['classifier_fid_floor']:.2f})",
        file=sys.stdout,
    )
    print(f"samples: {out / 'samples.png'}\nmetrics: {out / 'metrics.json'}\nrun:     {out / 'train'}")
    return 0


# ---------------------------------------------------------------------------------------------------- register


def _sampler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder (with checkpoint/) or checkpoint folder")
    p.add_argument(
        "--steps", type=int_arg("--steps", 1), default=None, help="sampling steps (default: the run's)"
    )
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default=None, help="default: the run's")
    p.add_argument(
        "--td", type=float_arg("--td", 0.0), default=None, help="asymmetric time interval, in steps"
    )
    p.add_argument(
        "--guidance", type=float_arg("--guidance", 0.0), default=None, help="classifier-free guidance w"
    )
    p.add_argument(
        "--momentum",
        type=float_arg("--momentum", 0.0),
        default=None,
        help="Appendix G momentum estimate m in [0, 1)",
    )
    p.add_argument(
        "--self-guidance",
        type=float_arg("--self-guidance", 0.0),
        default=None,
        help="Appendix G self-guidance w",
    )
    p.add_argument("--label", type=int_arg("--label"), default=None, help="sample only this class")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=None,
        help="network precision (default: the run's)",
    )
    p.add_argument("--seed", type=int_arg("--seed", 0), default=0, help="sampling seed (default 0)")
    p.add_argument("--batch-size", type=int_arg("--batch-size", 1), default=500, help="images per batch")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-ema", action="store_true", help="use the online instead of the EMA weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_train(subparsers: Any) -> None:
    """The ``train`` subcommand."""
    from bitcompose.images.config import PRESET_NAMES

    p = subparsers.add_parser(
        "train",
        help="train an image Bit Diffusion model (torchrun for several GPUs)",
        description=(
            "Train on your own images (--data my.npz: uint8 images [N,H,W] or [N,H,W,C], optional integer "
            "labels [N]; the U-Net is sized from the data, class-conditional exactly when there are labels) or "
            "on a named preset's data; --set key=value changes any config field (dotted keys)."
        ),
    )
    p.add_argument(
        "--preset", default=None, help=f"one of {', '.join(PRESET_NAMES)} (default with --data: custom)"
    )
    p.add_argument(
        "--data", default=None,
        help="train on a .npz file (integer images [N,H,W(,C)] within 0..255, labels [N]) or a folder of PNGs "
        "(one sub-folder per class for labels)",
    )  # fmt: skip
    p.add_argument(
        "--root", default=None, help="folder of the data files (cifar10, imagenet64, fashion_mnist)"
    )
    p.add_argument("--out", default=None, help="run folder (default runs/PRESET)")
    p.add_argument("--steps", type=int_arg("--steps", 1), default=None, help="total training steps")
    p.add_argument(
        "--levels",
        type=int_arg("--levels", 2),
        default=None,
        help="requantise the pixels to this many values",
    )
    fit = p.add_mutually_exclusive_group()
    fit.add_argument(
        "--crop",
        dest="fit",
        action="store_const",
        const="crop",
        help="non-square images: keep the central square",
    )
    fit.add_argument(
        "--pad", dest="fit", action="store_const", const="pad",
        help="non-square images: pad with level 0 to the longer side",
    )  # fmt: skip
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint (with --data or --preset: start there when it holds none yet)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _add_sample(subparsers: Any) -> None:
    """The ``sample`` subcommand."""
    p = subparsers.add_parser(
        "sample", help="sample a grid PNG (+ .npz of integer samples) from a trained model"
    )
    _sampler_args(p)
    p.add_argument(
        "--n",
        "--num-samples",
        dest="n",
        type=int_arg("--n", 1),
        default=100,
        help="number of samples (default 100)",
    )
    p.add_argument("--out", required=True, help="the .png grid; the .npz is written beside it")
    p.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    p.add_argument("--nrow", type=int_arg("--nrow", 1), default=None, help="images per grid row")
    p.set_defaults(func=_cmd_sample)


def _add_evaluate(subparsers: Any) -> None:
    """The ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate", help="classifier FID (+ floor), KID, class accuracy, invalid codes of a trained model"
    )
    _sampler_args(p)
    p.add_argument(
        "--n",
        "--num-samples",
        dest="n",
        type=int_arg("--n", 2),
        default=None,
        help="number of samples (default: the run's; under torchrun write --num-samples, torchrun takes --n*)",
    )
    p.add_argument("--root", default=None, help="folder of the data files, if moved since training")
    p.add_argument("--data", default=None, help="the training .npz file, if moved since training")
    p.add_argument(
        "--bpd-n",
        type=int_arg("--bpd-n", 0),
        default=2000,
        help="images for the likelihood bound in bits per pixel-channel (default 2000; 0: no bound)",
    )
    p.add_argument(
        "--bpd-data",
        default=None,
        help="held-out .npz images for the bound (default: the run's training data)",
    )
    p.add_argument(
        "--inception", action="store_true",
        help="also the Inception FID (+ held-out floor) and KID (the fid extra; always for unlabelled data)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.add_argument("--out", default=None, help="also write the report to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_cmd_evaluate)


def _add_demo(subparsers: Any) -> None:
    """The ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="train + sample + score a class-conditional digits model on the CPU",
        description=(
            "The CPU demo: train a class-conditional Bit Diffusion model on the 8x8 digits (1,000 steps), sample "
            "one row per class with the EMA weights and score the samples with the in-project classifier "
            "(class accuracy, classifier FID beside its real-vs-real floor); writes samples.png, metrics.json and "
            "the run folder train/ under --out."
        ),
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    p.add_argument(
        "--steps", type=int_arg("--steps", 1), default=None, help="training steps (default: preset)"
    )
    p.add_argument("--seed", type=int_arg("--seed", 0), default=None, help="seed (default: preset)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


def register(subparsers: Any) -> None:
    """Add ``train``, ``sample``, ``evaluate`` and ``demo``."""
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_evaluate(subparsers)
    _add_demo(subparsers)
