"""Caption tokenizer (SentencePiece) and captions <-> analog bits."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sentencepiece")

from bitcompose.core.bits import BitCodec  # noqa: E402
from bitcompose.data.scenes import make_scenes  # noqa: E402
from bitcompose.text import (  # noqa: E402
    EOS_ID,
    PAD_ID,
    CaptionTokenizer,
    TokenBits,
    train_tokenizer,
)


@pytest.fixture(scope="module")
def captions() -> list[str]:
    return make_scenes(200, seed=0).all_captions()


@pytest.fixture(scope="module")
def tok(captions) -> CaptionTokenizer:
    return train_tokenizer(captions, vocab_size=64, model_type="word")


def test_special_ids_and_vocab(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    # 34 words of the default scenes (no "diamond") + 4 specials: not a power of two
    assert tok.vocab_size == 38
    assert tok.piece(0) == "<pad>" and tok.piece(3) == "</s>"


def test_training_is_deterministic(captions, tok, tmp_path):
    again = train_tokenizer(captions, vocab_size=64, model_type="word", path=tmp_path / "t.model")
    assert again.to_bytes() == tok.to_bytes() and again == tok
    loaded = CaptionTokenizer.from_file(tmp_path / "t.model")
    assert loaded == tok
    assert loaded.encode(captions[0]) == tok.encode(captions[0])
    bpe1 = train_tokenizer(captions, vocab_size=60, model_type="bpe")
    bpe2 = train_tokenizer(captions, vocab_size=60, model_type="bpe")
    assert bpe1 == bpe2 and bpe1.vocab_size == 60


def test_round_trip_training_captions(tok, captions):
    for c in captions:
        ids = tok.encode(c)
        assert len(ids) == len(c.split())  # word model: one id per word
        assert tok.decode(ids) == c
    assert tok.decode(tok.encode("A Small  RED circle")) == "a small red circle"  # case folding, spaces
    assert tok.unk_id in tok.encode("a small orange circle")


def test_encode_batch_padding_eos_truncation(tok):
    texts = ["a small red circle", "there is a large blue square and a small green cross"]
    ids = tok.encode_batch(texts, length=8)
    assert ids.dtype == torch.long and tuple(ids.shape) == (2, 8)
    first = tok.encode(texts[0])
    assert ids[0].tolist() == first + [EOS_ID] + [PAD_ID] * 3
    assert ids[1].tolist() == tok.encode(texts[1])[:7] + [EOS_ID]  # truncated to L-1, then EOS
    assert (ids == EOS_ID).sum(dim=1).tolist() == [1, 1]
    dec = tok.decode_batch(ids)
    assert dec[0] == texts[0] and dec[1] == "there is a large blue square and"
    # decode stops at EOS or PAD and skips BOS
    assert tok.decode([tok.bos_id, *first, PAD_ID, *first]) == texts[0]
    assert tok.decode([*first[:2], EOS_ID, *first]) == "a small"
    assert tok.num_tokens(texts) == [4, 11]
    with pytest.raises(ValueError, match="token ids"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="length"):
        tok.encode_batch(texts, length=0)
    with pytest.raises(ValueError, match="single string"):
        tok.encode_batch("a small red circle", length=8)


@pytest.mark.parametrize("encoding", ["binary", "gray", "random"])
def test_token_bits_round_trip(tok, captions, encoding):
    tb = TokenBits.create(tok, length=20, encoding=encoding)
    assert tb.num_bits == 6 and tb.shape == (20, 6)  # ceil(log2 38)
    bits = tb.encode(captions[:50])
    assert tuple(bits.shape) == (50, 20, 6) and set(bits.unique().tolist()) == {-1.0, 1.0}
    out = tb.decode(bits * 0.3 + 0.01 * torch.randn(bits.shape, generator=torch.Generator().manual_seed(0)))
    assert out.texts == captions[:50] and out.num_invalid == 0 and not out.invalid.any()
    assert torch.equal(out.ids, tb.encode_ids(captions[:50]))


def test_invalid_codes_clamped_and_counted(tok):
    tb = TokenBits(tok, BitCodec(num_values=tok.vocab_size, encoding="binary"), length=6)
    ids = tb.encode_ids(["a small red circle"])  # [a, small, red, circle, EOS, PAD]
    bits = tb.encode(["a small red circle"]).clone()
    # position 1: code 63 (all bits +1) >= 38 -> invalid, clamped to 37; position 5: code 40 = 0b101000
    bits[0, 1] = 1.0
    bits[0, 5] = torch.tensor([-1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    out = tb.decode(bits)
    assert out.num_invalid == 2 and out.invalid[0].tolist() == [False, True, False, False, False, True]
    assert out.ids[0, 1] == tok.vocab_size - 1 and out.ids[0, 5] == tok.vocab_size - 1
    assert out.ids[0, 0] == ids[0, 0]
    assert out.texts[0].split()[0] == "a" and len(out.texts[0].split()) == 4  # the clamped token is a word
    assert tb.codec.count_invalid(bits) == 2


def test_token_bits_errors(tok):
    with pytest.raises(ValueError, match="vocab_size"):
        TokenBits(tok, BitCodec(num_values=64), length=8)
    with pytest.raises(ValueError, match="length"):
        TokenBits.create(tok, length=0)
    tb = TokenBits.create(tok, length=8)
    with pytest.raises(ValueError, match="shape"):
        tb.decode(torch.zeros(2, 7, 6))


def test_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        CaptionTokenizer.from_file(tmp_path / "missing.model")
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="SentencePiece"):
        CaptionTokenizer.from_file(tmp_path / "bad.model")
    with pytest.raises(ValueError, match="model_type"):
        train_tokenizer(["a b"], model_type="chars")
    with pytest.raises(ValueError, match="non-empty"):
        train_tokenizer([])
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a b"], vocab_size=3)
