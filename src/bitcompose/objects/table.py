"""The objects experiment's table: cells (k, sampler, param) and prompt rows, resumable, with a results page.

Every finished cell is written to ``<out>/cells/<name>.json`` (and its samples to ``.pt``) at once, so an
interrupted table resumes where it stopped. ``<out>/objects.md`` is the page: the tables, the yardsticks (the
evaluator on real scenes and chance), the checks the issue asks for, the setup and the wall times;
``objects.json`` holds every row; the figures are ``accuracy_vs_k.png``, ``samples_k<k>.png`` and ``prompts.png``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from bitcompose.compose.composite_sampling import SAMPLERS
from bitcompose.core.names import ENERGY_FORMS, OBJECTS_WEIGHT
from bitcompose.experiments.compare import TableOptions, previous_section, read_previous
from bitcompose.experiments.image_models import trained_line, training_record
from bitcompose.experiments.runner import CellResult, Page, Run, run_experiment
from bitcompose.figures.plots import labelled_rows, line_plot
from bitcompose.objects.cells import MAX_K, objects_cell, yardsticks
from bitcompose.objects.evaluator import EVALUATOR_STEPS, load_or_train_evaluator
from bitcompose.objects.figures import marked_samples
from bitcompose.objects.models import DEFAULT_STEPS, PARAMS, load_or_train, model_key, objects_config
from bitcompose.objects.prompts import prompt_rows
from bitcompose.objects.sampling import MCMCSettings

__all__ = [
    "ObjectsCell",
    "ObjectsExperiment",
    "PromptsCell",
    "TablePlan",
    "run_objects_table",
    "summary_checks",
]


@dataclass(frozen=True)
class TablePlan:
    """Which cells the table runs, in the order they run (the comparisons at ``other_k`` first).

    Attributes:
        ks: object counts of reverse diffusion and HMC with the score model (accuracy vs k).
        energy_ks: object counts for the energy model (each of its steps costs ~3× a score step): k = 5, where
            reverse diffusion is far below the evaluator's ceiling at the default weight (docs/composition.md).
        samplers: run at every ``k`` (reverse and the kernel expected best).
        params: parameterisations.
        other_samplers: run only at ``other_k``, for the ``other_params`` (MALA: the second kernel with a
            Metropolis correction; ULA and U-HMC, the unadjusted ones, can be added).
        other_params: parameterisations of the kernel comparison.
        other_k: the ``k`` of the kernel comparison (5: the setting with room).
        matched_levels: a reverse-diffusion cell (score model) at ``other_k`` on this many levels, as many network
            evaluations as HMC's (0: none).
        smc: also the SMC-resampled HMC cell at ``other_k`` (energy models).
        n: samples per cell.
        prompt_n: samples per prompt row (0: no prompt rows).
        prompt_samplers: samplers of the prompt rows.
    """

    ks: tuple[int, ...] = (1, 3, 5)
    energy_ks: tuple[int, ...] = (5,)
    samplers: tuple[str, ...] = ("reverse", "hmc")
    params: tuple[str, ...] = PARAMS
    other_samplers: tuple[str, ...] = ("mala",)
    other_params: tuple[str, ...] = ("score", "energy")
    other_k: int = 5
    matched_levels: int = 300
    smc: bool = True
    n: int = 300
    prompt_n: int = 300
    prompt_samplers: tuple[str, ...] = ("reverse", "hmc")
    mcmc: MCMCSettings = field(default_factory=MCMCSettings)

    def __post_init__(self) -> None:
        bad = [s for s in (*self.samplers, *self.other_samplers, *self.prompt_samplers) if s not in SAMPLERS]
        if bad:
            raise ValueError(f"unknown samplers {bad}; choose from {', '.join(SAMPLERS)}")
        if not self.ks or any(not 1 <= k <= MAX_K for k in (*self.ks, *self.energy_ks, self.other_k)):
            raise ValueError(f"object counts must lie in 1..{MAX_K}")
        if any(p not in PARAMS for p in (*self.params, *self.other_params)):
            raise ValueError(f"params must be among {PARAMS}")
        if self.matched_levels < 0 or self.matched_levels == 1:
            raise ValueError(f"matched_levels must be 0 (none) or >= 2, got {self.matched_levels}")

    @classmethod
    def core(cls, **kw: Any) -> TablePlan:
        """The comparisons the experiment is for, within its 90-minute budget on 2 cores: reverse and HMC of both
        parameterisations at ``other_k``, the matched-cost reverse, accuracy vs k (score model); no other kernels,
        SMC or prompt rows."""
        return cls(**{"other_samplers": (), "smc": False, "prompt_n": 0, **kw})

    def ks_of(self, param: str) -> tuple[int, ...]:
        """The object counts run for ``param``."""
        return self.energy_ks if param == "energy" else self.ks

    def cells(self) -> list[ObjectsCell]:
        """Every position cell, in run order (the comparisons the experiment is for first): at ``other_k`` reverse
        and HMC of each parameterisation and the matched-cost reverse, then the other object counts (accuracy vs
        k), then the other kernels and SMC at ``other_k``."""
        grid = [
            ObjectsCell(k, s, p, self.mcmc) for p in self.params for s in self.samplers for k in self.ks_of(p)
        ]
        out = [c for c in grid if c.k == self.other_k]
        if self.matched_levels:
            out.append(ObjectsCell(self.other_k, "reverse", "score", self.mcmc, self.matched_levels))
        out += [c for c in grid if c.k != self.other_k]
        out += [
            ObjectsCell(self.other_k, s, p, self.mcmc) for p in self.other_params for s in self.other_samplers
        ]
        if self.smc and "energy" in self.params:
            smc = MCMCSettings(
                steps_per_level=self.mcmc.steps_per_level,
                step=self.mcmc.step,
                min_level=0.0,
                resample_ess=0.5,
            )
            out.append(ObjectsCell(self.other_k, "hmc", "energy", smc))
        return out


class ObjectsCell(NamedTuple):
    """One cell of the position table: ``k`` requested objects, a sampler, a parameterisation, the grid's levels."""

    k: int
    sampler: str
    param: str
    mcmc: MCMCSettings
    levels: int = 100

    @property
    def name(self) -> str:
        """The file stem (``k3-hmc-score``, ``k3-smc-hmc-energy``, ``k5-reverse-score-L300``)."""
        smc = "smc-" if self.mcmc.resample_ess is not None else ""
        levels = "" if self.levels == 100 else f"-L{self.levels}"
        return f"k{self.k}-{smc}{self.sampler}-{self.param}{levels}"


