"""The objects experiment: scenes, composed samplers on tiny models, scoring, table logic, CLI errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bitcompose.cli import main
from bitcompose.core.sampling import SampleResult
from bitcompose.data.objects import (
    CELL,
    GRID,
    NUM_CELLS,
    NUM_PROMPTS,
    SceneObjects,
    make_object_scenes,
    prompt_name,
    render_objects,
)
from bitcompose.objects.cells import accuracy, requested_cells
from bitcompose.objects.models import load_or_train
from bitcompose.objects.prompts import prompt_rows
from bitcompose.objects.sampling import MCMCSettings, condition_groups, sample_conjunction
from bitcompose.objects.table import TablePlan, summary_checks

# ---- data ------------------------------------------------------------------------------------------------------


def test_scenes_are_deterministic_and_match_their_objects():
    a, b = make_object_scenes(50, seed=3), make_object_scenes(50, seed=3)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, make_object_scenes(50, seed=4).images)
    assert a.images.shape == (50, 3, 16, 16) and a.images.max() <= 3
    for img, obj in zip(a.images, a.objects, strict=True):
        assert 1 <= len(obj.cells) <= 5 and len(set(obj.cells.tolist())) == len(obj.cells)
        lit = img.max(0) > 0
        for cell in range(NUM_CELLS):
            row, col = divmod(cell, GRID)
            occupied = lit[row * CELL : (row + 1) * CELL, col * CELL : (col + 1) * CELL].any()
            assert occupied == (cell in obj.cells)  # a cell is lit exactly when it holds an object


def test_render_and_presence_targets():
    obj = SceneObjects(
        cells=np.array([5]), colours=np.array([0]), shapes=np.array([2]), brightness=np.array([3]),
        offsets=np.array([[1, 0]]),
    )  # fmt: skip
    img = render_objects(obj)
    # red ring at row 1, col 1, offset (1, 0): rows 5..7, cols 4..6, hole in the middle
    assert img[0, 5:8, 4:7].tolist() == [[3, 3, 3], [3, 0, 3], [3, 3, 3]]
    assert img[1:].sum() == 0 and img.sum() == 8 * 3
    assert prompt_name(int(obj.prompts[0])) == "red ring"
    scenes = make_object_scenes(20, seed=0)
    targets = scenes.presence()
    for t, o in zip(targets, scenes.objects, strict=True):
        assert set(torch.nonzero(t[:NUM_CELLS]).flatten().tolist()) == set(o.cells.tolist())
        assert set((torch.nonzero(t[NUM_CELLS:]).flatten()).tolist()) == set(o.prompts.tolist())
    ds = scenes.position_dataset()
    assert len(ds.images) == sum(len(o.cells) for o in scenes.objects) and ds.num_classes == NUM_CELLS
    assert scenes.prompt_dataset().num_classes == NUM_PROMPTS


def test_requested_cells_distinct_and_uniform():
    cells = requested_cells(4000, 3, torch.Generator().manual_seed(0))
    assert cells.shape == (4000, 3)
    assert all(len(set(r)) == 3 for r in cells.tolist())
    counts = torch.bincount(cells.flatten(), minlength=NUM_CELLS).double()
    expected = 4000 * 3 / NUM_CELLS
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()
    with pytest.raises(ValueError, match="k must lie"):
        requested_cells(3, 0, torch.Generator())


def test_accuracy_and_standard_error():
    p, se = accuracy(torch.tensor([True, False, True, True]))
    assert p == 0.75 and se == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


# ---- composed sampling on tiny models ------------------------------------------------------------------------


# noise levels of the sampling tests (the experiments use 100): what is checked does not need more
LEVELS = 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("objects-cache")
    return {
        p: load_or_train("position", p, steps=2, cache=cache, progress=False) for p in ("score", "energy")
    }


@pytest.mark.parametrize(
    ("sampler", "param"),
    [("reverse", "score"), ("ula", "score"), ("mala", "score"), ("uhmc", "energy"), ("hmc", "energy")],
)
def test_composed_sampler_returns_valid_codes(tiny, sampler, param):
    loaded = tiny[param]
    cells = requested_cells(2, 2, torch.Generator().manual_seed(0))
    mcmc = MCMCSettings(steps_per_level=1, min_level=0.95)
    images, info = sample_conjunction(
        loaded, cells, 4.0, sampler, mcmc, torch.Generator().manual_seed(0), False, levels=LEVELS
    )
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.long
    assert int(images.min()) >= 0 and int(images.max()) <= 3
    assert info["network_evaluations"] == 3 * info["nfe"]
    if sampler == "reverse":
        assert info["nfe"] == LEVELS and info["levels"] == LEVELS and info["mcmc"] is None
    else:
        assert info["nfe"] > LEVELS and info["mcmc"]["min_level"] == 0.95
        assert sampler in ("ula", "uhmc") or 0.0 <= info["acceptance"] <= 1.0


def test_composed_sampler_is_reproducible_and_uses_the_conditions(tiny, monkeypatch):
    loaded = tiny["score"]
    mcmc = MCMCSettings()
    cells = torch.tensor([[0, 5], [9, 15]])

    def run(c):
        gen = torch.Generator().manual_seed(1)
        return sample_conjunction(loaded, c, 4.0, "reverse", mcmc, gen, False, levels=LEVELS)[0]

    assert torch.equal(run(cells), run(cells))
    # a 2-step model barely reads its condition, so check what the network is asked instead of its output
    seen: list[tuple[int, ...] | None] = []
    raw = loaded.denoiser.raw

    def spy(x, t, self_cond=None, cond=None):
        seen.append(None if cond is None else tuple(cond.tolist()))
        return raw(x, t, self_cond, cond)

    monkeypatch.setattr(loaded.denoiser, "raw", spy)
    run(cells)
    assert set(seen) == {None, (0, 9), (5, 15)}
    assert len(seen) == 3 * LEVELS


def test_condition_groups_bind_each_target_to_one_group():
    conds = torch.tensor([[0, 5], [5, 0], [9, 15], [0, 5]])
    g = condition_groups(
        conds, 4.0
    ).tolist()  # equal weights: the conjunction ignores the order of the columns
    assert g[0] == g[1] == g[3] != g[2]
    g = condition_groups(conds, [4.0, -4.0]).tolist()  # 0 AND NOT 5 is not 5 AND NOT 0
    assert g[0] == g[3] and len({g[0], g[1], g[2]}) == 3
    assert condition_groups(torch.tensor([2, 7]).expand(6, 2), [4.0, -4.0]).unique().numel() == 1


def test_smc_of_a_conjunction_resamples_within_its_targets(tiny, monkeypatch):
    import bitcompose.compose.composite_sampling as composition

    seen = {}

    def spy(model, shape, grid, options, **kwargs):  # what the sampler is asked; 100 levels of SMC: slow here
        seen.update(kwargs, options=options)
        return SampleResult(samples=torch.zeros(shape), nfe=1)

    monkeypatch.setattr(composition, "annealed_mcmc", spy)
    cells = torch.tensor([[0, 5], [9, 15], [5, 0]])
    mcmc = MCMCSettings(steps_per_level=1, resample_ess=0.5)
    sample_conjunction(tiny["energy"], cells, 4.0, "hmc", mcmc, torch.Generator().manual_seed(0), False)
    assert seen["options"].resample_ess == 0.5
    assert torch.equal(seen["resample_groups"], condition_groups(cells, 4.0))


def test_smc_needs_energies(tiny):
    cells = torch.tensor([[0]])
    with pytest.raises(ValueError, match="needs energies"):
        sample_conjunction(
            tiny["score"], cells, 4.0, "hmc", MCMCSettings(resample_ess=0.5), torch.Generator(), False
        )
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_conjunction(tiny["score"], cells, 4.0, "gibbs", MCMCSettings(), torch.Generator(), False)


def test_prompt_rows_report_every_operator(tmp_path, monkeypatch):
    # a stand-in evaluator that says exactly which prompts are present by construction
    from bitcompose.objects import prompts as prompts_module

    monkeypatch.setattr(prompts_module, "load_or_train_evaluator", lambda cache, progress: _FakeEvaluator())
    rows = prompt_rows(
        pairs=((0, 8),), samplers=("reverse",), n=3, train_steps=2, cache=tmp_path, progress=False,
        levels=LEVELS,
    )  # fmt: skip
    assert [r.report["operator"] for r in rows] == ["A", "AND", "NOT"]
    assert rows[1].report["prompt"] == "red square AND blue ring"
    assert rows[2].report["prompt"] == "red square AND NOT blue ring"
    for r in rows:
        json.dumps(r.report)
        assert r.images.shape == (3, 3, 16, 16) and r.report["levels"] == r.report["nfe"] == LEVELS
    # the fake evaluator sees A in every image and B in none: A = 1, AND = 0, NOT = 1
    assert [r.report["accuracy"] for r in rows] == [1.0, 0.0, 1.0]


class _FakeEvaluator(torch.nn.Module):
    """Says prompt 0 is present in every image and nothing else is."""

    info = {"prompt_accuracy": 1.0}

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, NUM_CELLS + NUM_PROMPTS)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[NUM_CELLS + 0] = 1.0
            self.head.bias.fill_(-0.5)

    def compute_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(images), 1)


# ---- table logic and CLI ---------------------------------------------------------------------------------------


def test_table_plan_cells():
    cells = TablePlan().cells()
    # the setting with room first: reverse and HMC of both models at k = 5, the matched-cost reverse; then score
    # reverse and HMC at k = 1 and 3 (accuracy vs k); then MALA of both and SMC with the energies at k = 5
    assert [c.name for c in cells] == [
        "k5-reverse-score", "k5-hmc-score", "k5-reverse-energy", "k5-hmc-energy", "k5-reverse-score-L300",
        "k1-reverse-score", "k3-reverse-score", "k1-hmc-score", "k3-hmc-score", "k5-mala-score",
        "k5-mala-energy", "k5-smc-hmc-energy",
    ]  # fmt: skip
    assert len({c.name for c in cells}) == len(cells)
    cells = TablePlan(
        ks=(1, 2), energy_ks=(2, 4), other_samplers=("ula", "mala", "uhmc"), other_k=3, matched_levels=0
    ).cells()
    names = {(k, s, p, m.resample_ess is not None) for k, s, p, m, _ in cells}
    assert len(names) == len(cells) == 2 * 2 + 2 * 2 + 3 * 2 + 1
    assert (3, "hmc", "energy", True) in names and (3, "hmc", "score", True) not in names
    with pytest.raises(ValueError, match="unknown samplers"):
        TablePlan(samplers=("reverse", "gibbs"))
    with pytest.raises(ValueError, match="object counts"):
        TablePlan(ks=(1, 6))
    with pytest.raises(ValueError, match="matched_levels"):
        TablePlan(matched_levels=1)


def _row(k, sampler, param, acc, n=500, levels=100):
    nfe = {"reverse": levels}.get(sampler, 300)
    return {
        "k": k,
        "sampler": sampler,
        "param": param,
        "levels": levels,
        "nfe": nfe,
        "accuracy": acc,
        "accuracy_se": math.sqrt(acc * (1 - acc) / n),
    }


def test_summary_checks_state_whether_the_targets_hold():
    rows = [_row(1, "reverse", "score", 0.9), _row(5, "reverse", "score", 0.4), _row(1, "hmc", "score", 0.9)]
    rows += [_row(5, "hmc", "score", 0.6), _row(5, "reverse", "energy", 0.3), _row(5, "hmc", "energy", 0.65)]
    rows += [_row(5, "reverse", "score", 0.45, levels=300)]
    checks = summary_checks(rows)
    first = checks[0]
    assert (
        first.startswith("k = 5, score: hmc 0.600 (NFE 300) vs reverse 0.400 (NFE 100)") and "holds" in first
    )
    assert any(c.startswith("k = 5, energy: hmc 0.650") and c.endswith("(≥ 2 s.e.: holds)") for c in checks)
    matched = [c for c in checks if "matched cost" in c]
    assert len(matched) == 2 and "reverse 0.450 (NFE 300)" in matched[0]
    assert any(
        c.startswith("k = 5, hmc: energy vs score: energy 0.650") and "does NOT hold" in c for c in checks
    )
    assert checks[-1].startswith("score: fall from k = 1 to k = 5: reverse +0.500, hmc +0.300")
    assert checks[-1].endswith(": holds)")
    rows[3] = _row(5, "hmc", "score", 0.41)
    checks = summary_checks(rows)
    assert "does NOT hold" in checks[0] and checks[-1].endswith("does NOT hold)")  # drops 0.50 vs 0.49


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compose", "objects"], "give --k K and --sampler S"),
        (["compose", "objects", "--table"], "--table needs --out"),
        (["compose", "objects", "--k", "0", "--sampler", "hmc"], "--k"),
        (["compose", "objects", "--k", "2", "--sampler", "gibbs"], "invalid choice"),
        (["compose", "prompts", "--samplers", "reverse,gibbs"], "--samplers"),
    ],
)
def test_cli_errors_are_one_line(args, message, capsys):
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own checks: the usage, then one error line
        code = exc.code
    assert code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and message in err[0], err


def test_cli_k_above_five_is_refused_before_any_work(tmp_path, capsys):
    assert main(["compose", "objects", "--k", "6", "--sampler", "hmc", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "k must lie in 1..5" in err[0]
    assert not any(tmp_path.iterdir())


def test_short_runs_sample_with_their_online_weights():
    from bitcompose.objects.models import use_ema

    for steps, decay in [(4000, 0.999), (1500, 0.999), (300, 0.99), (10, 0.5), (10, 0.0)]:
        assert use_ema(steps, decay) == (decay**steps <= math.exp(-4.0) + 1e-12)
    assert use_ema(4000, 0.999) and not use_ema(1500, 0.999)
    # with the warm-up d_n = min(decay, (1 + n)/(10 + n)) the start is forgotten at once: Π d_n < e^-4 after 2 steps
    assert use_ema(3, 0.999, warmup=True) and not use_ema(1, 0.999, warmup=True)
    share = math.prod(min(0.999, (1 + n) / (10 + n)) for n in range(2))
    assert use_ema(2, 0.999, warmup=True) == (share <= math.exp(-4.0))


def test_the_energy_recipe_is_the_x0_form_with_an_ema_warm_up():
    from bitcompose.experiments.image_models import small_model_config
    from bitcompose.images.config import DataConfig

    energy = small_model_config("e", DataConfig(name="digits"), "energy", 100, 4)
    score = small_model_config("s", DataConfig(name="digits"), "score", 100, 4)
    assert (energy.model.prediction, energy.model.energy, energy.model.loss_target) == (
        "energy",
        "x0",
        "auto",
    )
    assert (
        energy.optim.ema_warmup and not score.optim.ema_warmup
    )  # the score recipe is the one its pages used
    assert score.model.prediction == "x0"


def test_the_core_plan_is_the_comparisons_only():
    core = TablePlan.core()
    assert [c.name for c in core.cells()] == [
        "k5-reverse-score", "k5-hmc-score", "k5-reverse-energy", "k5-hmc-energy", "k5-reverse-score-L300",
        "k1-reverse-score", "k3-reverse-score", "k1-hmc-score", "k3-hmc-score",
    ]  # fmt: skip
    assert core.prompt_n == 0 and not core.smc and TablePlan.core(n=50).n == 50
