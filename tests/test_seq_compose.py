"""Property conditioning and composition of molecule models: the property labels and requests on real SMILES, the
conditional training labels, the composed sampler (reverse and MCMC) on a tiny model, the CLI's one-line errors,
and the unconditional runs' cache keys, which the new fields must not change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("rdkit")

from bitcompose.cli import main  # noqa: E402
from bitcompose.compose.composite_sampling import MCMCSettings  # noqa: E402
from bitcompose.seq import load_seq_model, preset, train_seq  # noqa: E402
from bitcompose.seq.compose import compose_molecules  # noqa: E402
from bitcompose.seq.properties import (  # noqa: E402
    ATTRIBUTES,
    attribute_id,
    attribute_labels,
    parse_request,
    property_values,
    satisfied,
)
from bitcompose.seq.train import SeqTask  # noqa: E402
from test_seq_models import MOLECULES as SMALL  # noqa: E402

# the small molecules of the model tests and two larger ones (QED 0.60 and 0.72, logP 2.7 and 0.7)
MOLECULES = [*SMALL[:8], "CC(C)(C)c1ccc(O)cc1", "COc1ccc(CC(N)=O)cc1"]


def test_property_values_and_their_bins() -> None:
    values = property_values(["c1ccccc1", "CCO", "not a molecule", ""])
    # Wildman–Crippen logP of benzene, 6 × 0.2813 (aromatic C) + 6 × 0.1230 (aromatic H); QED of benzene ≈ 0.443
    assert float(values[0, 1]) == pytest.approx(1.6866, abs=1e-4)
    assert float(values[0, 0]) == pytest.approx(0.4426, abs=1e-3)
    assert values[2:].isnan().all() and not values[:2].isnan().any()
    labels = attribute_labels(torch.tensor([[0.69, 0.99], [0.7, 2.0], [0.9, 4.0], [float("nan")] * 2]))
    names = [[ATTRIBUTES[i].name if i >= 0 else None for i in row] for row in labels.tolist()]
    assert names == [["qed:low", "logp:<1"], ["qed:mid", "logp:2-3"], ["qed:high", "logp:>4"], [None, None]]


def test_requests_read_and_refuse() -> None:
    r = parse_request("QED:High and not logp:2-3")
    assert r.terms == ((attribute_id("qed:high"), False), (attribute_id("logp:2-3"), True))
    assert r.text == "qed:high AND NOT logp:2-3" and parse_request(r.text) == r
    for bad, match in [
        ("", "attributes joined by AND"),
        ("qed:high AND", "attributes joined by AND"),
        ("qed:hi", "unknown property 'qed:hi'; expected one of qed:low"),
        ("NOT qed:high", "cannot be negated"),
        ("qed:high AND qed:high", "named twice"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_request(bad)
    # benzene: QED 0.44 (low), logP 1.69 (1-2); ethanol: logP −0.0014 (<1); an invalid string satisfies nothing
    smiles = ["c1ccccc1", "CCO", "C1CC"]
    assert satisfied(smiles, parse_request("qed:low AND logp:1-2")).tolist() == [True, False, False]
    assert satisfied(smiles, parse_request("qed:low AND NOT logp:1-2")).tolist() == [False, True, False]


def test_training_labels_are_one_property_of_each_molecule_or_null(tmp_path: Path) -> None:
    data = tmp_path / "mols.txt"
    data.write_text("".join(f"{m}\n" for m in MOLECULES * 5))
    run = preset("tiny", data=str(data), condition="properties", cond_drop_prob=0.25)
    task = SeqTask(run, torch.nn.Linear(1, 1), run.net_config(20, 30), None, MOLECULES)  # type: ignore[arg-type]
    batch = MOLECULES * 200
    labels = task.labels(batch)
    own = attribute_labels(property_values(MOLECULES))
    for i, lab in enumerate(labels.tolist()):
        assert lab == -1 or lab in own[i % len(MOLECULES)].tolist()
    assert abs(float((labels == -1).double().mean()) - 0.25) < 0.04
    picked = labels[labels >= 0]
    qed_share = float((picked < 3).double().mean())  # labels 0-2 are QED bins: each property half the time
    assert abs(qed_share - 0.5) < 0.05
    assert len(task.property_labels) == len(MOLECULES)  # each molecule's properties computed once


def test_unconditional_cache_keys_are_unchanged() -> None:
    from bitcompose.experiments.cache import cache_key
    from bitcompose.seq.data import data_fingerprint

    fingerprint = data_fingerprint("moses", seed=0)
    keys = {m: cache_key(preset("small", model=m).cache_spec(fingerprint)) for m in ("bits", "masked")}
    assert keys == {"bits": "cc0e6ea5e88d9d1f", "masked": "620473cc2b0e69e8"}  # the keys of the stored runs
    conditional = preset("small", condition="properties").cache_spec(fingerprint)
    assert conditional["condition"] == "properties" and cache_key(conditional) != keys["bits"]
    with pytest.raises(ValueError, match="needs the bits model"):
        preset("small", model="masked", condition="properties")


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seq-compose")
    data = root / "mols.txt"
    data.write_text("".join(f"{m}\n" for m in MOLECULES * 30))
    run = preset("tiny", data=str(data), condition="properties", steps=30, log_every=10, save_every=30)
    return train_seq(run, root / "run", progress=False)


@pytest.mark.parametrize("sampler", ["reverse", "hmc"])
def test_composed_request_samples_and_asks_the_network_for_each_term(
    conditional_run: Path, sampler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_seq_model(conditional_run)
    assert model.net_config.num_classes == len(ATTRIBUTES)
    request = parse_request("qed:high AND NOT logp:2-3")
    seen: set[int | None] = set()
    forward = model.net.forward

    def spy(x, gamma, cond=None):  # type: ignore[no-untyped-def]
        seen.update([None] if cond is None else cond.unique().tolist())
        return forward(x, gamma, cond)

    monkeypatch.setattr(model.net, "forward", spy)
    mcmc = MCMCSettings(min_level=0.5)
    texts, report = compose_molecules(model, request, 6, sampler=sampler, levels=10, mcmc=mcmc, reference=40)
    assert len(texts) == 6 and all(isinstance(t, str) for t in texts)
    assert seen == {None, attribute_id("qed:high"), attribute_id("logp:2-3")}
    assert report["request"] == request.text and report["network_evaluations"] == 3 * report["nfe"]
    assert report["nfe"] == 10 if sampler == "reverse" else report["nfe"] > 10
    assert 0 <= report["satisfied"] <= report["valid"] <= 1 and report["data_share_n"] == 30
    # the data share is the request's share of the run's held-out molecules, computed by RDKit
    assert json.loads(json.dumps(report)) == report
    same, again = compose_molecules(model, request, 6, sampler=sampler, levels=10, mcmc=mcmc, reference=0)
    assert same == texts and again["data_share"] is None  # one seed, one sample


def test_cli_compose_and_its_one_line_errors(
    conditional_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mols.txt"
    argv = ["seq", "compose", str(conditional_run), "--request", "qed:low AND logp:<1", "--n", "4"]
    assert main([*argv, "--levels", "5", "--out", str(out), "--json", "--no-progress"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["n"] == 4 and row["nfe"] == 5 and len(out.read_text().splitlines()) == 4

    def error(args: list[str]) -> str:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        return err

    assert "exists" in error([*argv, "--out", str(out)])
    assert "unknown property" in error(["seq", "compose", str(conditional_run), "--request", "qed:hi"])
    assert "run folder not found" in error(["seq", "compose", str(tmp_path / "no"), "--request", "qed:low"])
    plain = preset("tiny", data=str(conditional_run.parent / "mols.txt"), steps=2, log_every=1, save_every=2)
    plain_dir = train_seq(plain, tmp_path / "plain", progress=False)
    assert "property-conditioned model" in error(["seq", "compose", str(plain_dir), "--request", "qed:low"])


def test_property_guide_learns_and_guides_each_term(
    conditional_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import math

    from bitcompose.seq.guide import PropertyGuide, load_or_train_guide

    model = load_seq_model(conditional_run)
    guide = load_or_train_guide(model, steps=25, cache=tmp_path, progress=False)
    # at initialisation the summed cross-entropy is about ln 3 + ln 5 (uniform over each property's bins)
    assert guide.info["final_loss"] < 0.8 * (math.log(3) + math.log(5))
    assert set(guide.info["accuracy_by_time"]) >= {"qed@t=0", "logp@t=0.9"}
    again = load_or_train_guide(model, steps=25, cache=tmp_path, progress=False)  # from the cache
    x, t = torch.randn(3, model.net_config.max_len, model.net_config.codec.num_bits), torch.full((3,), 0.4)
    torch.testing.assert_close(again(x, t), guide(x, t))
    assert guide.property_logits(x, t, "qed").shape == (3, 3) and guide.property_logits(
        x, t, "logp"
    ).shape == (3, 5)
    # the loss leaves out a molecule without properties, and is the sum of the two properties' cross-entropies
    labels = torch.tensor([[2, 5], [-1, -1]])
    gen = torch.Generator().manual_seed(0)
    assert torch.isfinite(guide.loss(torch.zeros(2, *x.shape[1:]), labels, gen))
    asked: list[tuple[str, int]] = []
    real = PropertyGuide.property_logits

    def spy(self, x_t, t_, prop):  # type: ignore[no-untyped-def]
        asked.append((prop, x_t.shape[0]))
        return real(self, x_t, t_, prop)

    monkeypatch.setattr(PropertyGuide, "property_logits", spy)
    request = parse_request("qed:high AND NOT logp:2-3")
    texts, report = compose_molecules(model, request, 4, levels=6, guide=guide, reference=0)
    assert report["method"] == "guidance" and report["network_evaluations"] == report["nfe"] == 6
    assert report["guide_evaluations"] == 12 and sorted(set(asked)) == [("logp", 4), ("qed", 4)]
    assert len(texts) == 4