@dataclass(frozen=True)
class PromptsCell:
    """The prompt rows, stored as one cell (a list of reports)."""

    name: str = "prompts"


def _versus(name_a: str, a: dict[str, Any], name_b: str, b: dict[str, Any]) -> str:
    """``a`` vs ``b`` by accuracy: the gap in units of its s.e. and whether ``a`` is ahead by ≥ 2 s.e."""
    gap = a["accuracy"] - b["accuracy"]
    se = math.hypot(a["accuracy_se"], b["accuracy_se"])
    z = gap / se if se > 0 else (0.0 if gap == 0 else math.copysign(math.inf, gap))
    verdict = "holds" if z >= 2 else "does NOT hold"
    return (
        f"{name_a} {a['accuracy']:.3f} (NFE {a['nfe']}) vs {name_b} {b['accuracy']:.3f} (NFE {b['nfe']}): gap "
        f"{gap:+.3f} = {z:.1f} s.e. (≥ 2 s.e.: {verdict})"
    )


def summary_checks(rows: Sequence[dict[str, Any]], k_room: int = 5) -> list[str]:
    """The issue's must-show comparisons at ``k_room`` objects (the setting with room), each with its numbers and
    whether it holds, then accuracy vs k."""

    def get(k: int, sampler: str, param: str, levels: int = 100) -> dict[str, Any] | None:
        want = (k, sampler, param, levels)
        return next(
            (r for r in rows if (r["k"], r["sampler"], r["param"], r.get("levels", 100)) == want), None
        )

    out = []
    for param in PARAMS:
        rev = get(k_room, "reverse", param)
        mcmc = [r for r in rows if r["k"] == k_room and r["param"] == param and r["sampler"] != "reverse"]
        if rev is not None:
            out += [f"k = {k_room}, {param}: " + _versus(r["sampler"], r, "reverse", rev) for r in mcmc]
    matched = next((r for r in rows if r["k"] == k_room and r["sampler"] == "reverse" and
                    r.get("levels", 100) != 100), None)  # fmt: skip
    for param in PARAMS:
        hmc = get(k_room, "hmc", param)
        if matched is not None and hmc is not None:
            out.append(
                f"k = {k_room}, matched cost: {param} HMC vs reverse (score) on {matched['levels']} levels: "
                + _versus("hmc", hmc, "reverse", matched)
            )
    for sampler in ("reverse", "hmc", "mala", "smc-hmc"):
        s, e = get(k_room, sampler, "score"), get(k_room, sampler, "energy")
        if s and e:
            out.append(f"k = {k_room}, {sampler}: energy vs score: " + _versus("energy", e, "score", s))
    ks = sorted({r["k"] for r in rows if r["param"] == "score" and r["sampler"] == "hmc"})
    if len(ks) >= 2:
        lo, hi = ks[0], ks[-1]
        r_lo, r_hi, m_lo, m_hi = (get(k, s, "score") for s in ("reverse", "hmc") for k in (lo, hi))
        if r_lo is not None and r_hi is not None and m_lo is not None and m_hi is not None:
            drop_r, drop_m = r_lo["accuracy"] - r_hi["accuracy"], m_lo["accuracy"] - m_hi["accuracy"]
            se = math.sqrt(sum(r["accuracy_se"] ** 2 for r in (r_lo, r_hi, m_lo, m_hi)))
            verdict = "holds" if drop_r - drop_m >= 2 * se else "does NOT hold"
            out.append(
                f"score: fall from k = {lo} to k = {hi}: reverse {drop_r:+.3f}, hmc {drop_m:+.3f} (reverse falls "
                f"faster by ≥ 2 s.e. = {2 * se:.3f}: {verdict})"
            )
    return out


