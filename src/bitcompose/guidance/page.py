"""The guidance experiment's results page, its must-show checks and its figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bitcompose.core.names import ENERGY_FORMS
from bitcompose.experiments.compare import previous_section as compare_previous
from bitcompose.experiments.image_models import trained_line
from bitcompose.figures.plots import labelled_rows, line_plot

__all__ = ["figures", "page", "previous_section", "summary_checks"]


def _label(r: dict[str, Any], base: int) -> str:
    levels = "" if r["levels"] == base else f", {r['levels']} levels"
    return f"{r['sampler']} ({r['param']}{levels})"


def _se(*values: float) -> float:
    return float(sum(v * v for v in values) ** 0.5)


def _smc_and_energy_checks(
    rows: Sequence[dict[str, Any]], get: Callable[[float, str, str, int], dict[str, Any] | None]
) -> list[str]:
    """SMC against the annealed kernel it resamples, and every energy cell against its score twin."""
    out = []
    for r in rows:
        plain = get(r["scale"], r["sampler"].removeprefix("smc-"), r["param"], r["levels"])
        if r["sampler"].startswith("smc-") and plain is not None:
            collapsed = r["classifier_fid"] - plain["classifier_fid"] > 2 * r["classifier_fid_se"]
            out.append(
                f"w = {r['scale']:g}, {r['sampler']} ({r['param']}): accuracy {r['accuracy']:.3f}, FID "
                f"{r['classifier_fid']:.2f} ± {r['classifier_fid_se']:.2f} (NFE {r['nfe']}) vs annealed "
                f"{plain['sampler']} {plain['accuracy']:.3f}, FID {plain['classifier_fid']:.2f} (NFE {plain['nfe']})"
                + (
                    ": resampling collapsed the samples onto few modes (the FID rises by more than 2 s.e.; the "
                    "accuracy is gamed)"
                    if collapsed
                    else ""
                )  # fmt: skip
            )
    for r in rows:
        if r["param"] == "energy":
            s = get(r["scale"], r["sampler"], "score", r["levels"])
            if s is not None:
                out.append(
                    f"w = {r['scale']:g}, {r['sampler']}: energy accuracy {r['accuracy']:.3f} ± {r['accuracy_se']:.3f}"
                    f", FID {r['classifier_fid']:.2f} vs score {s['accuracy']:.3f} ± {s['accuracy_se']:.3f}, FID "
                    f"{s['classifier_fid']:.2f}"
                )
    return out


def summary_checks(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The issue's must-show comparisons, each stated with its numbers and whether it holds."""

    base = min((r["levels"] for r in rows), default=100)

    def get(scale: float, sampler: str, param: str, levels: int = base) -> dict[str, Any] | None:
        for r in rows:
            if (r["scale"], r["sampler"], r["param"], r["levels"]) == (scale, sampler, param, levels):
                return r
        return None

    out = []
    for param in ("score", "energy"):
        for scale in sorted({r["scale"] for r in rows if r["scale"] > 0 and r["param"] == param}):
            rev = get(scale, "reverse", param)
            mcmc = [  # the annealing kernels; SMC, a different method that can trade diversity away, apart
                r
                for r in rows
                if (r["scale"], r["param"], r["levels"]) == (scale, param, base)
                and r["mcmc"] is not None
                and not r["sampler"].startswith("smc-")
            ]
            if rev is None or not mcmc:
                continue
            best = max(mcmc, key=lambda r: r["accuracy"])
            gap, se = best["accuracy"] - rev["accuracy"], _se(best["accuracy_se"], rev["accuracy_se"])
            dfid = best["classifier_fid"] - rev["classifier_fid"]
            acc_ok = gap >= 2 * se
            fid_ok = dfid <= best["classifier_fid_se"]
            verdict = "holds" if acc_ok and fid_ok else "does NOT hold"
            out.append(
                f"w = {scale:g}, {param}: best MCMC {best['sampler']} accuracy {best['accuracy']:.3f} vs reverse "
                f"{rev['accuracy']:.3f}: gap {gap:+.3f} = {gap / se if se > 0 else float('inf'):.1f} s.e. "
                f"(≥ 2 s.e.: {'yes' if acc_ok else 'no'}); classifier FID {best['classifier_fid']:.2f} vs "
                f"{rev['classifier_fid']:.2f} (worse by at most its s.e. {best['classifier_fid_se']:.2f}: "
                f"{'yes' if fid_ok else 'no'}); NFE {best['nfe']} vs {rev['nfe']}: {verdict}"
            )
    for r in rows:
        if r["sampler"] == "reverse" and r["levels"] != base:
            mcmc = [
                m
                for m in rows
                if m["scale"] == r["scale"] and m["param"] == r["param"] and m["mcmc"] is not None
            ]
            if mcmc:
                best = max(mcmc, key=lambda m: m["accuracy"])
                gap, se = best["accuracy"] - r["accuracy"], _se(best["accuracy_se"], r["accuracy_se"])
                out.append(
                    f"w = {r['scale']:g}, matched cost: reverse with {r['levels']} levels (NFE {r['nfe']}) accuracy "
                    f"{r['accuracy']:.3f}, FID {r['classifier_fid']:.2f} vs {best['sampler']} (NFE {best['nfe']}) "
                    f"{best['accuracy']:.3f}, FID {best['classifier_fid']:.2f}: gap {gap:+.3f} = "
                    f"{gap / se if se > 0 else float('inf'):.1f} s.e."
                )
    out += _smc_and_energy_checks(rows, get)
    fooled = [
        r for r in rows if r["scale"] > 0 and r["guide_accuracy"] - r["accuracy"] > 2 * r["accuracy_se"]
    ]
    if fooled:
        worst = max(fooled, key=lambda r: r["guide_accuracy"] - r["accuracy"])
        out.append(
            f"the guide agrees with its own requests more than the evaluator does in {len(fooled)} of "
            f"{sum(r['scale'] > 0 for r in rows)} guided cells (largest: {_label(worst, base)} at w = {worst['scale']:g}, "
            f"guide {worst['guide_accuracy']:.3f} vs evaluator {worst['accuracy']:.3f}): guidance partly "
            "fools the guide, which is why a separate evaluator judges"
        )
    return out


