"""The full 2-D benchmark: every task × parameterisation × sampler, written to ``docs/results/toy2d.{md,png}``.

Training (10 models: the score mixture is not applicable) and sampling (45 cells, 15 of them with the
closed-form ``exact`` component densities, which need no training and cost seconds) are spread over ``workers``
single-threaded processes; trained models land in the cache first, so the sampling workers only load them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from bitcompose.experiments.runner import CellResult, Page, Run, run_experiment
from bitcompose.toy2d.metrics import MMD_BANDWIDTH
from bitcompose.toy2d.report import format_value, markdown_table, render_figure
from bitcompose.toy2d.run import (
    CELL_PARAMS,
    PAPER_TRAIN_STEPS,
    SAMPLERS,
    TABLE_N,
    CellOptions,
    component_configs,
    run_cell,
)
from bitcompose.toy2d.tasks import TASKS
from bitcompose.toy2d.train import PARAMS, TrainConfig, load_or_train

__all__ = ["Toy2dCell", "Toy2dExperiment", "load_cells", "run_table", "save_cells", "summary_checks"]

# Relative sampling cost of a cell (composite evaluations per step × network cost), to schedule big jobs first.
_COST = {"reverse": 0.1, "ula": 1.0, "mala": 2.0, "uhmc": 3.0, "hmc": 4.0}
_PARAM_COST = {"energy": 3.0, "score": 1.0, "exact": 0.1}


def _init_worker() -> None:
    torch.set_num_threads(1)


def _train_job(config: TrainConfig, cache: str | None) -> tuple[str, float, bool]:
    res = load_or_train(config, cache=cache)
    return config.key(), res.seconds, res.from_cache


def summary_checks(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-language checks of the headline claims, computed from the table rows."""

    def get(task: str, param: str, sampler: str) -> dict[str, Any] | None:
        for r in rows:
            if (r["task"], r["param"], r["sampler"]) == (task, param, sampler):
                return r
        return None

    out = []
    hmc, rev = get("product", "energy", "hmc"), get("product", "energy", "reverse")
    if hmc and rev and hmc.get("log_likelihood") is not None and rev.get("log_likelihood") is not None:
        gap = hmc["log_likelihood"] - rev["log_likelihood"]
        out.append(
            f"product, energy: HMC LL {hmc['log_likelihood']:.3f} (target ≥ 3.2; oracle "
            f"{hmc['oracle_log_likelihood']:.3f}) vs reverse diffusion {rev['log_likelihood']:.3f}: "
            f"gap {gap:+.3f} nats (target ≥ +0.3)"
        )
    for task, goal in (("mixture", 0.95), ("negation", 0.90)):
        cand = [
            r for r in rows if r["task"] == task and r["param"] in PARAMS and r.get("in_support") is not None
        ]
        if cand:
            best = max(cand, key=lambda r: r["in_support"])
            out.append(
                f"{task}: best in-support fraction {best['in_support']:.3f} ({best['param']} {best['sampler']}; "
                f"target ≥ {goal})"
            )
    for task in TASKS:
        exact = [r for r in rows if r["task"] == task and r["param"] == "exact" and r.get("applicable", True)]
        if exact:
            cells = ", ".join(
                f"{r['sampler']} {format_value(r['log_likelihood'])} / {format_value(r['in_support'])}"
                for r in exact
            )
            out.append(f"{task} with exact component densities (LL / in-support): {cells}")
    return out


class Toy2dCell(NamedTuple):
    """One cell of the table."""

    task: str
    param: str
    sampler: str

    @property
    def name(self) -> str:
        """The file stem (``product-energy-hmc``)."""
        return f"{self.task}-{self.param}-{self.sampler}"


