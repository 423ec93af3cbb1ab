"""Sequence tokenisers and data files: SMILES round trips on real molecules, the end token, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bitcompose.seq.data import load_sequences, read_lines
from bitcompose.seq.tokenizer import END, END_TOKEN, SeqTokenizer, build_tokenizer, smiles_tokens

# Real molecules: bracket atoms with charges and hydrogens, stereo, Cl/Br, a two-digit ring closure (%10).
SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "C[N+](C)(C)CC(=O)[O-]",  # betaine: charged bracket atoms
    "O=[N+]([O-])c1ccc(Cl)cc1Br",  # nitro group, Cl and Br
    "c1ccc2[nH]ccc2c1",  # indole: aromatic [nH]
    "C[C@@H](N)C(=O)O",  # L-alanine: chirality
    "C1CC2CC3CC4CC5CC6CC7CC8CC9CC%10CC1C2C3C4C5C6C7C8C9%10",  # ring closure %10
    "F/C=C/F",  # trans double bond
]


@pytest.mark.parametrize("smiles", SMILES)
def test_smiles_tokens_join_back(smiles: str) -> None:
    tokens = smiles_tokens(smiles)
    assert "".join(tokens) == smiles
    assert all(t in tokens for t in ("[N+]", "[O-]")) or "[N+]" not in smiles
    assert ("%10" in tokens) == ("%10" in smiles)
    assert "Cl" in tokens if "Cl" in smiles else "l" not in tokens


def test_bracket_atoms_are_single_tokens() -> None:
    assert smiles_tokens("c1ccc2[nH]ccc2c1").count("[nH]") == 1
    assert smiles_tokens("C[C@@H](N)C(=O)O")[1] == "[C@@H]"
    assert smiles_tokens("CCBr") == ["C", "C", "Br"]


@pytest.mark.parametrize("bad", ["C C", "C[N+", "Cl?x", "CCL"])
def test_untokenisable_smiles_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot tokenise"):
        smiles_tokens(bad)


def test_encode_decode_round_trip_with_end_padding(tmp_path: Path) -> None:
    tok = build_tokenizer(SMILES, "smiles")
    assert tok.tokens[0] == END_TOKEN and list(tok.tokens[1:]) == sorted(tok.tokens[1:])
    length = max(tok.lengths(SMILES)) + 1
    ids = tok.encode(SMILES, length)
    assert ids.shape == (len(SMILES), length) and ids.dtype == torch.long
    assert (ids[:, -1] == END).all()
    assert tok.decode(ids) == SMILES
    # decoding stops at the first end token, whatever follows it
    ids[0, 3] = END
    assert tok.decode(ids)[0] == "".join(smiles_tokens(SMILES[0])[:3])
    loaded = SeqTokenizer.load(tok.save(tmp_path / "tok.json"))
    assert loaded == tok and loaded.decode(tok.encode(SMILES, length)) == SMILES


def test_encode_errors_name_the_sequence() -> None:
    tok = build_tokenizer(["CCO", "CCN"], "smiles")
    with pytest.raises(ValueError, match=r"sequence 2: unknown token 'Cl'"):
        tok.encode(["CCO", "CCCl"], 8)
    with pytest.raises(ValueError, match="sequence 1 has 3 tokens, more than the model's length 2"):
        tok.encode(["CCO"], 2)
    with pytest.raises(ValueError, match="sequence 1: empty sequence"):
        tok.encode([""], 4)
    with pytest.raises(ValueError, match="sequence of strings"):
        tok.encode("CCO", 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ids must lie in"):
        tok.decode(torch.tensor([[0, 9]]))


def test_character_and_sentencepiece_tokenisers() -> None:
    text = ["the cat sat", "a dog ran far", "the dog sat on the mat"] * 20
    chars = build_tokenizer(text, "chars")
    assert chars.decode(chars.encode(text, 30)) == text
    sp = build_tokenizer(text, "sentencepiece", vocab_size=30)
    assert sp.decode(sp.encode(text, 30)) == text
    assert SeqTokenizer.from_dict(sp.to_dict()).decode(sp.encode(text[:2], 30)) == text[:2]
    with pytest.raises(ValueError, match="unknown tokeniser"):
        build_tokenizer(text, "words")


def test_read_lines_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sequence file not found"):
        read_lines(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="holds no sequence"):
        read_lines(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"CC\xff\xfeO\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_lines(tmp_path / "bin.txt")
    with pytest.raises(ValueError, match="is a folder"):
        read_lines(tmp_path)
    (tmp_path / "s.txt").write_text(" CCO \n\nCCN\n")
    assert read_lines(tmp_path / "s.txt") == ["CCO", "CCN"]
    assert read_lines(tmp_path / "s.txt", allow_blank=True) == ["CCO", "", "CCN"]


def test_file_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("".join(f"C{'C' * i}O\n" for i in range(50)))
    a, b, c = load_sequences(str(path)), load_sequences(str(path)), load_sequences(str(path), seed=1)
    assert a == b and a.test != c.test and a.fingerprint != c.fingerprint
    assert len(a.test) == 5 and not set(a.test) & set(a.train) and len(a.train) + len(a.test) == 50
