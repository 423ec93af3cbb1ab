"""The guidance experiment: data, the noise-conditioned guide, guided sampling on tiny models, the table, the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from bitcompose.cli import main
from bitcompose.compose import ClassifierGuidance
from bitcompose.compose.composite_sampling import MCMCSettings, sample_composite
from bitcompose.data import small_images
from bitcompose.data.images import ImageDataset
from bitcompose.diffusion.as_model import as_model
from bitcompose.guidance import data as gdata
from bitcompose.guidance import models as gmodels
from bitcompose.guidance.cells import guidance_cell, guided_samples
from bitcompose.guidance.guide import accuracy_by_time, guide_codec, load_or_train_guide, noised
from bitcompose.guidance.page import summary_checks
from bitcompose.guidance.table import GuidancePlan, run_guidance_table
from bitcompose.nets.noisy_classifier import NoisyClassifier, NoisyClassifierConfig, build_noisy_classifier

# ---- data ------------------------------------------------------------------------------------------------------


def test_mnist_is_pooled_and_requantised():
    ds = gdata.guidance_dataset("mnist")
    assert ds.images.shape == (5000, 1, 14, 14) and ds.num_values == 8 and ds.name == "mnist-14px-8lv"
    assert int(ds.images.min()) == 0 and int(ds.images.max()) == 7
    train, held = gdata.splits("mnist")
    assert len(train) == 4500 and len(held) == 500
    assert torch.equal(gdata.splits("mnist")[1].images, held.images)  # the same split every time
    with pytest.raises(ValueError, match="dataset must be one of"):
        gdata.guidance_dataset("cifar10")


def test_pool2_averages_blocks_and_rounds():
    img = torch.tensor([[0, 255, 10, 11], [0, 0, 12, 13], [4, 4, 0, 1], [4, 4, 0, 0]]).reshape(1, 1, 4, 4)
    ds = ImageDataset(images=img, labels=torch.tensor([0]), num_values=256, num_classes=1, name="x")
    assert small_images._pool2(ds).images[0, 0].tolist() == [
        [64, 12],
        [4, 0],
    ]  # 63.75 -> 64, 11.5 -> 12, 0.25 -> 0


# ---- the guide -------------------------------------------------------------------------------------------------


def test_noisy_classifier_checks_its_inputs_and_saves(tmp_path):
    net = build_noisy_classifier(NoisyClassifierConfig(3, 8, 8, 10))
    net.reset_parameters(torch.Generator().manual_seed(0))
    x, t = torch.randn(4, 3, 8, 8), torch.rand(4)
    assert net(x, t).shape == (4, 10)
    with pytest.raises(ValueError, match="expects x"):
        net(torch.randn(4, 2, 8, 8), t)
    with pytest.raises(ValueError, match="times"):
        net(x, torch.rand(3))
    with pytest.raises(ValueError, match="float"):
        net(x.long(), t)
    net.info = {"steps": 1}
    net.save(tmp_path / "g")
    back = NoisyClassifier.load(tmp_path / "g")
    assert torch.equal(back(x, t), net.eval()(x, t)) and back.info["steps"] == 1


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("guidance-cache")


@pytest.fixture(scope="module")
def guide(cache):
    return load_or_train_guide("digits", steps=150, cache=cache, progress=False)


def test_the_guide_learns_and_reads_its_time_input(guide, cache):
    by_t = guide.info["accuracy_by_time"]
    assert by_t["t=0"] > 0.5 > by_t["t=1"]  # 150 steps: far above chance on clean bits, chance on pure noise
    bits = guide_codec("digits").encode_images(gdata.splits("digits")[1].images[:64])
    x = noised(bits, torch.full((64,), 0.5), torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = guide(x, torch.full((64,), 0.05)), guide(x, torch.full((64,), 0.95))
    assert (a - b).abs().max() > 1e-2  # the same input read at two noise levels gives different logits
    with pytest.MonkeyPatch.context() as mp:  # a cached guide is loaded, never trained again
        mp.setattr("bitcompose.guidance.guide.Trainer", None)
        again = load_or_train_guide("digits", steps=150, cache=cache, progress=False)
    assert torch.equal(again(x, torch.zeros(64)), guide(x, torch.zeros(64)))
    labels = gdata.splits("digits")[1].labels[:64]
    assert accuracy_by_time(guide, bits, labels, (0.0, 0.5)) == accuracy_by_time(
        guide, bits, labels, (0.0, 0.5)
    )


@pytest.fixture(scope="module")
def tiny(cache):
    return {
        p: gmodels.load_or_train("digits", p, steps=3, cache=cache, progress=False) for p in gmodels.PARAMS
    }


def test_the_sampler_hands_the_guide_every_level_time(tiny, guide):
    seen: list[torch.Tensor] = []

    def spy(x, t):
        seen.append(t.clone())
        return guide(x, t)

    labels = torch.tensor([3, 7])
    guided_samples(
        tiny["score"], spy, labels, 2.0, "reverse", MCMCSettings(), torch.Generator().manual_seed(0)
    )
    grid = as_model(tiny["score"].denoiser).grid()
    times = torch.stack([s[0] for s in seen])
    assert len(seen) == 100 and all(torch.equal(s, s[:1].expand(2)) for s in seen)
    assert torch.allclose(times.flip(0), torch.as_tensor([lv.t for lv in grid], dtype=times.dtype))


@pytest.mark.parametrize("param", ["score", "energy"])
@pytest.mark.parametrize("sampler", ["reverse", "hmc"])
def test_guidance_at_w0_equals_unguided_sampling(tiny, guide, sampler, param):
    loaded = tiny[param]
    mcmc = MCMCSettings(min_level=0.9)
    labels = torch.tensor([1, 2, 3])
    gen = torch.Generator().manual_seed(5)
    guided, _ = guided_samples(loaded, guide, labels, 0.0, sampler, mcmc, gen, levels=20)
    plain, _ = sample_composite(
        as_model(loaded.denoiser, num_levels=20), tuple(guided.shape), sampler,
        MCMCSettings(steps_per_level=1, step=mcmc.step, min_level=18 / 20), generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    assert torch.allclose(guided, plain, atol=1e-5)
    assert torch.equal(loaded.codec.decode_images(guided), loaded.codec.decode_images(plain))


def test_guidance_adds_the_guide_gradient(tiny, guide):
    model = as_model(tiny["score"].denoiser)
    x, t = torch.randn(2, 5, 8, 8), 0.5
    labels = torch.tensor([4, 9])
    guided = ClassifierGuidance(model, guide, labels, weight=3.0).score(x, t)
    xin = x.clone().requires_grad_(True)
    logp = torch.log_softmax(guide(xin, torch.full((2,), 0.5)), 1)[torch.arange(2), labels].sum()
    (grad,) = torch.autograd.grad(logp, xin)
    assert torch.allclose(guided, model.score(x, t) + 3.0 * grad, atol=1e-5)


# ---- one cell and the table ------------------------------------------------------------------------------------

REPORT_KEYS = {"dataset", "sampler", "param", "scale", "n", "accuracy", "accuracy_se", "classifier_fid", "nfe",
               "seconds", "classifier_fid_se", "classifier_fid_floor", "invalid_fraction", "guide_accuracy"}  # fmt: skip


@pytest.mark.parametrize(("sampler", "param"), [("reverse", "score"), ("mala", "score"), ("hmc", "energy")])
def test_a_tiny_guided_cell_returns_valid_codes(cache, guide, sampler, param):
    res = guidance_cell(
        "digits", 4.0, sampler, param=param, n=6, train_steps=3, guide_steps=150, cache=cache, progress=False,
        mcmc=MCMCSettings(min_level=0.5), levels=20,
    )  # fmt: skip
    r = res.report
    assert REPORT_KEYS <= set(r) and json.loads(json.dumps(r)) == r
    images = res.tensors["images"]
    assert images.shape == (6, 1, 8, 8) and int(images.min()) >= 0 and int(images.max()) <= 16
    assert res.tensors["labels"].tolist() == [0, 1, 2, 3, 4, 5]
    assert 0 <= r["accuracy"] <= 1 and 0 <= r["invalid_fraction"] <= 1 and r["classifier_fid"] >= 0
    assert r["nfe"] == 20 if sampler == "reverse" else r["nfe"] > 20
    assert sampler == "reverse" or 0 <= r["acceptance"] <= 1


def test_smc_runs_on_the_energy_model(cache, guide, tiny):
    mcmc = MCMCSettings(resample_ess=0.5)
    res = guidance_cell(
        "digits", 2.0, "hmc", param="energy", n=4, train_steps=3, guide_steps=150, cache=cache, progress=False,
        mcmc=mcmc, levels=10,
    )  # fmt: skip
    assert res.report["sampler"] == "smc-hmc" and res.report["mcmc"]["resample_ess"] == 0.5
    assert res.report["nfe"] > 10 and res.tensors["images"].shape == (4, 1, 8, 8)


def test_smc_resamples_only_among_the_samples_asking_for_the_same_class(tiny, guide, monkeypatch):
    import bitcompose.compose.composite_sampling as composition

    seen = {}
    run = composition.annealed_mcmc

    def spy(*args, **kwargs):
        seen.update(kwargs, options=args[3])
        return run(*args, **kwargs)

    monkeypatch.setattr(composition, "annealed_mcmc", spy)
    labels = torch.tensor([3, 7, 3, 7, 1])
    mcmc = MCMCSettings(resample_ess=0.5)
    guided_samples(
        tiny["energy"], guide, labels, 2.0, "hmc", mcmc, torch.Generator().manual_seed(0), levels=5
    )
    assert seen["options"].resample_ess == 0.5 and torch.equal(seen["resample_groups"], labels)


def test_smc_of_a_composite_whose_conditions_are_unknown_is_refused(tiny):
    model = as_model(tiny["energy"].denoiser, num_levels=5)
    with pytest.raises(ValueError, match="resample_groups"):
        sample_composite(
            model, (2, 5, 8, 8), "hmc", MCMCSettings(steps_per_level=1, step=0.2, min_level=0.0, resample_ess=0.5),
            generator=torch.Generator(),
        )  # fmt: skip


def test_bad_cells_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="needs energies"):
        guidance_cell(
            "digits", 1.0, "hmc", param="score", mcmc=MCMCSettings(resample_ess=0.5), cache=tmp_path
        )
    with pytest.raises(ValueError, match="scale"):
        guidance_cell("digits", -1.0, "hmc", cache=tmp_path)
    with pytest.raises(ValueError, match="dataset"):
        guidance_cell("svhn", 1.0, "hmc", cache=tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_table_runs_resumes_and_writes_its_page(tmp_path, cache, tiny, guide, monkeypatch):
    monkeypatch.setitem(gmodels.DEFAULT_STEPS, "score", 3)  # the cached tiny models and guide
    monkeypatch.setitem(gmodels.DEFAULT_STEPS, "energy", 3)
    monkeypatch.setattr("bitcompose.guidance.guide.GUIDE_STEPS", 150)
    plan = GuidancePlan(
        dataset="digits", scales=(2.0,), samplers=("reverse", "ula"), other_samplers=(), other_scale=2.0,
        energy_scales=(2.0,), energy_samplers=("reverse",), matched_levels=30, levels=20, n=4, smc=False,
        mcmc=MCMCSettings(min_level=0.5),
    )  # fmt: skip
    assert [c.name for c in plan.cells()] == [
        "w0-reverse-score-20lv", "w2-reverse-score-20lv", "w2-ula-score-20lv", "w2-reverse-score-30lv",
        "w2-reverse-energy-20lv",
    ]  # fmt: skip
    out = tmp_path / "out"
    res = run_guidance_table(out, plan=plan, cache=cache, progress=False, log=lambda m: None)
    assert len(res["cells"]) == 5
    for name in ("guidance.md", "guidance.json", "accuracy_vs_scale.png", "fid_vs_scale.png", "samples.png",
                 "guide_accuracy.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0
    page = (out / "guidance.md").read_text()
    assert "| 2 | ula | score | 20 |" in page and "Checks" in page
    stamp = (out / "cells" / "w2-ula-score-20lv.json").stat().st_mtime_ns
    run_guidance_table(out, plan=plan, cache=cache, progress=False, log=lambda m: None)
    assert (out / "cells" / "w2-ula-score-20lv.json").stat().st_mtime_ns == stamp  # resumed, not recomputed


def _row(scale, sampler, param, acc, fid, *, levels=100, nfe=100, guide=None):
    return {"scale": scale, "sampler": sampler, "param": param, "levels": levels, "accuracy": acc,
            "accuracy_se": 0.02, "classifier_fid": fid, "classifier_fid_se": 0.5, "nfe": nfe,
            "mcmc": None if sampler == "reverse" else {}, "guide_accuracy": acc if guide is None else guide}  # fmt: skip


def test_summary_checks_state_whether_the_targets_hold():
    rows = [
        _row(2.0, "reverse", "score", 0.60, 5.0),
        _row(2.0, "hmc", "score", 0.70, 5.4, nfe=300),  # +0.10 = 3.5 s.e., FID worse by 0.4 < 0.5: holds
        _row(4.0, "reverse", "score", 0.80, 5.0),
        _row(4.0, "hmc", "score", 0.90, 6.0, nfe=300),  # FID worse by 1.0 > 0.5: does not hold
        _row(4.0, "reverse", "score", 0.82, 5.0, levels=300, nfe=300),
        _row(4.0, "reverse", "energy", 0.50, 9.0, guide=0.95),
    ]
    checks = summary_checks(rows)
    assert "w = 2, score" in checks[0] and checks[0].endswith("holds") and "NOT" not in checks[0]
    assert "w = 4, score" in checks[1] and "does NOT hold" in checks[1]
    assert "matched cost" in checks[2] and "300 levels" in checks[2]
    assert "energy accuracy 0.500" in checks[3] and "score 0.800" in checks[3]
    assert "fools the guide" in checks[4] and "guide 0.950 vs evaluator 0.500" in checks[4]


# ---- CLI -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compose", "guidance"], "give --scale W and --sampler S"),
        (["compose", "guidance", "--table"], "--table needs --out"),
        (["compose", "guidance", "--scale", "-1", "--sampler", "hmc"], "--scale"),
        (["compose", "guidance", "--dataset", "svhn", "--scale", "1", "--sampler", "hmc"], "invalid choice"),
        (
            ["compose", "guidance", "--scale", "1", "--sampler", "hmc", "--resample-ess", "0.5"],
            "needs energies",
        ),
    ],
)
def test_cli_errors_are_one_line(args, message, capsys, tmp_path):
    try:
        code = main([*args, "--cache", str(tmp_path)])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
    assert len(err) == 1 and message in err[0], err
    assert not any(tmp_path.iterdir())


def test_cli_prints_one_json_object(cache, guide, tiny, capsys, monkeypatch):
    monkeypatch.setitem(gmodels.DEFAULT_STEPS, "score", 3)
    monkeypatch.setattr("bitcompose.guidance.guide.GUIDE_STEPS", 150)
    args = ["compose", "guidance", "--dataset", "digits", "--scale", "2", "--sampler", "reverse", "--n", "4"]
    assert main([*args, "--cache", str(cache), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert REPORT_KEYS <= set(report) and report["n"] == 4 and report["scale"] == 2.0


def test_dataclass_plan_refuses_nonsense():
    with pytest.raises(ValueError, match="unknown sampler"):
        GuidancePlan(samplers=("gibbs",))
    with pytest.raises(ValueError, match="dataset"):
        GuidancePlan(dataset="svhn")
    assert dataclasses.replace(GuidancePlan(), energy_samplers=()).params == ("score",)
