"""Sequence models: the networks, a tiny Bit Diffusion and absorbing-state model that train and decode, the
likelihood bound, the MOSES metrics against MOSES's own code, and ``bitcompose seq``'s one-line errors."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from bitcompose.cli import main
from bitcompose.nets.seq import SeqBitsNet, SeqMaskedNet, seq_net_config
from bitcompose.seq import load_seq_model, preset, train_seq
from bitcompose.seq.train import run_is_complete

# Small real molecules (ZINC-like fragments) repeated: enough structure for a tiny model to learn tokens.
MOLECULES = [
    "CCO",
    "CCN",
    "c1ccccc1",
    "CC(=O)O",
    "CC(C)O",
    "c1ccncc1",
    "CCOC(=O)C",
    "OCC(O)CO",
    "CNC",
    "CCCl",
]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seq") / "mols.txt"
    path.write_text("".join(f"{m}\n" for m in MOLECULES * 30))
    return path


@pytest.fixture(scope="module", params=["bits", "masked"])
def run_dir(
    request: pytest.FixtureRequest, data_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    run = preset("tiny", data=str(data_file), model=request.param, steps=60, log_every=10, save_every=60)
    return train_seq(run, tmp_path_factory.mktemp(request.param) / "run", progress=False)


def test_bits_net_gives_an_expected_code_inside_the_bit_range() -> None:
    cfg = seq_net_config("tiny", vocab_size=11, max_len=7, bit_scale=0.5, num_classes=3)
    net = SeqBitsNet(cfg)
    x_in = torch.randn(4, 7, cfg.in_channels)
    out = net(x_in, torch.rand(4), torch.tensor([0, 1, 2, -1]))
    assert out.shape == (4, 7, cfg.codec.num_bits) and out.abs().max() <= 0.5
    # the null label (-1) and no label are one and the same input
    torch.testing.assert_close(
        net(x_in[3:], torch.full((1,), 0.3), torch.tensor([-1])), net(x_in[3:], torch.full((1,), 0.3))
    )
    with pytest.raises(ValueError, match="labels must lie in"):
        net(x_in, torch.rand(4), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="input must have shape"):
        net(x_in[:, :5], torch.rand(4))
    masked = SeqMaskedNet(seq_net_config("tiny", vocab_size=11, max_len=7, model="masked"))
    assert masked(torch.zeros(2, 11, 7), torch.rand(2)).shape == (2, 11, 7)


def test_tiny_model_trains_and_its_samples_decode(run_dir: Path) -> None:
    log = json.loads((run_dir / "train_log.json").read_text())
    losses = [loss for _, loss, _ in log["losses"]]
    assert losses[-1] < 0.8 * losses[0]
    model = load_seq_model(run_dir)
    assert run_is_complete(run_dir, model.run)
    texts = model.sample(40, steps=10, generator=torch.Generator().manual_seed(0))
    assert len(texts) == 40 and all(isinstance(t, str) for t in texts)
    vocab = set(model.tokenizer.tokens[1:])
    assert all(set(model.tokenizer.split(t)) <= vocab for t in texts if t)
    # a trained model puts most of its samples on tokens and lengths of the data, not on noise
    lengths = [len(model.tokenizer.split(t)) for t in texts]
    assert sum(1 <= n <= 9 for n in lengths) >= 20
    again = model.sample(40, steps=10, generator=torch.Generator().manual_seed(0))
    assert again == texts


def test_bound_is_lower_on_data_than_on_shuffled_tokens(run_dir: Path) -> None:
    model = load_seq_model(run_dir)
    real = MOLECULES * 3
    # the same tokens in a wrong order (sorted)
    shuffled = ["".join(sorted(model.tokenizer.split(m))) for m in real]
    nll_real = model.nll(real, generator=torch.Generator().manual_seed(0), draws=8)
    nll_shuffled = model.nll(shuffled, generator=torch.Generator().manual_seed(0), draws=8)
    assert nll_real.shape == (len(real),) and bool(torch.isfinite(nll_real).all())
    assert float(nll_real.mean()) < float(nll_shuffled.mean())


def test_sampler_choices_for_the_bits_model(run_dir: Path) -> None:
    model = load_seq_model(run_dir)
    if model.kind != "bits":
        pytest.skip("the masked model has one sampler")
    for sampler in ("ddpm", "dpmpp2m"):
        ids = model.generate(8, steps=5, sampler=sampler, td=1.0, generator=torch.Generator().manual_seed(1))
        assert isinstance(ids, torch.Tensor) and ids.shape == (8, model.net_config.max_len)
    with pytest.raises(ValueError, match="unknown sampler"):
        model.generate(2, sampler="euler")


def test_cli_train_sample_evaluate(
    run_dir: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "samples.txt"
    assert (
        main(["seq", "sample", str(run_dir), "--n", "12", "--steps", "5", "--out", str(out), "--json"]) == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["n"] == 12 and row["nfe"] == 5 and len(out.read_text().splitlines()) == 12
    # never over an existing file
    assert main(["seq", "sample", str(run_dir), "--n", "2", "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and len(out.read_text().splitlines()) == 12
    real = tmp_path / "real.txt"
    real.write_text("CCO\nc1ccccc1\nCCN\n")
    assert main(["seq", "evaluate", str(real), "--run", str(run_dir), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["novelty"] == 0.0 and row["floor"]["what"].endswith("mols.txt")
    assert math.isfinite(row["nll_nats"]) and row["bits_per_token"] > 0


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_cli_one_line_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.txt")
    assert "sequence file not found" in _error(
        ["seq", "train", "--data", missing, "--out", str(tmp_path / "r")], capsys
    )
    assert not (tmp_path / "r").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert "holds no sequence" in _error(
        ["seq", "train", "--data", str(empty), "--out", str(tmp_path / "r")], capsys
    )
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("CCO\nCC[Si](C)C\n")
    err = _error(["seq", "evaluate", str(unknown), "--run", str(run_dir)], capsys)
    assert "sequence 2: unknown token '[Si]'" in err
    long = tmp_path / "long.txt"
    long.write_text("CCO\n" + "C" * 40 + "\n")
    assert "more than the model's length" in _error(
        ["seq", "evaluate", str(long), "--run", str(run_dir)], capsys
    )
    assert "run folder not found" in _error(
        ["seq", "sample", missing, "--out", str(tmp_path / "s.txt")], capsys
    )
    assert "must end in .txt" in _error(
        ["seq", "sample", str(run_dir), "--out", str(tmp_path / "s.csv")], capsys
    )


def _moses_metrics_module():  # type: ignore[no-untyped-def]
    """``moses.metrics`` made importable with today's RDKit and pandas (it wants ``rdkit.six`` and
    ``DataFrame.append``), or skip."""
    pytest.importorskip("rdkit")
    pytest.importorskip("fcd_torch")
    pd = pytest.importorskip("pandas")
    six = types.ModuleType("rdkit.six")
    six.iteritems = lambda d: iter(d.items())  # type: ignore[attr-defined]
    six.PY3 = True  # type: ignore[attr-defined]
    sys.modules.setdefault("rdkit.six", six)
    if not hasattr(pd.DataFrame, "append"):
        pd.DataFrame.append = lambda self, other, sort=False, ignore_index=False: pd.concat(  # type: ignore[attr-defined]
            [self, other if isinstance(other, pd.DataFrame) else pd.DataFrame(other)],
            ignore_index=ignore_index,
            sort=sort,
        )
    try:
        from moses.metrics import metrics
    except Exception as exc:  # noqa: BLE001 - any import failure of the third-party package means: skip
        pytest.skip(f"moses.metrics does not import here: {exc}")
    return metrics


def test_molecule_metrics_agree_with_moses() -> None:
    from bitcompose.seq.data import load_sequences
    from bitcompose.seq.molecules import molecule_metrics

    M = _moses_metrics_module()
    from moses.dataset import get_statistics

    train = load_sequences("moses").train
    gen = train[:60] + [s[:-2] for s in train[1000:1040]] + ["", "C1CC", "xyz"]  # valid, truncated, invalid
    ours = molecule_metrics(gen)
    canon = M.remove_invalid(gen, canonize=True)
    mols = [M.get_mol(s) for s in canon]
    ptest = get_statistics("test")
    theirs = {
        "valid": M.fraction_valid(gen, n_jobs=1),
        "unique@1k": M.fraction_unique(canon, 1000, n_jobs=1),
        "novelty": M.novelty(canon, train, n_jobs=1),
        "SNN/Test": M.SNNMetric(n_jobs=1)(gen=mols, pref=ptest["SNN"]),
        "Frag/Test": M.FragMetric(n_jobs=1)(gen=mols, pref=ptest["Frag"]),
        "Scaf/Test": M.ScafMetric(n_jobs=1)(gen=mols, pref=ptest["Scaf"]),
        "IntDiv": M.internal_diversity(mols, n_jobs=1),
    }
    from fcd_torch import FCD

    theirs["FCD/Test"] = FCD(device="cpu", n_jobs=1)(gen=canon, pref=ptest["FCD"])
    assert 0.5 < ours["valid"] < 1.0 and ours["novelty"] < 0.7
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(float(value), abs=1e-6), key
