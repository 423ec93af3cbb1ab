"""The page of the molecules experiment: ``molecules.md`` with its tables, ``molecules.png`` (drawn molecules)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bitcompose.experiments.runner import Page, Run
from bitcompose.seq.molecules import METRICS

__all__ = ["render_page", "draw_grid"]

GRID_FILE = "molecules.png"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def draw_grid(smiles: list[str], path: Path, *, per_row: int = 6, limit: int = 24) -> int:
    """Draw up to ``limit`` valid molecules of ``smiles`` (RDKit) into a PNG; returns how many were drawn."""
    from rdkit import Chem, rdBase
    from rdkit.Chem import Draw

    rdBase.DisableLog("rdApp.*")
    mols = [m for m in (Chem.MolFromSmiles(s) for s in smiles if s) if m is not None][:limit]
    if not mols:
        return 0
    image = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(220, 180), legends=[""] * len(mols))
    tmp = path.with_name(f".{path.name}.tmp.png")
    image.save(tmp)
    tmp.replace(path)
    return len(mols)


def _row(report: dict[str, Any], label: str, nfe: str, seconds: str) -> str:
    cols = " | ".join(_fmt(report.get(k)) for k in METRICS)
    return f"| {label} | {nfe} | {cols} | {seconds} |"


def render_page(table: Any, out: Path, run: Run) -> Page:
    """The markdown of a run of :class:`~bitcompose.seq.table.MoleculesTable` and its JSON."""
    from bitcompose.seq.table import PUBLISHED

    meta = run.meta
    cells = dict(zip([c.name for c in table.cells()], run.rows, strict=True))
    samples = {k: v for k, v in cells.items() if "nfe" in v}
    floor = cells["floor"]
    head = "| model | NFE | " + " | ".join(METRICS) + " | seconds |"
    sep = "|" + "---|" * (len(METRICS) + 3)
    lines = [
        "# Molecules (MOSES): Bit Diffusion and the absorbing-state baseline, a small-scale CPU run",
        "",
        "Both models are the same non-causal Transformer over the same SMILES tokens, trained with the same "
        "budget (steps, batch, optimiser) on MOSES's training split and scored with MOSES's metrics "
        "(`bitcompose.seq.molecules`, cross-checked against `moses.metrics` in `tests/test_seq_models.py`). "
        "Every row is "
        f"{table.n} molecules; the floor is {table.n} MOSES training molecules scored the same way (MOSES's "
        '"Train" row: what the yardstick gives real molecules at this n; its novelty is 0 by definition).',
        "",
        f"- Command: `{meta['command']}`",
        f"- Machine: {meta['machine_line']}",
        f"- Date: {meta['date']}; seed {table.seed} (sampling), models trained with seed 0; wall time "
        f"{meta['wall_minutes']:.1f} min (training {meta['train_minutes']:.1f} min of it in this call; 0 when "
        "the models came from the cache).",
        "",
        "## Training (same budget for both)",
        "",
        "| model | parameters | steps × batch | precision | minutes | final loss |",
        "|---|---|---|---|---|---|",
    ]
    for m, t in meta["train"].items():
        batch = t["run"]["batch_size"]
        lines.append(
            f"| {m} | {t['parameters']:,} | {t['steps']} × {batch} | {t['precision']} | "
            f"{t['train_seconds'] / 60:.1f} | {_fmt(t['final_loss'])} |"
        )
    lines += [
        "",
        f"Network: {meta['train']['bits']['net']['depth']} layers × {meta['train']['bits']['net']['dim']} wide, "
        f"L = {meta['train']['bits']['net']['max_len']} tokens, V = {meta['train']['bits']['net']['vocab_size']} "
        "SMILES tokens (5 analog bits each for the bits model; one-hot for the absorbing-state model). The bits "
        "model's loss is the paper's bit MSE plus 0.5 × a label-smoothed cross-entropy on its softmax head "
        "(`ce_weight`); the absorbing-state loss is its ELBO.",
        "",
        "## Samples scored by MOSES's metrics",
        "",
        head,
        sep,
    ]
    for report in samples.values():
        label = f"{report['model']} {report['sampler']}"
        lines.append(_row(report, label, str(report["nfe"]), f"{report['sample_seconds']:.0f}"))
    lines.append(_row(floor, "**floor**: MOSES train", "–", "–"))
    lines += [
        "",
        "`seconds`: sampling only (metrics excluded). Bits rows also count positions whose 5 bits named no token "
        "(read as the end token): "
        + ", ".join(
            f"{k} {100 * v['invalid_codes']:.2f} %" for k, v in samples.items() if v["model"] == "bits"
        )
        + ".",
        "",
        "## Likelihood bound on MOSES test molecules",
        "",
        "| model | nats per molecule (± s.e.) | bits per token |",
        "|---|---|---|",
    ]
    for m in ("bits", "masked"):
        b = cells[f"bound-{m}"]
        lines.append(f"| {m} | {b['nll_nats']:.1f} ± {b['nll_nats_se']:.1f} | {b['bits_per_token']:.3f} |")
    lines += [
        "",
        f"Both on the first {cells['bound-bits']['n']} test molecules, in the same units (−log p of the padded "
        "token sequence, a bijection of the SMILES string): the continuous-time bound of the bits model "
        "(`nll_bound`, VDM's form with the lattice decoder, self-conditioned with its own first pass) and the "
        "absorbing-state ELBO. Lower is better; unlike validity it cannot be gamed by a model that memorises.",
        "",
        "## MOSES's published table (the peer table; 30,000 samples per model)",
        "",
        "| model | valid | FCD/Test |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {v:.3f} | {f:.3f} |" for name, (v, f) in PUBLISHED.items()]
    best = samples.get("bits-ddim-100", next(iter(samples.values())))
    masked = samples.get("masked-ancestral-100", best)
    checks = [
        ("valid ≥ 0.7", best["valid"] >= 0.7, f"{best['valid']:.3f}"),
        ("unique@1k ≥ 0.95", best["unique@1k"] >= 0.95, _fmt(best["unique@1k"])),
        ("novelty ≥ 0.8", best["novelty"] >= 0.8, _fmt(best["novelty"])),
        ("FCD/Test below NGram's 5.507", best["FCD/Test"] < 5.507, _fmt(best["FCD/Test"], 2)),
    ]
    lines += [
        "",
        "Source: the molecularsets/moses README (current version; older versions carry earlier figures). FCD is "
        f"biased upwards at small n: our rows use n = {table.n}, so compare them with the floor row at the same "
        f"n (FCD/Test {_fmt(floor['FCD/Test'], 2)}), not with 30,000-sample figures.",
        "",
        "## The issue's bar, for bits DDIM 100 steps",
        "",
        "| requirement | met | value |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'yes' if ok else '**no**'} | {value} |" for name, ok, value in checks]
    lines += [
        "",
        f"Absorbing-state at the same 100 network evaluations: valid {masked['valid']:.3f}, FCD/Test "
        f"{_fmt(masked['FCD/Test'], 2)}.",
        "",
    ]
    shown_name, shown = max(samples.items(), key=lambda kv: kv[1]["valid"])
    drawn = draw_grid(shown.get("examples", []), out / GRID_FILE)
    if drawn:
        lines += [
            f"![{GRID_FILE}]({GRID_FILE})",
            "",
            f"Drawn by RDKit: the first {drawn} valid molecules among the first 100 samples of `{shown_name}`, the cell "
            "with the most valid molecules.",
            "",
        ]
    else:
        lines += ["No cell produced a valid molecule among its first 100 samples: nothing to draw.", ""]
    return Page("\n".join(lines), {"meta": meta, "cells": cells})