def _cell_key(r: dict[str, Any]) -> str:
    return f"k = {r['k']}, w = {r.get('weight', 4.0):g}, {r['sampler']} ({r['param']}, {r.get('levels', 100)} levels)"


def _label(cell: ObjectsCell) -> str:
    """A figure row's label: ``hmc (energy)``, ``smc-hmc (energy)``, ``reverse (score, 300 levels)``."""
    smc = "smc-" if cell.mcmc.resample_ess is not None else ""
    levels = "" if cell.levels == 100 else f", {cell.levels} levels"
    return f"{smc}{cell.sampler} ({cell.param}{levels})"


def _fmt(r: dict[str, Any]) -> str:
    acc = r.get("acceptance")
    return (
        f"| {r['k']} | {r['sampler']} | {r['param']} | {r.get('levels', 100)} | {r['accuracy']:.3f} ± {r['accuracy_se']:.3f} | "
        f"{r['nfe']} | {r['network_evaluations']} | {'–' if acc is None else f'{acc:.2f}'} | {r['seconds']:.0f} |"
    )


def _page(
    rows: Sequence[dict[str, Any]],
    prompts: Sequence[dict[str, Any]],
    sticks: dict[int, dict[str, float]],
    meta: dict[str, Any],
) -> str:
    prompt_section = _prompt_rows(prompts) if prompts else ""  # the core plan has no prompt rows
    sections = (_header(meta), _positions(rows, sticks, meta), prompt_section, _setup(meta))
    return "".join(sections)


def _header(meta: dict[str, Any]) -> str:
    return f"""# Objects at positions and prompt composition on analog-bit images (small-scale)

Command: `{meta["command"]}`
Seed {meta["seed"]} (requested cells and sampler noise; training seed 0). Machine: {meta["machine_line"]}.
Date: {meta["date"]}. Wall time: {meta["wall_minutes"]:.1f} min in total (this run), of which
{meta["train_minutes"]:.1f} min getting the models and the evaluator (training those not yet in the cache); the
cells and prompt rows took {meta["cells_minutes"]:.1f} min when they ran (their own `seconds`, kept across resumes).

A small-scale stand-in for the CLEVR experiment of "Reduce, Reuse, Recycle": 16×16 RGB scenes of 1–5 shapes on a
4×4 grid, 2 bits per channel (see `bitcompose.data.objects`), not CLEVR renders; the paper's numbers are not
comparable and are not quoted.

"""


