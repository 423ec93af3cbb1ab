"""The study's page: tables laid out like the paper's (Tables 1, 6, 7, 8, 9, Fig. 6) with the paper's numbers
beside ours, the paper's claims checked against our cells, and the figures (FID vs NFE, FID vs td, samples).

The paper's numbers are Inception FIDs on CIFAR-10 / ImageNet 64×64 with 50K samples; ours are classifier FIDs on
small grey images with a few hundred samples. Only the *direction* of each effect is comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bitcompose.figures.plots import labelled_rows, line_plot, pyplot, save_figure
from bitcompose.study.grid import SELF_GUIDANCE_WEIGHTS

__all__ = ["bound_claims", "claims", "compare_bpd", "figures", "find", "model_row", "page"]

Row = dict[str, Any]

#: Table 6 (CIFAR-10, unconditional FID): encoding → loss → FID. ``random`` with ℓ2 used the softmax head.
PAPER_TABLE6 = {
    "binary": {"l2": 3.48, "logistic": 3.53},
    "gray": {"l2": 3.86, "logistic": 3.71},
    "random": {"softmax-head": 6.93, "logistic": 49.29},
    "onehot": {"l2": 46.32, "logistic": 26.82, "softmax-head": 29.49},
}
#: Table 1 (CIFAR-10, class-conditional FID where given, else unconditional).
PAPER_TABLE1 = {
    "continuous": "2.95 (DDPM, continuous pixels)",
    "binary": "2.72",
    "gray": "2.94",
    "random": "6.43",
    "masked": "30.97 (D3PM absorbing, unconditional)",
}
#: Table 7 (ImageNet 64×64 FID): (sampler, NFE) → encoding → FID (DPM-Solver at 30 / 50 NFE).
PAPER_TABLE7 = {
    ("ddim", 100): {"binary": 8.80, "gray": 11.31, "random": 8.76},
    ("ddpm", 100): {"binary": 13.04, "gray": 12.77, "random": 9.25},
    ("ddim", 400): {"binary": 5.00, "gray": 5.52, "random": 38.44},
    ("ddpm", 400): {"binary": 4.84, "gray": 5.37, "random": 40.91},
}
#: Table 8 (ImageNet 64×64 continuous pixels, DPM-Solver at 20 NFE): (prediction, self-conditioning) → FID.
PAPER_TABLE8 = {("eps", False): 6.10, ("eps", True): 4.24, ("x0", False): 12.13, ("x0", True): 6.94}
#: Table 9 (ImageNet 64×64, best FID per strategy): mode → encoding → FID.
PAPER_TABLE9 = {
    "default": {"binary": 4.84, "gray": 5.14, "random": 8.76},
    "momentum": {"binary": 4.85, "gray": 5.14, "random": 8.51},
    "self-guidance": {"binary": 5.15, "gray": 5.65, "random": 7.87},
}


def find(rows: Sequence[Row], model: str, sampler: str, steps: int, **extra: Any) -> Row | None:
    """The row of ``model`` with this sampler and steps (td, momentum, self-guidance 0 unless given)."""
    form = extra.pop("self_guidance_form", "cfg")
    want = {"td": 0.0, "momentum": 0.0, "self_guidance": 0.0, **extra}
    for r in rows:
        if (
            (r["model"], r["sampler"], r["steps"]) == (model, sampler, steps)
            and all(float(r[k]) == float(v) for k, v in want.items())
            and r.get("self_guidance_form", "cfg") == form  # rows made before the field are cfg
        ):
            return r
    return None


def _fid(r: Row | None) -> str:
    return "–" if r is None else f"{r['classifier_fid']:.2f} ± {r['classifier_fid_se']:.2f}"


def _cell(r: Row | None) -> str:
    return "–" if r is None else f"{_fid(r)} (acc. {r['class_accuracy']:.3f})"


def _tv(r: Row | None) -> str:
    if r is None or "level_tv" not in r:
        return "–"
    return f"{r['level_tv']:.3f} ({r['level_tv_floor']:.3f})"


def _paper(value: Any) -> str:
    return "–" if value is None else str(value)


def _z(diff: float, se: float) -> float:
    """``diff / se`` (± infinity for a difference with zero s.e.)."""
    return diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))


def compare(a: Row | None, b: Row | None, name_a: str, name_b: str) -> str | None:
    """``name_a`` vs ``name_b`` by classifier FID (lower is better) and class accuracy (higher is better), each
    difference in units of its s.e.; one is *better* where a yardstick separates them by ≥ 2 s.e. and the other
    does not say the opposite."""
    if a is None or b is None:
        return None
    fid = _z(
        b["classifier_fid"] - a["classifier_fid"], math.hypot(a["classifier_fid_se"], b["classifier_fid_se"])
    )
    acc = _z(
        a["class_accuracy"] - b["class_accuracy"], math.hypot(a["class_accuracy_se"], b["class_accuracy_se"])
    )
    votes = {name_a if z > 0 else name_b for z in (fid, acc) if abs(z) >= 2}
    verdict = (
        "no difference beyond 2 s.e."
        if not votes
        else "mixed"
        if len(votes) == 2
        else f"{votes.pop()} better"
    )
    return (
        f"FID {name_a} {a['classifier_fid']:.2f} vs {name_b} {b['classifier_fid']:.2f} ({abs(fid):.1f} s.e.), "
        f"accuracy {a['class_accuracy']:.3f} vs {b['class_accuracy']:.3f} ({abs(acc):.1f} s.e.): {verdict}"
    )


def matching_nfe(rows: Sequence[Row], model: str = "binary") -> str:
    """The fewest DPM-Solver++(2M) evaluations whose FID is within one s.e. of DDIM at 100 steps."""
    ref = find(rows, model, "ddim", 100)
    solver = sorted((r for r in rows if r["model"] == model and r["sampler"] == "dpmpp2m" and r["mode"] ==
                     "default" and not r["td"]), key=lambda r: r["steps"])  # fmt: skip
    if ref is None or not solver:
        return "not run (needs the `samplers` grid)"
    for r in solver:
        if r["classifier_fid"] <= ref["classifier_fid"] + ref["classifier_fid_se"]:
            return (
                f"{r['nfe']} evaluations (DPM-Solver++(2M) {r['classifier_fid']:.2f} ± {r['classifier_fid_se']:.2f}"
                f" vs DDIM-100 {ref['classifier_fid']:.2f} ± {ref['classifier_fid_se']:.2f})"
            )
    return f"none of {', '.join(str(r['nfe']) for r in solver)} evaluations reached DDIM-100"


def claims(rows: Sequence[Row]) -> list[tuple[str, str]]:
    """``(the paper's claim, what our cells say)`` for each claim the study tests ("not run" without cells)."""

    def ddim(m: str) -> Row | None:
        return find(rows, m, "ddim", 100)

    def said(text: str | None) -> str:
        return text or "not run"

    rank = [(m, ddim(m)) for m in ("binary", "gray", "random", "onehot")]
    have = [(m, r) for m, r in rank if r is not None]
    ranking = (
        " < ".join(
            f"{m} {r['classifier_fid']:.2f} (acc. {r['class_accuracy']:.3f})"
            for m, r in sorted(have, key=lambda x: x[1]["classifier_fid"])
        )
        if len(have) >= 2
        else None
    )
    out = [
        ("Encodings (Tables 1, 6): uint8 ≤ gray < uint8 (rand) ≪ one-hot (ℓ2, FID)", said(ranking)),
        ("Self-conditioning greatly improves Bit Diffusion (Fig. 5)",
         said(compare(ddim("binary"), ddim("binary-nosc"), "with", "without"))),
        ("x0 prediction ≫ ε prediction for analog bits (Fig. 5)",
         said(compare(ddim("binary"), ddim("binary-eps"), "x0", "ε"))),
        ("DDIM beats DDPM at 100 steps (Table 7)",
         said(compare(ddim("binary"), find(rows, "binary", "ddpm", 100), "DDIM", "DDPM"))),
        ("uint8 (rand) degrades from 100 to 400 DDIM steps (Table 7)",
         said(compare(ddim("random"), find(rows, "random", "ddim", 400), "100 steps", "400 steps"))),
        ("Momentum ≈ default sampling for uint8 (Table 9)",
         said(compare(ddim("binary"), find(rows, "binary", "ddim", 100, momentum=0.5), "default", "momentum"))),
        ("Self-guidance is worse than default for uint8 (Table 9)",
         said(compare(ddim("binary"), find(rows, "binary", "ddim", 100, self_guidance=3.0), "default",
                      "self-guidance"))),
        ("Bit Diffusion on uint8 ≈ continuous pixels (Table 1: 2.72 vs 2.95)",
         said(compare(ddim("binary"), ddim("continuous"), "bits", "continuous"))),
        ("Bit Diffusion beats absorbing-state discrete diffusion at equal NFE (Table 1: 2.72–6.43 vs 30.97)",
         said(compare(ddim("binary"), find(rows, "masked", "ddpm", 100), "bits", "masked"))),
        ("A few-step solver matches DDIM-100 (our question, App. E)", matching_nfe(rows)),
    ]  # fmt: skip
    return out


def model_row(rows: Sequence[Row], model: str) -> Row | None:
    """A row of ``model`` carrying its likelihood bound (every cell of a model has the same one)."""
    return next((r for r in rows if r["model"] == model and "bpd" in r), None)


def _difference_se(a: Row, b: Row) -> float:
    """The s.e. of ``b.bpd − a.bpd``: from the paired per-image differences when both bounds are of the same
    held-out images (``bpd_per_image`` of equal length), else as if independent."""
    pa, pb = a.get("bpd_per_image"), b.get("bpd_per_image")
    if pa and pb and len(pa) == len(pb) and len(pa) > 1:
        diff = torch.tensor(pb, dtype=torch.float64) - torch.tensor(pa, dtype=torch.float64)
        return float(diff.std() / math.sqrt(len(pa)))
    return math.hypot(a["bpd_se"], b["bpd_se"])


def compare_bpd(a: Row | None, b: Row | None, name_a: str, name_b: str) -> str | None:
    """``name_a`` vs ``name_b`` by the likelihood bound (lower is better), the difference in units of its s.e.
    (paired over the held-out images where both rows carry them, :func:`_difference_se`)."""
    if a is None or b is None:
        return None
    se = _difference_se(a, b)
    z = _z(b["bpd"] - a["bpd"], se)
    verdict = (
        f"{name_a} better" if z >= 2 else f"{name_b} better" if z <= -2 else "no difference beyond 2 s.e."
    )
    return (
        f"{name_a} {a['bpd']:.3f} vs {name_b} {b['bpd']:.3f} bits/dim (difference {abs(b['bpd'] - a['bpd']):.3f}"
        f" = {abs(z):.1f} s.e. of {se:.3f}): {verdict}"
    )


#: The claims that compare two models, by the bound: (claim, model a, model b, name of a, name of b); the paper's
#: direction is "a better than (or ≈) b".
BOUND_PAIRS = (
    ("Self-conditioning improves Bit Diffusion (Fig. 5)", "binary", "binary-nosc", "with", "without"),
    ("x0 prediction ≫ ε prediction for analog bits (Fig. 5)", "binary", "binary-eps", "x0", "ε"),
    ("Bit Diffusion beats absorbing-state discrete diffusion (Table 1)", "binary", "masked", "bits", "masked"),
    ("Bit Diffusion on uint8 ≈ continuous pixels (Table 1)", "binary", "continuous", "bits", "continuous"),
    ("uint8 ≤ gray (Tables 1, 6)", "binary", "gray", "uint8", "gray"),
    ("gray < uint8 (rand) (Tables 1, 6)", "gray", "random", "gray", "uint8 (rand)"),
    ("uint8 (rand) ≪ one-hot (Tables 1, 6)", "random", "onehot", "uint8 (rand)", "one-hot"),
    ("ℓ2 ≈ logistic loss for uint8 (Table 6: 3.48 vs 3.53)", "binary", "binary-logistic", "ℓ2", "logistic"),
)  # fmt: skip


def bound_claims(rows: Sequence[Row]) -> list[tuple[str, str]]:
    """The claims that compare models, decided by the likelihood bound (``not run`` without the cells)."""
    return [
        (claim, compare_bpd(model_row(rows, a), model_row(rows, b), na, nb) or "not run")
        for claim, a, b, na, nb in BOUND_PAIRS
    ]


def _bounds(rows: Sequence[Row]) -> list[str]:
    names = sorted({r["model"] for r in rows if "bpd" in r})
    if not names:
        return ["not computed (cells from before the bound existed)"]
    body = []
    for name in names:
        r = model_row(rows, name)
        assert r is not None
        body.append([name, r["family"], f"{r['bpd']:.3f} ± {r['bpd_se']:.3f}", str(r["bpd_num_images"]),
                     str(r["bpd_draws"])])  # fmt: skip
    return _table(["model", "family", "bits / dim (± s.e.)", "held-out images", "draws per image"], body)


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def _encodings(rows: Sequence[Row]) -> list[str]:
    losses = ("l2", "logistic", "softmax-head")
    name = {"l2": "", "logistic": "-logistic", "softmax-head": "-softmax"}
    body = []
    for enc in ("binary", "gray", "random", "onehot"):
        ours = [_cell(find(rows, f"{enc}{name[loss]}", "ddim", 100)) for loss in losses]
        paper = [_paper(PAPER_TABLE6[enc].get(loss)) for loss in losses]
        body.append([enc, *ours, " / ".join(paper)])
    note = [
        "",
        "The paper's softmax column is the softmax cross-entropy loss (one-hot only); ours is the softmax-factorised "
        "output head trained with ℓ2, which the paper used for its uint8 (rand) ℓ2 entry (6.93), shown here in our "
        "softmax-head column.",
    ]
    header = ["encoding", "ℓ2", "logistic", "softmax head (ℓ2)", "paper Table 6: ℓ2 / logistic / softmax"]
    return _table(header, body) + note


def _state_spaces(rows: Sequence[Row]) -> list[str]:
    body = []
    for model, sampler in (("continuous", "ddim"), ("binary", "ddim"), ("gray", "ddim"), ("random", "ddim"),
                           ("random-softmax", "ddim"), ("onehot", "ddim"), ("masked", "ddpm")):  # fmt: skip
        r = find(rows, model, sampler, 100)
        inv = "–" if r is None else f"{r['invalid_fraction']:.4f}"
        body.append([model, sampler, _cell(r), _tv(r), inv, _paper(PAPER_TABLE1.get(model))])
    header = ["model", "sampler (100 NFE)", "classifier FID (acc.)", "grey-level TV (floor)", "invalid codes",
              "paper Table 1"]  # fmt: skip
    return _table(header, body)


def _samplers(rows: Sequence[Row]) -> list[str]:
    models = [
        m for m in ("binary", "gray", "random", "continuous", "masked") if any(r["model"] == m for r in rows)
    ]
    keys = sorted({(r["sampler"], r["steps"]) for r in rows if r["model"] in models and r["mode"] == "default"
                   and not r["td"]}, key=lambda k: (k[0], k[1]))  # fmt: skip
    body = []
    for sampler, steps in keys:
        ours = [_fid(find(rows, m, sampler, steps)) for m in models]
        paper = PAPER_TABLE7.get((sampler, steps), {})
        body.append([f"{sampler} @ {steps}", *ours, " / ".join(_paper(paper.get(e)) for e in ("binary", "gray",
                                                                                                "random"))])  # fmt: skip
    return _table(["sampler @ NFE", *models, "paper Table 7: uint8 / gray / rand"], body)


def _ablations(rows: Sequence[Row]) -> list[str]:
    body = []
    for pred in ("x0", "eps"):
        for sc in (True, False):
            model = "binary" + ("-eps" if pred == "eps" else "") + ("" if sc else "-nosc")
            body.append([pred, "on" if sc else "off", _cell(find(rows, model, "ddim", 100)),
                         _fid(find(rows, model, "dpmpp2m", 20)), _paper(PAPER_TABLE8[(pred, sc)])])  # fmt: skip
    return _table(
        ["prediction", "self-cond.", "DDIM 100", "DPM-Solver++(2M) 20", "paper Table 8 (20 NFE)"], body
    )


def _td(rows: Sequence[Row]) -> list[str]:
    tds = sorted({float(r["td"]) for r in rows if r["model"] == "binary" and r["sampler"] == "ddim"})
    steps = sorted({r["steps"] for r in rows if r["model"] == "binary" and r["td"]})
    body = [[f"ddim @ {k}", *[_fid(find(rows, "binary", "ddim", k, td=td)) for td in tds]] for k in steps]
    return _table(["steps \\ td", *[f"{td:g}" for td in tds]], body) if body else ["not run"]


def _appendix_g(rows: Sequence[Row]) -> list[str]:
    body = []
    steps = sorted({r["steps"] for r in rows if r["model"] == "binary" and r["mode"] != "default"})
    for mode, extra in (
        ("default", {}),
        ("momentum", {"momentum": 0.5}),
        ("self-guidance", {"self_guidance": 3.0}),
    ):
        ours = [_cell(find(rows, "binary", "ddim", k, **extra)) for k in steps]
        body.append([mode, *ours, _paper(PAPER_TABLE9[mode]["binary"])])
    return _table(["strategy (uint8)", *[f"DDIM {k}" for k in steps], "paper Table 9 (uint8)"], body) if steps else [
        "not run"]  # fmt: skip


def _self_guidance_sweep(rows: Sequence[Row]) -> list[str]:
    """The self-guidance weights of both conventions beside the default sampler (binary, DDIM 100)."""
    default = find(rows, "binary", "ddim", 100)
    body = []
    for form, meaning in (("cfg", "x̂ + w·(x̂ − x̂∅)"), ("scale", "x̂∅ + w·(x̂ − x̂∅)")):
        for w in SELF_GUIDANCE_WEIGHTS:
            r = find(rows, "binary", "ddim", 100, self_guidance=w, self_guidance_form=form)
            if r is not None:
                body.append([f"{form}: {meaning}", f"{w:g}", _cell(r), _tv(r), str(r["nfe"]),
                             compare(default, r, "default", f"{form} w = {w:g}") or "–"])  # fmt: skip
    if not body:
        return ["not run"]
    head = ["default (no self-guidance)", "–", _cell(default), _tv(default) if default else "–", "100", ""]
    return _table(
        ["convention", "w", "DDIM 100", "grey-level TV (floor)", "NFE", "against the default"], [head, *body]
    )


def _all_rows(rows: Sequence[Row]) -> list[str]:
    body = [
        [r["model"], r["sampler"], str(r["steps"]), f"{r['td']:g}", r["mode"], _fid(r),
         f"{r['classifier_fid_floor']:.2f}", _tv(r), f"{r['class_accuracy']:.3f} ± {r['class_accuracy_se']:.3f}",
         f"{r['invalid_fraction']:.4f}", str(r["nfe"]), f"{r['seconds']:.0f}"]
        for r in sorted(rows, key=lambda r: (r["model"], r["sampler"], r["steps"], r["td"], r["mode"]))
    ]  # fmt: skip
    header = ["model", "sampler", "steps", "td", "mode", "classifier FID", "floor", "grey-level TV (floor)",
              "class acc.", "invalid", "NFE", "s"]  # fmt: skip
    if any("inception_fid" in r for r in rows):
        ordered = sorted(rows, key=lambda r: (r["model"], r["sampler"], r["steps"], r["td"], r["mode"]))
        for line, r in zip(body, ordered, strict=True):
            line.append(f"{r['inception_fid']:.1f} (floor {r['inception_fid_floor']:.1f})" if "inception_fid" in r
                        else "–")  # fmt: skip
            line.append(f"{1e3 * r['inception_kid']:.2f} (floor {1e3 * r['inception_kid_floor']:.2f})"
                        if "inception_kid" in r else "–")  # fmt: skip
        header += ["Inception FID", "KID ×10³"]
    return _table(header, body)


#: The figures the page shows, in pairs side by side: (alt text, file); only those :func:`figures` drew.
FIGURE_LINES = (
    (("likelihood bound per model", "bpd_per_model.png"), ("claims by the bound", "bpd_claims.png")),
    (("FID vs NFE", "fid_vs_nfe.png"), ("grey-level TV vs NFE", "level_tv_vs_nfe.png")),
    (("FID vs td", "fid_vs_td.png"), ("grey-level TV vs td", "level_tv_vs_td.png")),
    (("accuracy vs NFE", "accuracy_vs_nfe.png"), ("accuracy vs td", "accuracy_vs_td.png")),
    (("samples", "samples.png"),),
)


def page(rows: Sequence[Row], meta: dict[str, Any], drawn: Sequence[str] = ()) -> str:
    """The Markdown page of the study's cells."""
    ev = meta["evaluator"]
    lines = [
        "# Bit Diffusion study: encodings, losses, self-conditioning, samplers, td, Appendix G, baselines",
        "",
        f"Small-scale reproduction on `{meta['data_name']}` ({meta['num_values']} grey levels, images "
        f"{'×'.join(map(str, meta['image_shape']))}), class-conditional models of the CPU-sized recipe "
        f"({meta['train_steps']} steps each), seed {meta['seed']}, n = {meta['n']} samples per cell. "
        "Parts run into this folder (each resumable; rerun a command to finish it):",
        "",
    ]
    lines += _table(["grid", "command", "cells", "wall (min)", "training (min)", "date", "machine"],
                    [[p["grid"], f"`{p['command']}`", str(p["cells"]), f"{p['wall_minutes']:.1f}",
                      f"{p['train_minutes']:.1f}", p["date"], p["machine_line"]] for p in meta["parts"]])  # fmt: skip
    lines += [
        "",
        "**Yardsticks.** Classifier FID: Fréchet distance of the evaluation classifier's features, samples vs the "
        "train split, with a bootstrap s.e.; *floor*: the same distance for as many held-out real images (the best "
        f"a perfect model can score at this n; {meta['floor_full']:.2f} with the whole held-out split). Class "
        "accuracy: the evaluation classifier (held-out accuracy on real images "
        f"{ev.get('val_accuracy', float('nan')):.3f}) agrees with the requested class. FID is biased at small n and "
        "cannot tell cells apart within ~2 s.e.; a model that copies training images would score at the floor. "
        "The paper's numbers are Inception FIDs on CIFAR-10 / ImageNet 64×64 (50K samples): compare directions, "
        "not values. *Grey-level TV*: total-variation distance between the grey-level histograms of the samples "
        "and the train split, beside the same for the held-out images (a pixel-level check the classifier's "
        "features are blind to: a continuous model's mid-grey blur, a random code's wrong intensities).",
        "",
        "## The paper's claims against our cells",
        "",
    ]
    lines += _table(["claim (paper)", "ours"], [[c, o] for c, o in claims(rows)])
    lines += [
        "",
        "The same claims by the **likelihood bound** on the held-out split (bits per pixel-channel of "
        "−log p(x | y), a variational upper bound: lower is better; it needs no sampler; see "
        "`bitcompose.nll_bound` and docs/likelihood.md). Two models are compared by their paired per-image "
        "differences on the same held-out images, whose s.e. is far below each model's own (the images differ "
        "much more from one another than the models do). The continuous-pixel model's bound is dominated by its "
        "error near the data, weighted by e^λ up to the level where its levels are resolved: it says that this "
        "model, trained with the unweighted x0 loss, is a poor likelihood model, not that its samples are poor. "
        "The paper reports no likelihoods: these are our measurements only.",
        "",
    ]
    lines += _table(["claim (paper)", "ours, by bits / dim"], [[c, o] for c, o in bound_claims(rows)])
    sections = [
        ("Likelihood bound per model (held-out split)", _bounds(rows)),
        ("Encodings × losses (Tables 1 and 6; DDIM 100 steps)", _encodings(rows)),
        ("State spaces at 100 network evaluations (Table 1)", _state_spaces(rows)),
        ("Samplers × NFE (Table 7)", _samplers(rows)),
        ("Self-conditioning × prediction (Fig. 5, Table 8)", _ablations(rows)),
        ("Asymmetric time intervals (Fig. 6; binary, DDIM)", _td(rows)),
        ("Appendix G: momentum 0.5 and self-guidance weight 3 (Table 9)", _appendix_g(rows)),
        (
            "Self-guidance: weights and conventions (binary, DDIM 100; `--grid selfguidance`)",
            _self_guidance_sweep(rows),
        ),
        ("Every cell", _all_rows(rows)),
    ]
    for title, table in sections:
        lines += ["", f"## {title}", "", *table]
    for pair in FIGURE_LINES:
        shown = [f"![{label}]({file})" for label, file in pair if file in drawn]
        if shown:
            lines += ["", " ".join(shown)]
    lines.append("")
    return "\n".join(lines)


#: The yardsticks plotted: (row key, its s.e. key or None, reference key, axis label, file stem, reference label).
YARDSTICKS = (
    ("classifier_fid", "classifier_fid_se", "classifier_fid_floor", "classifier FID", "fid", "real-vs-real floor"),
    ("level_tv", None, "level_tv_floor", "grey-level histogram TV", "level_tv", "real-vs-real floor"),
    ("class_accuracy", "class_accuracy_se", "evaluator_val_accuracy", "class accuracy", "accuracy",
     "evaluator on real held-out images"),
)  # fmt: skip


def figures(out: Path, rows: Sequence[Row], meta: dict[str, Any]) -> list[str]:
    """``bpd_per_model.png`` (the bound of each model with its s.e.), ``bpd_claims.png`` (each model comparison
    by the bound), ``{fid,level_tv,accuracy}_vs_nfe.png`` (per
    sampler and the masked baseline), ``…_vs_td.png`` and ``samples.png`` (DDIM or ancestral sampling at 100 steps,
    one row per model), each only where the cells give it something to show.

    Returns:
        The file names drawn (the page links only these).
    """
    drawn = _bound_figure(out, rows) + _bound_claims_figure(out, rows)
    lines = {"binary ddim": ("binary", "ddim"), "binary ddpm": ("binary", "ddpm"),
             "binary dpmpp2m": ("binary", "dpmpp2m"), "masked (ancestral)": ("masked", "ddpm")}  # fmt: skip
    nfes = sorted({r["nfe"] for r in rows if r["mode"] == "default" and not r["td"]})
    steps_with_td = sorted({r["steps"] for r in rows if r["model"] == "binary" and r["td"]})
    for key, se_key, floor_key, label, name, reference in YARDSTICKS:
        have = [r for r in rows if key in r]
        floor = next((r[floor_key] for r in have), None)
        series: dict[str, list[float | None]] = {}
        errors: dict[str, list[float | None]] = {}
        for line, (model, sampler) in lines.items():
            got = [find(have, model, sampler, k) for k in nfes]
            if sum(r is not None for r in got) >= 2:
                series[line] = [None if r is None else r[key] for r in got]
                if se_key is not None:
                    errors[line] = [None if r is None else r[se_key] for r in got]
        if series and floor is not None:
            series[reference] = [floor] * len(nfes)
            line_plot(nfes, series, out / f"{name}_vs_nfe.png", xlabel="network evaluations (NFE)", ylabel=label,
                      title="Sample quality vs cost", errors=errors or None, logx=True)  # fmt: skip
            drawn.append(f"{name}_vs_nfe.png")
        if steps_with_td:
            tds = sorted({0.0} | {float(r["td"]) for r in have if r["model"] == "binary"})
            td_series: dict[str, list[float | None]] = {}
            for k in steps_with_td:
                got = [find(have, "binary", "ddim", k, td=td) for td in tds]
                td_series[f"DDIM {k} steps"] = [None if r is None else r[key] for r in got]
            if floor is not None:
                td_series[reference] = [floor] * len(tds)
            line_plot(tds, td_series, out / f"{name}_vs_td.png", xlabel="td (steps)", ylabel=label,
                      title="Asymmetric time intervals (binary, DDIM)")  # fmt: skip
            drawn.append(f"{name}_vs_td.png")
    shown: list[tuple[str, torch.Tensor]] = []
    for r in sorted(rows, key=lambda r: r["model"]):
        stem = out / "cells" / f"{r['model']}-{r['sampler']}-100"
        if r["steps"] == 100 and r["mode"] == "default" and not r["td"] and r["sampler"] in ("ddim", "ddpm"):
            path = stem.with_name(stem.name + ".pt")
            if path.is_file() and r["model"] not in {name for name, _ in shown}:
                shown.append((r["model"], torch.load(path, weights_only=True)["images"][:20].long()))
    if shown:
        labelled_rows(shown, out / "samples.png", meta["num_values"], title="100 NFE, classes 0–9 twice")
        drawn.append("samples.png")
    return drawn


def _bound_figure(out: Path, rows: Sequence[Row]) -> list[str]:
    """``bpd_per_model.png``: each model's bound on the held-out split (± 2 s.e.), lowest first."""
    models = [r for r in (model_row(rows, m) for m in sorted({r["model"] for r in rows})) if r is not None]
    if not models:
        return []
    models.sort(key=lambda r: r["bpd"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.8 * len(models)), 3.6))
    ax.bar(range(len(models)), [r["bpd"] for r in models], yerr=[2 * r["bpd_se"] for r in models],
           color=[FAMILY_COLOURS.get(r["family"], "grey") for r in models], capsize=3)  # fmt: skip
    ax.set_xticks(range(len(models)), [r["model"] for r in models], rotation=30, ha="right")
    ax.set_ylabel("bits / dim (bound; lower is better)")
    ax.set_title(f"Likelihood bound, {models[0]['bpd_num_images']} held-out images (± 2 s.e.)", fontsize=10)
    families = list(dict.fromkeys(r["family"] for r in models))
    handles = [plt.Rectangle((0, 0), 1, 1, color=FAMILY_COLOURS.get(f, "grey")) for f in families]
    ax.legend(handles, families, title="family", fontsize=8)
    save_figure(plt, fig, out / "bpd_per_model.png")
    return ["bpd_per_model.png"]