def _row(r: dict[str, Any]) -> str:
    acc = r.get("acceptance")
    return (
        f"| {r['scale']:g} | {r['sampler']} | {r['param']} | {r['levels']} | {r['accuracy']:.3f} ± "
        f"{r['accuracy_se']:.3f} | {r['guide_accuracy']:.3f} | {r['classifier_fid']:.2f} ± "
        f"{r['classifier_fid_se']:.2f} | {r['invalid_fraction']:.3f} | {r['nfe']} | "
        f"{'–' if acc is None else f'{acc:.2f}'} | {r['seconds']:.0f} |"
    )


def page(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The markdown page of a finished table."""
    return "".join((_header(meta), _results(rows, meta), _guide(meta["guide"]), _setup(meta)))


def _header(meta: dict[str, Any]) -> str:
    c, h, w = meta["image_shape"]
    return f"""# Classifier-guided Bit Diffusion with annealed MCMC on {meta["dataset"]} (small-scale)

Command: `{meta["command"]}`
Seed {meta["seed"]} (sampler noise; training seed 0). Machine: {meta["machine_line"]}.
Date: {meta["date"]}. Wall time of this run: {meta["wall_minutes"]:.1f} min, of which {meta["train_minutes"]:.1f}
min getting the models and classifiers (training those not yet cached); the cells took {meta["cells_minutes"]:.1f}
min when they ran (their own `seconds`, kept across resumes).

A small-scale stand-in for the ImageNet classifier-guidance experiment of "Reduce, Reuse, Recycle": an
unconditional Bit Diffusion model of `{meta["data_name"]}` ({c}×{h}×{w}, {meta["num_values"]} grey levels) times a
noise-conditioned classifier on its analog bits, `q_t(x)·p_φ(y | x_t, t)^w`. The paper's numbers are on
ImageNet 128×128 and are not comparable; they are not quoted.

"""


def _results(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    floors = sorted({(r["floor_n"], round(r["classifier_fid_floor"], 3)) for r in rows})
    floor_text = "; ".join(f"{f:.2f} with {m} held-out images" for m, f in floors)
    checks = "\n".join(f"- {c}" for c in summary_checks(rows))
    ev = meta["evaluator"]
    return f"""## Results

Accuracy: the share of samples the evaluation classifier (trained on clean images only, never the guide) puts in
the requested class, ± its standard error (n = {meta["n"]} per cell, classes balanced). Guide: the same share by
the guide itself at t = 0. Classifier FID: Fréchet distance of the evaluator's 128-d features of the samples to
those of the train split, ± the s.d. over 20 bootstrap resamples of the samples. NFE: evaluations of the guided
model (each one U-Net pass plus one guide pass with its input gradient; for energy models and for the gradient
kernels a forward and a backward pass).

| w | sampler | param | levels | accuracy ± s.e. | guide | classifier FID ± s.e. | invalid | NFE | acceptance | seconds |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(_row(r) for r in rows)}

