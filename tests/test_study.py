"""The Bit Diffusion study: the grids, the model recipes, a tiny resumable run through the CLI, the page's verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bitcompose.cli import main
from bitcompose.data.image_files import FASHION_MNIST_DIR
from bitcompose.data.images import load_image_dataset
from bitcompose.study.grid import GRIDS, MODELS, StudyCell, grid, model_config
from bitcompose.study.page import bound_claims, claims, compare, compare_bpd, matching_nfe

ROW_KEYS = {
    "model", "encoding", "loss", "self_condition", "prediction", "sampler", "steps", "td", "classifier_fid",
    "classifier_fid_floor", "class_accuracy", "invalid_fraction", "nfe", "seconds", "level_tv", "level_tv_floor",
    "bpd", "bpd_se",
}  # fmt: skip


def test_grids_name_known_models_without_repeats_and_full_covers_every_part() -> None:
    full = set(grid("full").cells)
    for name in GRIDS:
        g = grid(name)
        assert len(set(g.cells)) == len(g.cells) and len({c.name for c in g.cells}) == len(g.cells)
        assert all(c.model in MODELS for c in g.cells)
        if name != "quick":
            assert set(g.cells) <= full
    samplers = grid("samplers").cells
    for s in ("ddim", "ddpm", "dpmpp2m"):
        assert {c.steps for c in samplers if c.sampler == s and c.mode == "default" and not c.td} == {
            10, 20, 50, 100, 400,
        }  # fmt: skip
    assert {c.td for c in samplers} == {0.0, 0.5, 1.0, 2.0}
    assert {c.mode for c in samplers} == {"default", "momentum", "self-guidance"}
    with pytest.raises(ValueError, match="unknown grid"):
        grid("nope")
    # a part of a grid: only the named models' cells, in the grid's order
    part = grid("encodings", ("random", "gray"))
    assert [c.name for c in part.cells] == [
        c.name for c in grid("encodings").cells if c.model in ("gray", "random")
    ]
    assert [m.name for m in part.models] == ["gray", "random"] and {c.steps for c in part.cells} == {100, 400}
    with pytest.raises(ValueError, match="no model 'masked'; its models are binary, gray"):
        grid("encodings", ("gray", "masked"))


def test_cell_names_and_costs() -> None:
    assert StudyCell("binary", "ddim", 10, td=1.0).name == "binary-ddim-10-td1"
    assert StudyCell("binary", "ddim", 100, self_guidance=3.0).nfe == 200
    assert (
        StudyCell("binary", "ddim", 100, self_guidance=3.0).name == "binary-ddim-100-sg3"
    )  # stored cells' names
    assert StudyCell("binary", "ddim", 100, self_guidance=2.0, self_guidance_form="scale").name == (
        "binary-ddim-100-sg2-scale"
    )
    sweep = grid("selfguidance").cells
    assert {(c.self_guidance_form, c.self_guidance) for c in sweep if c.self_guidance} == {
        ("cfg", 0.5), ("cfg", 1.0), ("cfg", 2.0), ("cfg", 3.0), ("scale", 0.5), ("scale", 2.0), ("scale", 3.0),
    }  # fmt: skip
    assert StudyCell("binary", "ddim", 100, momentum=0.5).mode == "momentum"
    assert StudyCell("masked", "ddpm", 20).nfe == 20


def test_model_recipes_differ_only_where_named() -> None:
    configs = {name: model_config(m, "mnist", 14, 4000) for name, m in MODELS.items()}
    base = configs["binary"]
    assert (base.model.encoding, base.model.prediction, base.model.self_condition) == ("binary", "x0", True)
    assert base.data.conditional and base.self_cond_prob == 0.5 and base.steps == 4000
    assert configs["gray"].model.encoding == "gray"
    assert configs["random-softmax"].model.output_head == "softmax"
    assert configs["onehot-logistic"].model.prediction == "logistic"
    assert configs["binary-nosc"].self_cond_prob == 0.0 and not configs["binary-nosc"].model.self_condition
    assert configs["binary-eps-nosc"].model.prediction == "eps"
    masked = configs["masked"]
    assert (masked.model.prediction, masked.model.encoding, masked.sample.sampler) == (
        "masked",
        "onehot",
        "ddpm",
    )
    assert configs["continuous"].model.encoding == "continuous"
    # everything else is the shared recipe
    for name, cfg in configs.items():
        assert (cfg.model.base_channels, cfg.model.channel_mults, cfg.batch_size) == (32, (1, 2), 64), name
        assert cfg.optim == base.optim and cfg.model.attn_resolutions == (7,)
    assert len({c.preset for c in configs.values()}) == len(configs)


def test_the_28px_recipe_adds_a_resolution_and_keeps_attention_at_7() -> None:
    cfg = model_config(MODELS["binary"], "fashion_mnist_28", 28, 4000)
    assert cfg.model.channel_mults == (1, 2, 2) and cfg.model.attn_resolutions == (7,)
    assert cfg.data.name == "fashion_mnist" and cfg.preset == "study-fashion_mnist_28-binary"
    # the 14×14 and 8×8 recipes (and so the cache keys of every stored model) are unchanged
    assert model_config(MODELS["binary"], "digits", 8, 1500).model.attn_resolutions == (4,)
    assert model_config(MODELS["binary"], "mnist", 14, 4000).model.channel_mults == (1, 2)


@pytest.mark.skipif(
    not Path(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist not installed",
)
def test_fashion_28_uses_the_official_split() -> None:
    from bitcompose.study.cells import splits

    train, held_out = splits("fashion_mnist_28")
    assert train.images.shape == (60_000, 1, 28, 28) and held_out.images.shape == (10_000, 1, 28, 28)
    assert train.num_values == held_out.num_values == 256
    test = load_image_dataset("fashion_mnist-test", max_images=10)
    assert torch.equal(held_out.images[:10], test.images)


def test_the_study_floor_is_the_classifier_floor_of_its_split() -> None:
    from bitcompose.metrics.image_scores import fid_floor, held_out_images
    from bitcompose.nets.classifier import ClassifierConfig, ImageClassifier
    from bitcompose.study.cells import held_out_subset, real_floor, study_data

    torch.manual_seed(0)
    judge = ImageClassifier(ClassifierConfig(1, 8, 8, num_classes=10, num_values=17)).eval()
    data = study_data("digits")
    assert torch.equal(held_out_subset("digits", 50), held_out_images(data, 0.1, 0, max_images=50))
    assert real_floor(judge, "digits", 50) == pytest.approx(fid_floor(judge, data, 0.1, 0, max_images=50))
    assert real_floor(judge, "digits") != pytest.approx(real_floor(judge, "digits", 50))


def _row(model: str, sampler: str, steps: int, fid: float, se: float, **extra: Any) -> dict[str, Any]:
    row = {"model": model, "sampler": sampler, "steps": steps, "td": 0.0, "momentum": 0.0, "self_guidance": 0.0,
           "mode": "default", "classifier_fid": fid, "classifier_fid_se": se, "class_accuracy": 0.9,
           "class_accuracy_se": 0.01, "nfe": steps}  # fmt: skip
    return row | extra


def test_verdicts_follow_the_numbers() -> None:
    a, b = _row("binary", "ddim", 100, 2.0, 0.3), _row("binary-nosc", "ddim", 100, 5.0, 0.4)
    assert compare(a, b, "with", "without").endswith("with better")  # type: ignore[union-attr]
    assert "6.0 s.e." in compare(a, b, "with", "without")  # type: ignore[operator]  # 3 / hypot(0.3, 0.4)
    close = _row("binary-nosc", "ddim", 100, 2.5, 0.4)
    assert compare(a, close, "with", "without").endswith("no difference beyond 2 s.e.")  # type: ignore[union-attr]
    # accuracy alone separates them (0.90 vs 0.80, 7.1 s.e.); FID against it makes the verdict mixed
    worse = _row("binary-nosc", "ddim", 100, 2.5, 0.4, class_accuracy=0.8)
    assert compare(a, worse, "with", "without").endswith("with better")  # type: ignore[union-attr]
    assert "7.1 s.e." in compare(a, worse, "with", "without")  # type: ignore[operator]
    against = _row("binary-nosc", "ddim", 100, 0.5, 0.3, class_accuracy=0.8)
    assert compare(a, against, "with", "without").endswith("mixed")  # type: ignore[union-attr]
    assert compare(a, None, "x", "y") is None
    found = dict(claims([a, b]))
    assert found["Self-conditioning greatly improves Bit Diffusion (Fig. 5)"].endswith("with better")
    assert found["x0 prediction ≫ ε prediction for analog bits (Fig. 5)"] == "not run"
    rows = [a] + [_row("binary", "dpmpp2m", k, f, 0.2) for k, f in ((10, 3.0), (20, 2.25), (50, 2.0))]
    assert matching_nfe(rows).startswith("20 evaluations")
    assert matching_nfe(rows[:2]).startswith("none of 10")
    assert matching_nfe([a]).startswith("not run")


def test_the_self_guidance_sweep_finds_each_convention_and_rows_without_the_field_are_cfg() -> None:
    from bitcompose.study.page import _self_guidance_sweep as sweep
    from bitcompose.study.page import find

    default = _row("binary", "ddim", 100, 1.0, 0.3)
    old = _row("binary", "ddim", 100, 9.0, 0.3, self_guidance=3.0, nfe=200)  # made before self_guidance_form
    scale = _row("binary", "ddim", 100, 1.2, 0.3, self_guidance=3.0, self_guidance_form="scale", nfe=200)
    rows = [default, old, scale]
    assert find(rows, "binary", "ddim", 100, self_guidance=3.0) is old
    assert find(rows, "binary", "ddim", 100, self_guidance=3.0, self_guidance_form="scale") is scale
    text = "\n".join(sweep(rows))
    cfg_line = next(line for line in text.splitlines() if line.startswith("| cfg"))
    scale_line = next(line for line in text.splitlines() if line.startswith("| scale"))
    assert "9.00" in cfg_line and "default better" in cfg_line  # 8 / hypot(0.3, 0.3) = 18.9 s.e.
    assert "1.20" in scale_line and "no difference" in scale_line
    assert sweep([default]) == ["not run"]


def test_bound_verdicts_follow_the_numbers() -> None:
    a = _row("binary", "ddim", 100, 2.0, 0.3) | {"bpd": 1.20, "bpd_se": 0.006}
    b = _row("binary-nosc", "ddim", 100, 5.0, 0.4) | {"bpd": 1.26, "bpd_se": 0.008}
    said = compare_bpd(a, b, "with", "without")
    assert said is not None and said.endswith("with better") and "6.0 s.e. of 0.010" in said
    close = b | {"bpd": 1.21}
    assert compare_bpd(a, close, "with", "without").endswith("no difference beyond 2 s.e.")  # type: ignore[union-attr]
    worse_with = a | {"bpd": 1.30}
    assert compare_bpd(worse_with, b, "with", "without").endswith("without better")  # type: ignore[union-attr]
    # the same images: the paired differences (0.01 each, spread 0.002) decide what the unpaired s.e. cannot
    pa = [1.0 + 0.1 * i for i in range(10)]
    paired_a = a | {"bpd": 1.45, "bpd_se": 0.1, "bpd_per_image": pa}
    paired_b = b | {
        "bpd": 1.46,
        "bpd_se": 0.1,
        "bpd_per_image": [v + 0.01 + 0.002 * (-1) ** i for i, v in enumerate(pa)],
    }
    assert compare_bpd(paired_a, paired_b, "with", "without").endswith("with better")  # type: ignore[union-attr]
    found = dict(bound_claims([a, b, _row("binary-eps", "ddim", 100, 2.0, 0.3)]))
    assert found["Self-conditioning improves Bit Diffusion (Fig. 5)"].endswith("with better")
    assert found["x0 prediction ≫ ε prediction for analog bits (Fig. 5)"] == "not run"  # ε row has no bound


def test_the_bound_claims_figure_is_drawn_only_for_claims_with_both_models(tmp_path: Path) -> None:
    from bitcompose.study.page import _bound_claims_figure

    a = _row("binary", "ddim", 100, 2.0, 0.3) | {"bpd": 1.20, "bpd_se": 0.006, "family": "bit"}
    assert _bound_claims_figure(tmp_path, [a]) == [] and not (tmp_path / "bpd_claims.png").exists()
    same = _row("gray", "ddim", 100, 2.0, 0.3) | {"bpd": 1.10, "bpd_se": 0.0, "family": "bit"}
    zero_se = a | {"bpd_se": 0.0}  # a difference with zero s.e. is drawn off the axis, not an error
    b = _row("binary-nosc", "ddim", 100, 5.0, 0.4) | {"bpd": 1.26, "bpd_se": 0.008, "family": "bit"}
    assert _bound_claims_figure(tmp_path, [zero_se, same, b]) == ["bpd_claims.png"]
    assert (tmp_path / "bpd_claims.png").stat().st_size > 1000


def test_tiny_study_runs_resumes_accumulates_parts_and_prints_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(
        GRIDS, "quick", lambda: [StudyCell("binary", "ddim", 4), StudyCell("masked", "ddpm", 4)]
    )
    monkeypatch.setitem(GRIDS, "baselines", lambda: [StudyCell("continuous", "dpmpp2m", 3)])
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = [
        "study",
        "--grid",
        "quick",
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--train-steps",
        "3",
        "--n",
        "12",
    ]
    assert main([*args, "--json", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["binary", "masked"]
    for r in rows:
        assert ROW_KEYS <= set(r) and r["n"] == 12 and r["model_steps"] == 3
        assert 0 <= r["class_accuracy"] <= 1 and r["classifier_fid"] >= 0 and r["floor_n"] == 12
    assert rows[1]["invalid_fraction"] == 0.0 and rows[1]["nfe"] == 4
    # every cell carries its model's bound on the whole held-out split, in bits per pixel-channel
    assert all(0 < r["bpd"] < 1e4 and r["bpd_se"] > 0 and r["bpd_conditional"] for r in rows)
    # resume: the cells are read back, not recomputed
    import bitcompose.study.table as table

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(table, "study_cell", boom)
    # every cell stored: no model is trained or loaded, and no evaluator (a fresh machine's empty cache)
    monkeypatch.setattr(table, "load_or_train", boom)
    monkeypatch.setattr(table, "evaluator", boom)
    first = json.loads((out / "parts.json").read_text())
    assert main([*args, "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out) == rows
    assert (
        json.loads((out / "parts.json").read_text()) == first
    )  # a re-render keeps the computing run's record
    monkeypatch.undo()
    monkeypatch.setitem(GRIDS, "baselines", lambda: [StudyCell("continuous", "dpmpp2m", 3)])
    args[2] = "baselines"
    assert main([*args, "--no-progress"]) == 0
    parts = json.loads((out / "parts.json").read_text())
    assert [p["grid"] for p in parts] == ["quick", "baselines"]
    # a part of a grid (--models) is its own record; its stored cells are not recomputed
    monkeypatch.setitem(
        GRIDS, "quick", lambda: [StudyCell("binary", "ddim", 4), StudyCell("masked", "ddpm", 4)]
    )
    monkeypatch.setattr(table, "study_cell", boom)
    assert main([*args[:2], "quick", *args[3:], "--models", "masked", "--no-progress"]) == 0
    parts = json.loads((out / "parts.json").read_text())
    assert [(p["grid"], p.get("models")) for p in parts] == [
        ("quick", None),
        ("baselines", None),
        ("quick", ["masked"]),
    ]
    assert parts[2]["cells"] == 1
    monkeypatch.undo()
    # a cell written before the grey-level distance existed gets it from its stored samples
    cell = out / "cells" / "binary-ddim-4.json"
    old = json.loads(cell.read_text())
    cell.write_text(json.dumps({k: v for k, v in old.items() if not k.startswith("level_tv")}))
    from bitcompose.study.table import load_rows

    again = next(r for r in load_rows(out) if r["model"] == "binary")
    assert again["level_tv"] == pytest.approx(old["level_tv"]) and "level_tv" in json.loads(cell.read_text())
    page = (out / "bit_study.md").read_text()
    assert "## The paper's claims against our cells" in page and "continuous" in page and "masked" in page
    assert len(json.loads((out / "bit_study.json").read_text())["cells"]) == 3
    assert (out / "samples.png").is_file() is False  # no 100-step cell: no sample grid


def test_cli_refuses_bad_arguments_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["study", "--grid", "nope"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["study", "--n", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--n" in err[0]
    assert main(["study", "--grid", "encodings", "--models", "gray,nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model 'nope'" in err[0]
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_inception_scores_of_real_images_sit_at_their_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    from bitcompose.metrics.inception import find_inception_weights
    from bitcompose.study import cells

    try:
        find_inception_weights()
    except FileNotFoundError:
        pytest.skip("the fid extra (Inception weights) is not installed")
    train, held = cells.splits("digits")
    small = (train.subset(torch.arange(8)), held.subset(torch.arange(4)))  # Inception on a CPU: few images
    monkeypatch.setattr(cells, "splits", lambda dataset: small)
    cells._inception_train_statistics.cache_clear()
    try:
        scores = cells.inception_scores("digits", held.images[:4], 4)
        assert scores["inception_fid"] == pytest.approx(scores["inception_fid_floor"])  # the same images
        assert scores["inception_kid"] == pytest.approx(scores["inception_kid_floor"])
        rotated = cells.inception_scores("digits", held.images[:4].flip(-1).flip(-2), 4)
        assert rotated["inception_fid"] > scores["inception_fid"]
        # KID on 4 images is too noisy to rank a rotation; blank images are far from every digit
        blank = cells.inception_scores("digits", torch.zeros_like(held.images[:4]), 4)
        assert blank["inception_kid"] > scores["inception_kid"] + 0.05 and blank["inception_kid_std"] >= 0
    finally:
        cells._inception_train_statistics.cache_clear()


def test_level_tv_in_closed_form() -> None:
    from bitcompose.metrics.image_scores import level_tv

    a = torch.tensor([[[[0, 0], [1, 1]]]])  # half 0, half 1
    assert level_tv(a, a.clone(), 4) == 0.0
    assert level_tv(a, torch.full((1, 1, 2, 2), 3), 4) == 1.0  # disjoint histograms
    b = torch.tensor([[[[0, 0], [0, 1]]]])  # 3/4 zeros, 1/4 ones
    assert level_tv(a, b, 4) == pytest.approx(0.25)