@dataclass
class Toy2dExperiment:
    """The 2-D benchmark on the harness: every task × parameterisation × sampler (picklable: cells run in
    ``workers`` single-threaded processes)."""

    options: CellOptions = field(default_factory=lambda: CellOptions(n=TABLE_N))
    tasks: Sequence[str] = tuple(TASKS)
    params: Sequence[str] = CELL_PARAMS
    samplers: Sequence[str] = SAMPLERS
    workers: int = 2
    name: str = "toy2d"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.options.resample_ess is not None and "score" in self.params:
            raise ValueError(
                "--resample-ess needs energies: add --params energy,exact (score models have none)"
            )
        if not self.options.use_cache:
            raise ValueError("the table always uses the model cache")

    def settings(self) -> dict[str, Any]:
        """Every option of the cells but the cache's location, and the cache entries of the trained models (a
        changed recipe is another model: its old cells are not reused)."""
        options = {k: v for k, v in vars(self.options).items() if k not in ("cache", "use_cache")}
        return {**options, "models": {c.name(): c.key() for c in self._configs()}}

    def _configs(self) -> list[TrainConfig]:
        o, configs = self.options, []
        for task in self.tasks:
            for param in self.params:
                if param not in PARAMS or (TASKS[task].needs_energy and param == "score"):
                    continue
                for cfg in component_configs(
                    task, param, o.train_steps, o.train_seed, o.train_batch, schedule=o.schedule
                ):
                    if cfg not in configs:
                        configs.append(cfg)
        return sorted(configs, key=lambda c: c.param != "energy")  # expensive (double-backprop) models first

    def prepare(self, log: Callable[[str], None]) -> dict[str, Any]:
        """Train the component models into the cache (in ``workers`` processes); the cells only load them."""
        configs = self._configs()
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker) as pool:
            trained = list(pool.map(_train_job, configs, [self.options.cache] * len(configs)))
        for key, secs, hit in trained:
            log(f"model {key}: {'cache hit' if hit else f'trained in {secs:.0f} s'}")
        return {
            "workers": self.workers,
            "models_total": len(trained),
            "models_fresh": sum(1 for _, _, hit in trained if not hit),
        }

    def cells(self) -> list[Toy2dCell]:
        """Every cell, in the page's order."""
        return [Toy2dCell(t, p, s) for t in self.tasks for p in self.params for s in self.samplers]

    def cost(self, cell: Toy2dCell) -> float:
        """Relative cost (composite evaluations per step × network cost): the pool starts the big cells first."""
        return _COST[cell.sampler] * _PARAM_COST[cell.param]

    def run_cell(self, cell: Toy2dCell) -> CellResult:
        """One cell's metrics and samples (none for a cell that does not apply)."""
        return run_cell(cell.task, cell.param, cell.sampler, self.options)

    def describe(self, report: dict[str, Any]) -> str:
        """LL and share in support."""
        return f"LL {report['log_likelihood']} in_support {report['in_support']} ({report['seconds']:.0f} s)"

    def render(self, out: Path, run: Run) -> Page:
        """``toy2d_cells.json`` and ``toy2d_samples.safetensors`` (every cell), the figure and the page."""
        cells = [(r, run.tensors[c.name].get("samples")) for c, r in zip(self.cells(), run.rows, strict=True)]
        save_cells(cells, out)
        render_figure(cells, out / "toy2d.png")
        return Page(_document(run.rows, run.meta))


def run_table(
    out_dir: str | Path,
    experiment: Toy2dExperiment | None = None,
    *,
    command: str | None = None,
    log: Callable[[str], None] = lambda line: print(f"[toy2d] {line}", file=sys.stderr),
) -> list[dict[str, Any]]:
    """Run (or resume) every cell into ``out_dir``, write ``toy2d.md`` and ``toy2d.png`` there; the metric rows."""
    experiment = experiment or Toy2dExperiment()
    default = f"bitcompose toy2d --table --out {out_dir}"
    run, _ = run_experiment(
        experiment, out_dir, command=command or default, workers=experiment.workers, log=log
    )
    return run.rows


def save_cells(cells: Sequence[tuple[dict[str, Any], Tensor | None]], out_dir: str | Path) -> None:
    """Store every cell's metrics (``toy2d_cells.json``) and samples (``toy2d_samples.safetensors``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "toy2d_cells.json").write_text(json.dumps([m for m, _ in cells], indent=1))
    tensors = {f"{m['task']}/{m['param']}/{m['sampler']}": s.contiguous() for m, s in cells if s is not None}
    save_file(tensors, str(out / "toy2d_samples.safetensors"))


def load_cells(out_dir: str | Path) -> list[tuple[dict[str, Any], Tensor | None]]:
    """The cells written by :func:`save_cells` (samples ``None`` for non-applicable cells)."""
    out = Path(out_dir)
    rows = json.loads((out / "toy2d_cells.json").read_text())
    tensors = load_file(str(out / "toy2d_samples.safetensors"))
    return [(m, tensors.get(f"{m['task']}/{m['param']}/{m['sampler']}")) for m in rows]


def _document(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    m = meta
    train_steps, train_batch, train_seed = m["train_steps"], m["train_batch"], m["train_seed"]
    steps_per_level, resample_ess, schedule = m["steps_per_level"], m["resample_ess"], m["schedule"]
    total_models = m["models_total"]
    machine = f"{m['machine_line']}, {m['workers']} worker processes × 1 thread"
    checks = "\n".join(f"- {c}" for c in summary_checks(rows))
    paper = train_steps == PAPER_TRAIN_STEPS and train_batch == 1000
    steps_note = (
        "the paper's setting"
        if paper
        else f"the paper's setting is `--train-steps {PAPER_TRAIN_STEPS} --train-batch 1000`"
    )
    training = (
        f"models trained with seed {train_seed} for {train_steps} steps at batch {train_batch} ({steps_note})"
        if total_models
        else "no trained models (exact component densities only)"
    )
    smc = (
        ""
        if resample_ess is None
        else f", with SMC resampling between levels when the ESS drops below {resample_ess}·n (an extension)"
    )
    return f"""# 2-D composition benchmark (Reduce, Reuse, Recycle)