def _bound_claims_figure(out: Path, rows: Sequence[Row]) -> list[str]:
    """``bpd_claims.png``: each claim of :data:`BOUND_PAIRS` as its difference bpd(b) − bpd(a) in units of the
    paired s.e. (right of +2: the first model better; left of −2: the second), the difference written beside."""
    got = [(claim, model_row(rows, a), model_row(rows, b)) for claim, a, b, _, _ in BOUND_PAIRS]
    pairs = [(claim.rsplit(" (", 1)[0], rb["bpd"] - ra["bpd"], _difference_se(ra, rb)) for claim, ra, rb in got
             if ra is not None and rb is not None]  # fmt: skip
    if not pairs:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 1.4 + 0.45 * len(pairs)))
    y = list(range(len(pairs)))[::-1]
    z = [max(-1e6, min(1e6, _z(d, se))) for _, d, se in pairs]  # a zero-s.e. difference: far off the axis
    ax.scatter(z, y, color=["tab:green" if v >= 2 else "tab:red" if v <= -2 else "grey" for v in z], zorder=3)
    for zi, yi, (_, d, se) in zip(z, y, pairs, strict=True):
        ax.annotate(f"{d:+.3f} ± {se:.3f}", (zi, yi), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize=7)  # fmt: skip
    ax.axvspan(-2, 2, color="grey", alpha=0.15, label="within 2 s.e.")
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    reach = max(max(abs(v) for v in z), 3.0) * 1.15
    ax.set_xlim(-reach, reach)
    ax.set_ylim(-0.7, len(pairs) - 0.3)
    ax.set_yticks(y, [name for name, _, _ in pairs])
    ax.set_xlabel("difference / paired s.e. (> 2: first model better; < −2: second)")
    ax.set_title("Claims by the bound (labels: bpd difference, bits/dim)", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    save_figure(plt, fig, out / "bpd_claims.png")
    return ["bpd_claims.png"]


#: Bar colours of the model families in :func:`_bound_figure`.
FAMILY_COLOURS = {"bit": "tab:blue", "masked": "tab:orange", "continuous": "tab:green"}