Yardsticks: chance accuracy 0.100; the evaluator on held-out real images {ev.get("val_accuracy", float("nan")):.3f}
(what a perfect class-conditional sampler scores); the real-vs-real classifier FID floor (held-out images against
the train split, the same sizes as the samples where the held-out split allows): {floor_text}; with all held-out
images: {meta["floor_full"]:.2f}. A classifier FID below the floor means this yardstick cannot tell the samples
from real data at this n; differences smaller than the bootstrap s.e. are noise. The FID of the unguided model
(w = 0) is what guidance should not spoil. The
accuracy can be gamed by a sampler that draws one prototype per class (accuracy 1 with a large FID): read the two
together. With a power-of-two number of levels every code is valid, so the invalid fraction is 0 by construction
there (it is not for the 17-level digits).

Checks (the issue's must-show comparisons):
{checks}

![accuracy vs w](accuracy_vs_scale.png)

![classifier FID vs w](fid_vs_scale.png)

![samples](samples.png)

Rows: the first 20 samples of the cells at w = 0, the smallest w and w = {meta["other_scale"]:g} (requested classes
0–9, twice; none requested at w = 0).

"""


def _cell_key(r: dict[str, Any]) -> str:
    return f"w = {r['scale']:g}, {r['sampler']} ({r['param']}, {r['levels']} levels)"


def previous_section(
    before: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], source: str, meta: dict[str, Any]
) -> str:
    """The cells of an earlier run (``source``, its meta ``meta``) beside this run's: accuracy, FID, NFE."""
    return compare_previous(
        before, rows, source, meta, _cell_key, ("accuracy", "classifier_fid", "nfe"),
        "scale, sampler, parameterisation and levels",
    )  # fmt: skip


def _guide(guide: dict[str, Any]) -> str:
    by_time = " | ".join(f"{v:.3f}" for v in guide["accuracy_by_time"].values())
    times = " | ".join(k.removeprefix("t=") for k in guide["accuracy_by_time"])
    return f"""## The guide

Noise-conditioned CNN (4 conv blocks with FiLM from a sinusoidal embedding of t, {guide["steps"]} steps of batch
128, Adam 2e-3 decaying linearly, t ~ U(0, 1) on the paper's cosine γ, trained on the train split,
{guide.get("train_seconds", 0) / 60:.1f} min). Held-out accuracy by noise time:

| t | {times} |
|---|{"---|" * len(guide["accuracy_by_time"])}
| accuracy | {by_time} |

![guide accuracy](guide_accuracy.png)

"""


def _setup(meta: dict[str, Any]) -> str:
    mc, ev = meta["mcmc"], meta["evaluator"]
    return f"""## Setup

- Data: `{meta["data_name"]}` from `bitcompose.guidance.data` (train split 90 %, held-out 10 %, split seed 0).
- Models: unconditional Bit Diffusion U-Net (base 32, mults (1, 2), 1 residual block, attention at half size,
  self-conditioning, cosine γ(t)), batch 64, Adam 1e-3, EMA 0.999 (online weights when the run is too short for
  the EMA to forget its start); steps {meta["train_steps"]}. Score = x0-prediction; energy = {ENERGY_FORMS[meta.get("energy_form", "diff")]}
  with double backprop. Trained: {trained_line(meta["trained"])} (wall time from each run's `metrics.jsonl`).
- Samplers: `reverse` = ancestral reverse diffusion with the guided score on the grid of `levels` levels. MCMC =
  the same reverse steps plus {mc["steps_per_level"]} kernel steps at every level ≥ {mc["min_level"] * 100:g} % of
  the grid (the noisier half), step {mc["step"]}·σ_t (leapfrog ε for U-HMC/HMC with 3 leapfrog steps and
  damping 0.5; Langevin η = (step·σ_t)² for ULA/MALA). Metropolis corrections: exact energies (energy model:
  `E − w·log p_φ`) or the trapezoid estimate (score model). `smc-hmc`: annealed HMC from noise with SMC
  resampling within the samples of each class (energy model).
- Evaluator: the in-project CNN classifier trained on the clean train split ({ev.get("steps")} steps; held-out
  accuracy {ev.get("val_accuracy", float("nan")):.3f}).
"""


def figures(
    out: Path,
    rows: Sequence[dict[str, Any]],
    shown: dict[str, dict[str, torch.Tensor]],
    meta: dict[str, Any],
    scales: Sequence[float],
) -> None:
    """``accuracy_vs_scale.png``, ``fid_vs_scale.png``, ``guide_accuracy.png`` and ``samples.png`` in ``out``."""
    xs = sorted({0.0, *scales, *(r["scale"] for r in rows)})
    series: dict[str, dict[str, list[float | None]]] = {"accuracy": {}, "classifier_fid": {}}
    errors: dict[str, dict[str, list[float | None]]] = {"accuracy": {}, "classifier_fid": {}}
    base = min(r["levels"] for r in rows)
    for label in dict.fromkeys(_label(r, base) for r in rows):
        by_scale = {r["scale"]: r for r in rows if _label(r, base) == label}
        for key in series:
            series[key][label] = [by_scale[x][key] if x in by_scale else None for x in xs]
            errors[key][label] = [by_scale[x][f"{key}_se"] if x in by_scale else None for x in xs]
    n = meta["n"]
    line_plot(xs, series["accuracy"], out / "accuracy_vs_scale.png", xlabel="guidance scale w",
              ylabel="class accuracy (evaluator)", title=f"{meta['dataset']}, n = {n} per point (± s.e.)",
              errors=errors["accuracy"])  # fmt: skip
    series["classifier_fid"]["real-vs-real floor"] = [meta["floor_full"]] * len(xs)
    line_plot(xs, series["classifier_fid"], out / "fid_vs_scale.png", xlabel="guidance scale w",
              ylabel="classifier FID (lower is better)", title=f"{meta['dataset']}, n = {n} per point (± bootstrap s.e.)",
              errors=errors["classifier_fid"])  # fmt: skip
    by_time = meta["guide"]["accuracy_by_time"]
    line_plot([float(k.removeprefix("t=")) for k in by_time], {"guide, held-out": list(by_time.values())},
              out / "guide_accuracy.png", xlabel="noise time t (cosine γ)", ylabel="accuracy on x_t",
              title="noise-conditioned guide")  # fmt: skip
    labelled_rows([(name, t["images"][:20]) for name, t in shown.items()], out / "samples.png", meta["num_values"],
                  title=f"{meta['dataset']}: first 20 samples per cell (classes 0-9, twice)")  # fmt: skip