Command: `{m["command"]}`
Sampling seed {m["seed"]}, {m["n"]} samples per cell; {training}.
Machine: {machine}. Date: {m["date"]}.
Wall time: {m["wall_minutes"]:.1f} min in total, of which {m["train_minutes"]:.1f} min training ({m["models_fresh"]} of
{total_models} models trained, the rest loaded from the cache); the cells took {m["cells_minutes"]:.1f} min when they
ran (their own times, kept across resumes).

## Results

{markdown_table(rows)}
Checks:
{checks}

![samples](toy2d.png)

The runs at the paper's training length, the analysis of each task (why the notebook's negation cannot reach its
support) and the commands: `docs/results/toy2d_findings.md`.

## Setup

- Tasks: product = ring of 8 Gaussians (std 0.03, radius 0.5) × bar [−0.2, 0.2]×[−1, 1] (sum of energies/scores);
  mixture = left bar ∪ right bar (exact −logsumexp of the level energies; needs energies; the notebook's
  sharpened log-sum-exp of raw energies is `--mixture-sharpen 3.5`);
  negation = box(0.7) with box(0.3) removed, exponents 1.3 / −0.3.
- Models: the notebook's residual MLP (4 blocks, width 128, inner 256, learned 32-d time embedding), T = 100
  {schedule} β (`--schedule`; the released notebook's is cosine, the paper's text names a linear one), ε-MSE, Adam 1e-3, batch 1000 fresh samples, EMA 0.999 (with warm-up); score = ε-prediction,
  energy = ‖f(x, t) − x‖² with ε = ∇ₓE (double backprop).
- Parameterisations: `score` and `energy` are the trained networks; `exact` composes the closed-form level
  densities of the data sets (perfect component models, no training), which separates the sampler's error from
  the models'.
- Samplers: 100 levels × {steps_per_level} steps from N(0, I) (the notebook's is 10){smc};
  ULA/MALA η = 1e-3; U-HMC/HMC ε = 0.03, 3 leapfrog steps, damping 0.5, mass 1; `reverse` = ancestral DDPM with the composed score. For score models MALA/HMC use the
  3-node trapezoid estimate of the energy difference (Sjöberg et al.). The mixture needs energies: n/a for score.
  Annealed MCMC ends at level 0 (forward noise σ₀ ≈ 0.025); unless `--no-final-step` is given, its samples then
  take the same noise-free ancestral step to the data that reverse diffusion ends with (1 extra evaluation).
- Metrics against the exact composed target with n samples. Headline: W2 = exact Wasserstein-2 by optimal
  assignment against n exact samples, and MMD² = unbiased, RBF kernel with bandwidth {MMD_BANDWIDTH}, each beside
  its floor in brackets: the same distance between two independent sets of n exact samples (what a perfect
  sampler gets). LL = mean log-likelihood under the target smoothed as in the follow-up (0.99 on the support, 0.01
  uniform on [−1.1, 1.1]²; the product uses the ring density times the smoothed bar, renormalised exactly). The
  LL is not a fair score by itself: the noise-free final step is a posterior mean that *contracts* each mode, so
  it rewards samples that are too concentrated; in brackets is what a perfect sampler scores under the same
  protocol (exact samples noised to level 0, then the final step with the exact composed model; the oracle LL of
  exact samples is {rows[0].get("oracle_log_likelihood", float("nan")):.3f} for this task); "LL level 0" is the
  annealed samplers' LL before the final step, beside exact samples noised to level 0. In support = fraction
  inside the exact support; acceptance = mean Metropolis acceptance over levels; NFE = evaluations of the
  composed model (each evaluates both networks; for energy models each is a forward + backward pass).
"""
