"""The guidance experiment's table: cells (scale, sampler, param, levels), resumable, with a results page.

Every finished cell is written to ``<out>/cells/<name>.json`` (its samples to ``.pt``) at once, so an interrupted
table resumes where it stopped. ``<out>/guidance.md`` is the page (:mod:`bitcompose.guidance.page`),
``guidance.json`` holds every row, the figures are ``accuracy_vs_scale.png``, ``fid_vs_scale.png``,
``guide_accuracy.png`` and ``samples.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bitcompose.compose.composite_sampling import SAMPLERS, MCMCSettings
from bitcompose.experiments.compare import TableOptions, read_previous
from bitcompose.experiments.image_models import dataset_record, training_record
from bitcompose.experiments.runner import CellResult, Page, Run, run_experiment
from bitcompose.guidance.cells import evaluator, guidance_cell
from bitcompose.guidance.data import DATASETS, guidance_dataset
from bitcompose.guidance.guide import load_or_train_guide
from bitcompose.guidance.models import DEFAULT_STEPS, PARAMS, guidance_config, load_or_train, model_key
from bitcompose.guidance.page import figures, page, previous_section
from bitcompose.metrics.image_scores import fid_floor

__all__ = ["Cell", "GuidanceExperiment", "GuidancePlan", "run_guidance_table"]


@dataclass(frozen=True)
class Cell:
    """One cell of the table."""

    scale: float
    sampler: str
    param: str
    levels: int
    mcmc: MCMCSettings

    @property
    def name(self) -> str:
        """The file stem of the cell (``w4-hmc-score``, ``w4-reverse-score-300lv``, ``w4-smc-hmc-energy``)."""
        smc = "smc-" if self.mcmc.resample_ess is not None and self.sampler != "reverse" else ""
        levels = "" if self.levels == 100 else f"-{self.levels}lv"
        return f"w{self.scale:g}-{smc}{self.sampler}-{self.param}{levels}"


@dataclass(frozen=True)
class GuidancePlan:
    """Which cells the table runs.

    Attributes:
        dataset: ``mnist``, ``fashion_mnist`` or ``digits``.
        scales: guidance scales of the main samplers (score model).
        samplers: run at every scale (reverse and the kernel expected best).
        other_samplers: the remaining kernels, only at ``other_scale``.
        other_scale: the scale of the kernel comparison (1: where reverse diffusion leaves room; from w = 2 on every
            sampler is near the evaluator's ceiling on MNIST).
        energy_scales: the scales of the energy-vs-score comparison (0.5 and 1: where reverse diffusion is well
            below the ceiling, chosen from the reverse cells of the score model only): the energy model with every
            ``energy_samplers`` sampler, the score model with the same samplers, and the matched-NFE baseline.
        energy_samplers: samplers of the energy model at ``energy_scales`` (empty: no energy cells): reverse
            diffusion, and the kernels with an exact Metropolis correction (HMC, MALA).
        matched_levels: a reverse cell at ``other_scale`` and at each of ``energy_scales`` with this many levels
            (its NFE near the MCMC cells'; 0: none).
        baseline: also the unguided model (scale 0, reverse).
        smc: also SMC-resampled HMC of the energy model at each of ``energy_scales`` (resampling within each
            requested class).
        levels: levels of the annealing grid of every other cell (100).
        n: samples per cell.
        mcmc: the MCMC settings of every MCMC cell.
    """

    dataset: str = "mnist"
    scales: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    samplers: tuple[str, ...] = ("reverse", "hmc")
    other_samplers: tuple[str, ...] = ("ula", "mala", "uhmc")
    other_scale: float = 1.0
    energy_scales: tuple[float, ...] = (0.5, 1.0)
    energy_samplers: tuple[str, ...] = ("reverse", "hmc", "mala")
    matched_levels: int = 300
    baseline: bool = True
    smc: bool = True
    levels: int = 100
    n: int = 300
    mcmc: MCMCSettings = field(default_factory=MCMCSettings)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        for s in (*self.samplers, *self.other_samplers, *self.energy_samplers):
            if s not in SAMPLERS:
                raise ValueError(f"unknown sampler {s!r}; choose from {', '.join(SAMPLERS)}")
        if self.n < 2 or any(w < 0 for w in (*self.scales, self.other_scale, *self.energy_scales)):
            raise ValueError(f"a plan needs n >= 2 and scales >= 0: {self}")

    @property
    def params(self) -> tuple[str, ...]:
        """The parameterisations the plan needs."""
        return PARAMS if self.energy_samplers else ("score",)

    def cells(self) -> list[Cell]:
        """Every cell, in running order (score cells first: the energy model is the slow one)."""
        plain = MCMCSettings(**{**vars(self.mcmc), "resample_ess": None})
        lv = self.levels
        out = [Cell(0.0, "reverse", "score", lv, plain)] if self.baseline else []
        out += [Cell(w, s, "score", lv, plain) for w in self.scales for s in self.samplers]
        out += [Cell(self.other_scale, s, "score", lv, plain) for s in self.other_samplers]
        # the score side of the energy comparison, where the cells above lack it
        have = {(c.scale, c.sampler) for c in out}
        energy_scales = self.energy_scales if self.energy_samplers else ()
        out += [Cell(w, s, "score", lv, plain) for w in energy_scales for s in self.energy_samplers
                if (w, s) not in have]  # fmt: skip
        if self.matched_levels:
            matched = sorted({self.other_scale, *energy_scales})
            out += [Cell(w, "reverse", "score", self.matched_levels, plain) for w in matched]
        out += [Cell(w, s, "energy", lv, plain) for w in energy_scales for s in self.energy_samplers]
        if self.smc and self.energy_samplers:
            smc = MCMCSettings(**{**vars(self.mcmc), "resample_ess": self.mcmc.resample_ess or 0.5})
            out += [Cell(w, "hmc", "energy", lv, smc) for w in energy_scales]
        return out


@dataclass
class GuidanceExperiment(TableOptions):
    """The guidance table on the harness (:func:`~bitcompose.experiments.runner.run_experiment`)."""

    plan: GuidancePlan
    seed: int = 0
    cache: str | Path | None = None
    progress: bool = True
    name: str = "guidance"

    def _steps(self, param: str) -> int:
        return self.steps_of(param, DEFAULT_STEPS)

    def settings(self) -> dict[str, Any]:
        """The data set, seed, n and MCMC settings every cell shares, and the cache key of each model (a changed
        recipe is another model: its old cells are not reused)."""
        return {
            "dataset": self.plan.dataset,
            "seed": self.seed,
            "n": self.plan.n,
            "mcmc": vars(self.plan.mcmc),
            "models": {p: model_key(self.plan.dataset, p, self._steps(p)) for p in self.plan.params},
        }

    def prepare(self, log: Callable[[str], None]) -> dict[str, Any]:
        """Train or load the models, the guide and the evaluator."""
        plan = self.plan
        trained: dict[str, dict[str, Any]] = {}
        for param in plan.params:
            model = load_or_train(
                plan.dataset, param, steps=self._steps(param), cache=self.cache, progress=self.progress
            )
            trained[param] = training_record(model)
            log(f"model {plan.dataset}-{param}: step {model.step}")
        guide = load_or_train_guide(plan.dataset, cache=self.cache, progress=self.progress)
        judge = evaluator(plan.dataset, self.cache, self.progress)
        data = guidance_dataset(plan.dataset)
        return {
            **dataset_record(data),
            "other_scale": plan.other_scale,
            "energy_form": guidance_config(plan.dataset, "energy").model.energy,
            "train_steps": {p: self._steps(p) for p in plan.params},
            "trained": trained,
            "guide": guide.info,
            "evaluator": judge.info,
            "floor_full": fid_floor(judge, data),
        }

    def cells(self) -> list[Cell]:
        """The plan's cells."""
        return self.plan.cells()

    def run_cell(self, cell: Cell) -> CellResult:
        """One guided cell's samples and report."""
        return guidance_cell(
            self.plan.dataset, cell.scale, cell.sampler, param=cell.param, n=self.plan.n, seed=self.seed,
            mcmc=cell.mcmc, levels=cell.levels, train_steps=self._steps(cell.param), cache=self.cache,
            progress=self.progress,
        )  # fmt: skip

    def describe(self, report: dict[str, Any]) -> str:
        """Accuracy and FID of a finished cell."""
        return (
            f"accuracy {report['accuracy']:.3f} ± {report['accuracy_se']:.3f}, classifier FID "
            f"{report['classifier_fid']:.2f} ± {report['classifier_fid_se']:.2f} ({report['seconds']:.0f} s)"
        )

    def render(self, out: Path, run: Run) -> Page:
        """The figures and the page."""
        shown_scales = (0.0, min(self.plan.scales, default=0.0), self.plan.other_scale)
        shown = {c.name: run.tensors[c.name] for c in self.cells() if c.scale in shown_scales}
        figures(out, run.rows, shown, run.meta, self.plan.scales)
        beside = ""
        if self.previous is not None:
            before, meta = read_previous(self.previous)
            beside = previous_section(before, run.rows, str(self.previous), meta)
        return Page(page(run.rows, run.meta) + beside)


def run_guidance_table(
    out: str | Path,
    *,
    plan: GuidancePlan | None = None,
    seed: int = 0,
    cache: str | Path | None = None,
    command: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the table into ``out`` and write ``guidance.md``, ``guidance.json`` and the figures."""
    plan = plan or GuidancePlan()
    experiment = GuidanceExperiment(plan, seed, cache, progress)
    default = f"bitcompose compose guidance --dataset {plan.dataset} --table"
    run, _ = run_experiment(experiment, out, command=command or default, log=log)
    return {"meta": run.meta, "cells": run.rows}