def _positions(
    rows: Sequence[dict[str, Any]], sticks: dict[int, dict[str, float]], meta: dict[str, Any]
) -> str:
    cells = "\n".join(_fmt(r) for r in rows)
    ys = "\n".join(
        f"| {k} | {v['real_ceiling']:.3f} ({v['real_scenes']} scenes) | {v['chance']:.3f} |"
        for k, v in sorted(sticks.items())
    )
    checks = "\n".join(f"- {c}" for c in summary_checks(rows, meta["other_k"]))
    return f"""## Objects at k positions

Accuracy = share of samples in which the evaluator finds an object in every requested cell, ± its standard error
(n = {meta["n"]} per cell). NFE counts evaluations of the composite, "U-Net evals" those of the network
(k + 1 per composite evaluation; each is a forward and a backward pass for energy models and gradient samplers).

| k | sampler | param | levels | accuracy ± s.e. | NFE | U-Net evals | acceptance | seconds |
|---|---|---|---|---|---|---|---|---|
{cells}

Yardsticks on held-out real scenes: the evaluator's success when k of a scene's own objects are requested (what a
sampler whose scenes look like real ones scores; a sampler that draws cleaner scenes than the data, e.g. fewer
touching objects, can score above it, so accuracy alone does not show fidelity: look at the samples) and the
chance that k random cells are all occupied in a real scene (what a sampler that ignores the conditions but
matches the data scores):

| k | evaluator on real scenes | chance |
|---|---|---|
{ys}

Checks (the issue's must-show comparisons):
{checks}

![accuracy vs k](accuracy_vs_k.png)

![samples at k = {meta["other_k"]}](samples_k{meta["other_k"]}.png)

Each frame is green when every requested cell (white squares) holds an object according to the evaluator.

"""


def _prompt_rows(prompts: Sequence[dict[str, Any]]) -> str:
    prompt_lines = "\n".join(
        f"| {p['prompt']} | {p['operator']} | {p['sampler']} | {p['param']} | "
        f"{p['accuracy']:.3f} ± {p['accuracy_se']:.3f} | {p['share_a']:.3f} | {p['share_b']:.3f} | "
        f"{p['and_accuracy']:.3f} | {p['not_accuracy']:.3f} | {p['nfe']} | {p['seconds']:.0f} |"
        for p in prompts
    )
    return f"""## Prompt composition

A model conditioned on one object's prompt (colour and shape); "A AND B" = CFG conjunction (w, w), "A AND NOT B" =
(w, −w). Accuracy: AND = both present, NOT = A present and B absent, A = A present. The row "A" (A's model alone)
is what the operators must beat: its AND/NOT columns are the rates of the two outcomes without composition.

| prompt | operator | sampler | param | accuracy ± s.e. | A present | B present | AND ok | NOT ok | NFE | seconds |
|---|---|---|---|---|---|---|---|---|---|---|
{prompt_lines or "| (not run) |"}

![prompt samples](prompts.png)

"""


