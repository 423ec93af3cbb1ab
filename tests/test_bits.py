"""Tests for bitcompose.core.bits.BitCodec (integers <-> analog bits)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bitcompose.core.bits import ENCODINGS, BitCodec

FAST = settings(max_examples=40, deadline=None)
KS = st.one_of(st.integers(2, 300), st.sampled_from([1000, 1024, 1025, 32000, 32768, 2**16]))
SHAPES = st.lists(st.integers(0, 4), min_size=0, max_size=3)


def _values(k: int, shape: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, k, tuple(shape), generator=g)


# --------------------------------------------------------------------------- round trips


@FAST
@given(k=KS, encoding=st.sampled_from(["binary", "gray", "random"]), shape=SHAPES, seed=st.integers(0, 10**6))
def test_round_trip_bit_encodings(k: int, encoding: str, shape: list[int], seed: int) -> None:
    codec = BitCodec(k, encoding)
    x = _values(k, shape, seed)
    a = codec.encode(x)
    assert a.shape == (*shape, codec.num_bits)
    assert a.dtype == torch.float32
    assert codec.num_bits == max(1, math.ceil(math.log2(k)))
    y, invalid = codec.decode(a, return_invalid=True)
    assert y.dtype == torch.int64
    assert torch.equal(y, x)
    assert not invalid.any()
    assert codec.count_invalid(a) == 0


@FAST
@given(k=st.integers(2, 300), shape=SHAPES, seed=st.integers(0, 10**6))
def test_round_trip_onehot(k: int, shape: list[int], seed: int) -> None:
    codec = BitCodec(k, "onehot")
    x = _values(k, shape, seed)
    a = codec.encode(x)
    assert codec.num_bits == k
    assert a.shape == (*shape, k)
    assert torch.equal(codec.decode(a), x)


@pytest.mark.parametrize("encoding", ["binary", "gray", "random"])
@pytest.mark.parametrize("k", [2, 3, 5, 7, 8, 9, 100, 255, 256, 257, 1000])
def test_every_value_round_trips_and_codes_are_distinct(k: int, encoding: str) -> None:
    codec = BitCodec(k, encoding)
    table = codec.code_table()
    assert table.shape == (k, codec.num_bits)
    assert torch.equal(codec.decode(table), torch.arange(k))
    assert len({tuple(row.tolist()) for row in table}) == k  # injective


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_code_table_rows_equal_encode(encoding: str) -> None:
    codec = BitCodec(13, encoding, scale=0.5)
    table = codec.code_table(dtype=torch.float64)
    assert table.dtype == torch.float64
    for v in range(13):
        assert torch.equal(table[v].float(), codec.encode(torch.tensor(v)))


def test_large_alphabet_round_trip_without_table() -> None:
    codec = BitCodec(2**16, "gray")
    assert codec.num_bits == 16
    x = torch.tensor([0, 1, 2**15, 2**16 - 1, 12345])
    assert torch.equal(codec.decode(codec.encode(x)), x)
    assert BitCodec(32000).num_bits == 15  # the paper's caption vocabulary: 15 bits


def test_accepts_any_integer_dtype() -> None:
    codec = BitCodec(256)
    x = torch.tensor([0, 7, 255], dtype=torch.uint8)
    for dtype in (torch.uint8, torch.int16, torch.int32, torch.int64):
        assert torch.equal(codec.decode(codec.encode(x.to(dtype))), x.long())


# --------------------------------------------------------------------------- exact codes


def test_binary_is_lsb_first() -> None:
    codec = BitCodec(8)
    assert codec.encode(torch.tensor(6)).tolist() == [-1.0, 1.0, 1.0]  # 6 = 0b110 -> [0, 1, 1]
    assert codec.encode(torch.tensor(1)).tolist() == [1.0, -1.0, -1.0]
    assert BitCodec(256).encode(torch.tensor(200)).tolist() == [
        -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0,  # 200 = 0b11001000
    ]  # fmt: skip
    x = torch.arange(256)
    bits = (BitCodec(256).encode(x) > 0).long()
    assert torch.equal((bits * (2 ** torch.arange(8))).sum(-1), x)


def test_scale_respected_and_threshold_at_zero() -> None:
    codec = BitCodec(8, scale=0.25)
    a = codec.encode(torch.tensor([6, 1]))
    assert a.tolist() == [[-0.25, 0.25, 0.25], [0.25, -0.25, -0.25]]
    assert set(codec.code_table().unique().tolist()) == {-0.25, 0.25}
    # decoding only looks at the sign, whatever the scale
    assert codec.decode(torch.tensor([[-3.0, 1e-6, 7.0]])).tolist() == [6]
    assert codec.decode(torch.tensor([[0.0, 0.0, 0.0]])).tolist() == [0]  # 0 is not > 0


def test_gray_table_k8() -> None:
    codec = BitCodec(8, "gray")
    codes = (codec.code_table() > 0).long() @ (2 ** torch.arange(3))
    assert codes.tolist() == [0, 1, 3, 2, 6, 7, 5, 4]


@pytest.mark.parametrize("k", [2, 5, 8, 100, 256, 1000])
def test_gray_adjacent_values_differ_in_one_bit(k: int) -> None:
    table = BitCodec(k, "gray").code_table() > 0
    assert ((table[1:] != table[:-1]).sum(-1) == 1).all()


def test_random_table_matches_paper_and_numpy() -> None:
    codec = BitCodec(256, "random")
    perm = codec.permutation
    assert perm is not None
    assert perm[:4].tolist() == [228, 6, 79, 206]
    assert codec.encode(torch.tensor(0)).tolist() == BitCodec(256).encode(torch.tensor(228)).tolist()
    for k in (256, 10, 1000):
        p = np.arange(k)
        np.random.RandomState(42).shuffle(p)
        got = BitCodec(k, "random").permutation
        assert got is not None and got.tolist() == p.tolist()


def test_random_does_not_touch_global_numpy_rng() -> None:
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    BitCodec(300, "random")
    assert np.random.rand() == expected


def test_onehot_argmax() -> None:
    codec = BitCodec(4, "onehot", scale=2.0)
    assert codec.encode(torch.tensor(2)).tolist() == [-2.0, -2.0, 2.0, -2.0]
    a = torch.tensor([[0.1, 0.3, -0.2, 0.29], [-5.0, -4.0, -6.0, -4.5]])
    assert codec.decode(a).tolist() == [1, 1]
    assert codec.count_invalid(a) == 0


def test_one_bit_and_three_bit_decoders() -> None:
    # Regression: an earlier port's bits_to_decimal assumed 8 bits (lucidrains/bit-diffusion#8).
    two = BitCodec(2)
    assert two.num_bits == 1
    assert two.decode(torch.tensor([[-0.7], [0.4]])).tolist() == [0, 1]
    assert torch.equal(two.decode(two.encode(torch.tensor([0, 1, 1, 0]))), torch.tensor([0, 1, 1, 0]))
    three = BitCodec(8)
    a = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, 1.0], [1.0, -1.0, 1.0]])
    assert three.decode(a).tolist() == [7, 4, 5]


# --------------------------------------------------------------------------- invalid codes


def test_invalid_binary_code_clamped_and_counted() -> None:
    codec = BitCodec(5)  # 3 bits, codes 5..7 invalid
    a = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [1.0, -1.0, 1.0]])  # 7, 1, 5
    values, invalid = codec.decode(a, return_invalid=True)
    assert values.tolist() == [4, 1, 4]
    assert invalid.tolist() == [True, False, True]
    assert codec.count_invalid(a) == 2
    assert codec.count_invalid(a[:1]) == 1


@pytest.mark.parametrize("encoding", ["binary", "gray", "random"])
@pytest.mark.parametrize("k", [3, 5, 6, 100, 1000])
def test_every_bit_pattern_decodes_in_range(k: int, encoding: str) -> None:
    codec = BitCodec(k, encoding)
    n = codec.num_bits
    patterns = torch.arange(2**n)
    a = ((patterns.unsqueeze(-1) >> torch.arange(n)) & 1).float() * 2 - 1
    values, invalid = codec.decode(a, return_invalid=True)
    assert values.min() >= 0 and values.max() <= k - 1
    assert int(invalid.sum()) == 2**n - k == codec.count_invalid(a)
    assert (values[invalid] == k - 1).all()
    assert sorted(values[~invalid].tolist()) == list(range(k))  # valid patterns hit every value once


def test_gray_invalid_codes_non_power_of_two() -> None:
    # gray(4) = 6; the gray codes 4 (= gray(7)), 5 (= gray(6)) and 7 (= gray(5)) are invalid
    codec = BitCodec(5, "gray")
    patterns = torch.tensor([4, 5, 6, 7])
    a = ((patterns.unsqueeze(-1) >> torch.arange(3)) & 1).float() * 2 - 1
    values, invalid = codec.decode(a, return_invalid=True)
    assert values.tolist() == [4, 4, 4, 4]
    assert invalid.tolist() == [True, True, False, True]


def test_random_invalid_pattern() -> None:
    codec = BitCodec(5, "random")
    a = torch.tensor([[1.0, 1.0, 1.0]])  # pattern 7 >= 5
    assert codec.decode(a).tolist() == [4]
    assert codec.count_invalid(a) == 1


# --------------------------------------------------------------------------- layouts


def test_image_layout_channel_bits_contiguous() -> None:
    codec = BitCodec(256)
    x = torch.randint(0, 256, (2, 3, 4, 5), generator=torch.Generator().manual_seed(0))
    a = codec.encode_images(x)
    assert a.shape == (2, 24, 4, 5)
    for c in range(3):
        for i in range(8):
            assert torch.equal(a[:, c * 8 + i], ((x[:, c] >> i) & 1).float() * 2 - 1)
    assert torch.equal(codec.decode_images(a), x)
    values, invalid = codec.decode_images(a, return_invalid=True)
    assert torch.equal(values, x) and invalid.shape == x.shape and not invalid.any()


def test_image_layout_non_power_of_two() -> None:
    codec = BitCodec(17, "gray")  # 5 bits (digits data has 17 levels)
    x = torch.randint(0, 17, (3, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    a = codec.encode_images(x)
    assert a.shape == (3, 5, 8, 8)
    assert torch.equal(codec.decode_images(a), x)


def test_sequence_helpers() -> None:
    codec = BitCodec(1000, "random")
    x = torch.randint(0, 1000, (4, 7), generator=torch.Generator().manual_seed(2))
    a = codec.encode_sequence(x)
    assert a.shape == (4, 7, 10)
    assert torch.equal(a, codec.encode(x))
    assert torch.equal(codec.decode_sequence(a), x)
    values, invalid = codec.decode_sequence(a, return_invalid=True)
    assert torch.equal(values, x) and invalid.shape == (4, 7)


# --------------------------------------------------------------------------- config / misc


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_dict_round_trip_and_repr(encoding: str) -> None:
    codec = BitCodec(300, encoding, scale=0.5)
    config = json.loads(json.dumps(codec.to_dict()))
    assert config == {"num_values": 300, "encoding": encoding, "scale": 0.5}
    again = BitCodec.from_dict(config)
    assert again == codec and hash(again) == hash(codec)
    x = torch.arange(300)
    assert torch.equal(again.encode(x), codec.encode(x))
    r = repr(codec)
    assert "300" in r and encoding in r and "0.5" in r


def test_from_dict_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="unknown config key"):
        BitCodec.from_dict({"num_values": 4, "bits": 2})
    with pytest.raises(ValueError, match="missing key"):
        BitCodec.from_dict({"encoding": "gray"})


def test_meta_device_tables_follow_input() -> None:
    # The permutation table is moved to the input's device (meta tensors exercise the device plumbing on CPU).
    codec = BitCodec(10, "random")
    out = codec._decode(torch.zeros(3, 4, device="meta"))[0]
    assert out.device.type == "meta" and out.shape == (3,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_cuda_round_trip(encoding: str) -> None:
    codec = BitCodec(300, encoding)
    x = torch.randint(0, 300, (5, 6), device="cuda")
    a = codec.encode(x)
    assert a.device == x.device
    assert torch.equal(codec.decode(a), x)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_values": 1}, "num_values must be >= 2"),
        ({"num_values": 0}, "num_values must be >= 2"),
        ({"num_values": 2.0}, "num_values must be an integer"),
        ({"num_values": True}, "num_values must be an integer"),
        ({"num_values": 4, "encoding": "uint8"}, "unknown encoding"),
        ({"num_values": 4, "scale": 0.0}, "scale must be positive"),
        ({"num_values": 4, "scale": -1.0}, "scale must be positive"),
        ({"num_values": 4, "scale": float("inf")}, "scale must be positive"),
        ({"num_values": 4, "scale": "1"}, "scale must be a positive real"),
        ({"num_values": 2**30, "encoding": "onehot"}, "too large"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BitCodec(**kwargs)  # type: ignore[arg-type]


def test_bad_encode_inputs() -> None:
    codec = BitCodec(5)
    with pytest.raises(ValueError, match="integer tensor.*float32"):
        codec.encode(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="integer tensor.*bool"):
        codec.encode(torch.tensor([True]))
    with pytest.raises(ValueError, match=r"\[0, 4\].*min -1"):
        codec.encode(torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 4\].*max 5"):
        codec.encode(torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        codec.encode([1, 2])  # type: ignore[arg-type]


def test_bad_decode_inputs() -> None:
    codec = BitCodec(5)
    with pytest.raises(ValueError, match="trailing dimension of size num_bits=3"):
        codec.decode(torch.zeros(4, 8))
    with pytest.raises(ValueError, match="trailing dimension"):
        codec.decode(torch.tensor(0.5))
    with pytest.raises(ValueError, match="floating-point"):
        codec.decode(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        codec.decode(torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="trailing dimension"):
        codec.count_invalid(torch.zeros(2, 2))


def test_bad_layout_inputs() -> None:
    codec = BitCodec(256)
    with pytest.raises(ValueError, match=r"encode_images expects a tensor \[B, C, H, W\]"):
        codec.encode_images(torch.zeros(3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="decode_images expects"):
        codec.decode_images(torch.zeros(24, 4, 4))
    with pytest.raises(ValueError, match="not a multiple of num_bits=8"):
        codec.decode_images(torch.zeros(1, 20, 4, 4))
    with pytest.raises(ValueError, match=r"encode_sequence expects a tensor \[B, L\]"):
        codec.encode_sequence(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="decode_sequence expects"):
        codec.decode_sequence(torch.zeros(3, 8))
    with pytest.raises(ValueError, match="trailing dimension"):
        codec.decode_sequence(torch.zeros(2, 3, 7))


# --------------------------------------------------------------------------- continuous (the pixel reference)


def test_continuous_encoding_is_the_rescaled_value_and_decodes_to_the_nearest_level() -> None:
    codec = BitCodec(256, "continuous", scale=0.5)
    assert codec.num_bits == 1
    a = codec.encode(torch.tensor([0, 51, 255]))
    assert torch.allclose(a[:, 0], torch.tensor([-0.5, (2 * 51 / 255 - 1) * 0.5, 0.5]))
    x = torch.arange(256)
    assert torch.equal(codec.decode(codec.encode(x)), x)
    # nearest level: a shift of 0.49 level keeps the value, 0.51 level moves it; beyond ±b clamps
    step = 2 * 0.5 / 255
    assert codec.decode(codec.encode(torch.tensor([7])) + 0.49 * step).item() == 7
    assert codec.decode(codec.encode(torch.tensor([7])) + 0.51 * step).item() == 8
    values, invalid = codec.decode(torch.tensor([[-3.0], [3.0]]), return_invalid=True)
    assert values.tolist() == [0, 255] and not bool(invalid.any())