def _setup(meta: dict[str, Any]) -> str:
    ev, mc = meta["evaluator"], meta["mcmc"]
    return f"""## Setup

- Models: Bit Diffusion U-Net (base 32 channels, mults (1, 2), 1 residual block, attention at 8×8, self-conditioning,
  cosine γ(t), 100 levels), conditioned on ONE object's cell (16 classes) or prompt (12 classes) with label
  dropout 0.1 (the null condition is the unconditional model), trained with the shared trainer at batch 64,
  Adam 1e-3, EMA 0.999 with warm-up for the energy model; steps: {meta["train_steps"]}. Score = x0-prediction;
  energy = {ENERGY_FORMS[meta.get("energy_form", "diff")]}, on the U-Net output with double backprop. Each model's
  steps and training wall time (from its `metrics.jsonl`, on the machine of the run that trained it):
  {trained_line(meta["trained"])}.
- Composition: consistent CFG conjunction, w = {meta["weight"]} per condition.
- Samplers: `reverse` = ancestral steps with the composed score on the grid of `levels` levels (100; the
  matched-cost row as many as HMC's network evaluations). MCMC = the 100 reverse steps plus
  {mc["steps_per_level"]} kernel steps at every level ≥ {mc["min_level"] * 100:g} of 100 (the paper's CLEVR code: MCMC on the
  noisier half), step {mc["step"]}·σ_t (leapfrog ε for U-HMC/HMC with 3 leapfrog steps and damping 0.5;
  Langevin η = (step·σ_t)² for ULA/MALA). Metropolis corrections: exact energies for energy models, the
  trapezoid estimate for score models. `smc-hmc`: annealed HMC from noise at every level with SMC resampling
  within each group of samples asking for the same cells, when the group's ESS falls below half its size, then
  the final step (energy models).
- Evaluator: the in-project CNN with 28 sigmoid outputs (16 cells, 12 prompts), {EVALUATOR_STEPS} steps on the
  training scenes (never on generated images). Held-out accuracy per output: cells {ev["cell_accuracy"]:.4f},
  prompts {ev["prompt_accuracy"]:.4f}; whole image exact: cells {ev["image_cells_exact"]:.4f}, prompts
  {ev["image_prompts_exact"]:.4f}.
"""


@dataclass
class ObjectsExperiment(TableOptions):
    """The objects table on the harness (:func:`~bitcompose.experiments.runner.run_experiment`)."""

    plan: TablePlan
    seed: int = 0
    weight: float = OBJECTS_WEIGHT
    cache: str | Path | None = None
    progress: bool = True
    name: str = "objects"

    def _steps(self, param: str) -> int:
        return self.steps_of(param, DEFAULT_STEPS)

    def settings(self) -> dict[str, Any]:
        """Seed, n, the conjunction's weight and the MCMC settings every cell shares, and the cache key of each
        model (a changed recipe is another model: its old cells are not reused)."""
        plan = self.plan
        return {
            "seed": self.seed,
            "n": plan.n,
            "prompt_n": plan.prompt_n,
            "weight": self.weight,
            "mcmc": vars(plan.mcmc),
            "models": {f"{c}-{p}": model_key(c, p, self._steps(p)) for c, p in self._models()},
        }

    def _models(self) -> list[tuple[str, str]]:
        """``(condition, param)`` of every model the table needs."""
        plan = self.plan
        return [("position", p) for p in plan.params] + ([("prompt", "score")] if plan.prompt_n else [])

    def prepare(self, log: Callable[[str], None]) -> dict[str, Any]:
        """Train or load the models and the evaluator."""
        plan = self.plan
        seconds: dict[str, float] = {}
        trained: dict[str, dict[str, Any]] = {}
        for condition, param in self._models():
            t0 = time.perf_counter()
            model = load_or_train(
                condition, param, steps=self._steps(param), cache=self.cache, progress=self.progress
            )
            seconds[f"{condition}-{param}"] = round(time.perf_counter() - t0, 1)
            log(f"model {condition}-{param}: step {model.step} ({seconds[f'{condition}-{param}']:.0f} s)")
            trained[f"{condition}-{param}"] = training_record(model)
        evaluator = load_or_train_evaluator(self.cache, progress=self.progress)
        return {
            "other_k": plan.other_k,
            "energy_form": objects_config("position", "energy").model.energy,
            "train_steps": {p: self._steps(p) for p in plan.params},
            "train_seconds": seconds,
            "trained": trained,
            "evaluator": evaluator.info,
        }

    def cells(self) -> list[ObjectsCell | PromptsCell]:
        """The position cells, then the prompt rows (when the plan has them)."""
        return [*self.plan.cells(), *([PromptsCell()] if self.plan.prompt_n else [])]

    def run_cell(self, cell: ObjectsCell | PromptsCell) -> CellResult:
        """A position cell's samples and report, or the prompt rows' images and reports."""
        plan = self.plan
        if isinstance(cell, PromptsCell):
            res = prompt_rows(
                samplers=plan.prompt_samplers, n=plan.prompt_n, seed=self.seed, weight=self.weight,
                mcmc=plan.mcmc, train_steps=self._steps("score"), cache=self.cache, progress=self.progress,
            )  # fmt: skip
            return CellResult([r.report for r in res], {"images": [r.images for r in res]})
        return objects_cell(
            cell.k, cell.sampler, param=cell.param, n=plan.n, seed=self.seed, weight=self.weight, mcmc=cell.mcmc,
            levels=cell.levels, train_steps=self._steps(cell.param), cache=self.cache, progress=self.progress,
        )  # fmt: skip

    def describe(self, report: Any) -> str:
        """Accuracy of a finished cell (or how many prompt rows)."""
        if isinstance(report, list):
            return f"{len(report)} prompt rows"
        return f"accuracy {report['accuracy']:.3f} ± {report['accuracy_se']:.3f} ({report['seconds']:.0f} s)"

    def render(self, out: Path, run: Run) -> Page:
        """The figures, the page and the JSON (position rows, prompt rows, yardsticks)."""
        plan = self.plan
        cells = self.plan.cells()
        rows = run.rows[: len(cells)]
        prompts: list[dict[str, Any]] = run.rows[len(cells)] if plan.prompt_n else []
        shown = {_label(c): run.tensors[c.name] for c in cells if c.k == plan.other_k}
        prompt_images = (
            [
                (f"{p['prompt']} ({p['sampler']})", im[:10])
                for p, im in zip(prompts, run.tensors["prompts"]["images"], strict=True)
            ]
            if plan.prompt_n
            else []
        )
        evaluator = load_or_train_evaluator(self.cache, progress=self.progress)
        sticks = {
            k: yardsticks(evaluator, k, self.seed) for k in sorted({*plan.ks, *plan.energy_ks, plan.other_k})
        }
        _figures(out, rows, shown, prompt_images, plan)
        data = {"meta": run.meta, "cells": rows, "prompts": prompts, "yardsticks": sticks}
        beside = ""
        if self.previous is not None:
            before, meta = read_previous(self.previous)
            beside = previous_section(
                before, rows, str(self.previous), meta, _cell_key, ("accuracy", "nfe"),
                "k, weight, sampler, parameterisation and levels",
            )  # fmt: skip
        return Page(_page(rows, prompts, sticks, run.meta) + beside, data)


def run_objects_table(
    out: str | Path,
    *,
    plan: TablePlan | None = None,
    seed: int = 0,
    weight: float = OBJECTS_WEIGHT,
    cache: str | Path | None = None,
    command: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the table into ``out`` and write ``objects.md``, ``objects.json`` and the figures."""
    experiment = ObjectsExperiment(plan or TablePlan(), seed, weight, cache, progress)
    _, page = run_experiment(
        experiment, out, command=command or "bitcompose compose objects --table", log=log
    )
    return page.data


def _figures(
    out: Path,
    rows: Sequence[dict[str, Any]],
    shown: dict[str, dict[str, torch.Tensor]],
    prompt_images: Sequence[tuple[str, torch.Tensor]],
    plan: TablePlan,
) -> None:
    xs = sorted({*plan.ks, *plan.energy_ks})
    series: dict[str, list[float | None]] = {}
    errors: dict[str, list[float | None]] = {}
    for param in plan.params:
        for sampler in plan.samplers:
            name = f"{sampler} ({param})"
            by_k = {r["k"]: r for r in rows if r["sampler"] == sampler and r["param"] == param}
            series[name] = [by_k[k]["accuracy"] if k in by_k else None for k in xs]
            errors[name] = [by_k[k]["accuracy_se"] if k in by_k else None for k in xs]
    line_plot(
        xs,
        series,
        out / "accuracy_vs_k.png",
        xlabel="objects requested (k)",
        ylabel="accuracy (all requested cells filled)",
        title=f"objects at positions, n = {plan.n} per point (± s.e.)",
        errors=errors,
    )
    marked_samples(
        [(name, t["images"][:10], t["cells"][:10], t["success"][:10]) for name, t in shown.items()],
        out / f"samples_k{plan.other_k}.png",
        title=f"k = {plan.other_k} requested cells (white); green frame = all found",
    )
    if prompt_images:
        labelled_rows(
            prompt_images, out / "prompts.png", 4, title="prompt composition (first 10 samples per row)"
        )
