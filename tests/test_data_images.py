"""Tests for the offline image data sets (bitcompose.data.images / image_files)."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bitcompose.data import ImageDataset, dataset_info, load_image_dataset, random_flip
from bitcompose.data.image_files import FASHION_MNIST_DIR, read_idx


def _ds(n: int = 10, k: int = 256) -> ImageDataset:
    images = torch.arange(n * 4).reshape(n, 1, 2, 2) % k
    return ImageDataset(images=images, labels=torch.arange(n) % 3, num_values=k, num_classes=3, name="toy")


# ---------------------------------------------------------------- built-in data sets


def test_digits_shape_values_labels() -> None:
    ds = load_image_dataset("digits")
    assert ds.images.shape == (1797, 1, 8, 8) and ds.images.dtype == torch.int64
    assert ds.num_values == 17 and int(ds.images.max()) == 16 and int(ds.images.min()) == 0
    assert ds.labels is not None and ds.labels.dtype == torch.int64
    assert ds.labels[:10].tolist() == list(range(10))
    assert ds.num_classes == 10 and len(ds) == 1797 and ds.name == "digits"
    info = dataset_info("digits")
    assert (info.channels, info.height, info.width, info.num_values, info.size) == (1, 8, 8, 17, 1797)


def test_mnist5k_levels() -> None:
    ds = load_image_dataset("mnist", levels=2)
    assert ds.images.shape == (5000, 1, 28, 28) and ds.num_values == 2
    assert set(ds.images.unique().tolist()) == {0, 1}
    assert ds.labels is not None and torch.bincount(ds.labels).tolist() == [500] * 10


@pytest.mark.skipif(
    not Path(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist not installed",
)
def test_fashion_mnist_test_split() -> None:
    ds = load_image_dataset("fashion_mnist-test", max_images=100)
    assert ds.images.shape == (100, 1, 28, 28) and ds.num_values == 256 and ds.num_classes == 10
    assert ds.labels is not None and ds.labels[:4].tolist() == [9, 2, 1, 1]


def test_fashion_mnist_missing_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_image_dataset("fashion_mnist", root=str(tmp_path))


def test_read_idx_roundtrip_and_bad_magic(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array(arr.shape, dtype=">i4").tobytes()
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(header + arr.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), arr)
    ints = np.array([1, -2, 300], dtype=">i4")
    (tmp_path / "y").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 3]) + ints.tobytes())
    assert read_idx(tmp_path / "y").tolist() == [1, -2, 300]
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(header + arr.tobytes()[:-1])
    with pytest.raises(ValueError, match="IDX header"):
        read_idx(tmp_path / "short")


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown image dataset"):
        load_image_dataset("cifar100")


# ---------------------------------------------------------------- npz


def test_npz_grey_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(5, 6, 7), dtype=np.uint8)
    np.savez(tmp_path / "g.npz", images=grey, labels=np.array([0, 2, 1, 2, 0]))
    ds = load_image_dataset("npz", path=str(tmp_path / "g.npz"))
    assert ds.images.shape == (5, 1, 6, 7) and ds.num_classes == 3 and ds.name == "npz:g.npz"
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), grey)
    rgb = rng.integers(0, 256, size=(4, 6, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", images=rgb)
    ds = load_image_dataset(str(tmp_path / "c.npz"), levels=16)
    assert ds.images.shape == (4, 3, 6, 7) and ds.labels is None and ds.num_classes == 0
    assert int(ds.images[2, 1, 3, 5]) == int(rgb[2, 3, 5, 1]) // 16
    info = dataset_info(str(tmp_path / "c.npz"))
    assert (info.channels, info.height, info.width, info.num_classes, info.size) == (3, 6, 7, 0, 4)


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"images": np.zeros((2, 4, 4), dtype=np.float32)}, "must be integers"),
        ({"images": np.zeros((2, 4), dtype=np.uint8)}, r"\[N, H, W\]"),
        (
            {"images": np.zeros((2, 4, 4), dtype=np.uint8), "labels": np.zeros(3, dtype=np.int64)},
            "one per image",
        ),
        (
            {"images": np.zeros((2, 4, 4), dtype=np.uint8), "labels": np.zeros(2, dtype=np.float32)},
            "integers",
        ),
        ({"pixels": np.zeros((2, 4, 4), dtype=np.uint8)}, "no 'images'"),
    ],
)
def test_npz_errors(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        load_image_dataset("npz", path=str(tmp_path / "bad.npz"))


def test_npz_missing_file_and_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_image_dataset(str(tmp_path / "nope.npz"))
    with pytest.raises(ValueError, match="needs path"):
        load_image_dataset("npz")


def test_a_file_that_is_not_an_npz_is_named_for_what_it_is(tmp_path: Path) -> None:
    text = tmp_path / "text.npz"
    text.write_text("images,labels\n1,2\n")
    with pytest.raises(ValueError, match="not a .npz archive .*it looks like text"):
        load_image_dataset(str(text))
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(b"\x80\x04\x95" + bytes(20))
    with pytest.raises(ValueError, match="it looks like pickled data, which is never loaded"):
        load_image_dataset(str(pickled))


# ---------------------------------------------------------------- CIFAR-10 / ImageNet-64 (fabricated files)


def _write_cifar(folder: Path, per_batch: int = 3) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"x.png"] * per_batch,
        }
        raw = pickle.dumps(batch, protocol=2)
        if name == "data_batch_1":  # the official files name numpy's old module path
            raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(raw)
        written[name] = (data, labels)
    return written


def test_cifar10_layout_and_order(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_image_dataset("cifar10", root=str(tmp_path))  # parent folder is accepted
    assert ds.images.shape == (15, 3, 32, 32) and ds.num_values == 256 and ds.num_classes == 10
    data4, labels4 = written["data_batch_4"]
    # image 1 of batch 4 -> index 3*3 + 1; the flat row is R plane, G plane, B plane, each row-major 32x32
    assert int(ds.images[10, 1, 5, 7]) == int(data4[1, 1 * 1024 + 5 * 32 + 7])
    assert ds.labels is not None and int(ds.labels[10]) == labels4[1]
    test = load_image_dataset("cifar10-test", root=str(tmp_path / "cifar-10-batches-py"))
    np.testing.assert_array_equal(test.images.reshape(3, -1).numpy(), written["test_batch"][0])
    assert len(load_image_dataset("cifar10", root=str(tmp_path), max_images=4)) == 4


def test_cifar10_missing_and_no_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        load_image_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="needs root"):
        load_image_dataset("cifar10")


def test_pickle_with_code_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    _write_cifar(folder)
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": os.getcwd}))  # a reference to a callable
    with pytest.raises(ValueError, match="refusing to load"):
        load_image_dataset("cifar10", root=str(folder))


def test_imagenet64_layout_and_one_based_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    batches = []
    for i in (1, 2):
        data = rng.integers(0, 256, size=(4, 12288), dtype=np.uint8)
        labels = rng.integers(1, 1001, size=4)
        labels[0] = 1000 if i == 1 else 1
        np.savez(tmp_path / f"train_data_batch_{i}.npz", data=data, labels=labels, mean=np.zeros(12288))
        batches.append((data, labels))
    val = rng.integers(0, 256, size=(2, 12288), dtype=np.uint8)
    np.savez(tmp_path / "val_data.npz", data=val, labels=np.array([5, 7]))
    ds = load_image_dataset("imagenet64", root=str(tmp_path), levels=4)
    assert ds.images.shape == (8, 3, 64, 64) and ds.num_classes == 1000 and ds.num_values == 4
    assert (
        ds.labels is not None and ds.labels.tolist() == (np.concatenate([b[1] for b in batches]) - 1).tolist()
    )
    assert int(ds.labels[0]) == 999 and int(ds.labels[4]) == 0
    assert int(ds.images[5, 2, 63, 1]) == int(batches[1][0][1, 2 * 4096 + 63 * 64 + 1]) * 4 // 256
    v = load_image_dataset("imagenet64-val", root=str(tmp_path))
    assert v.labels is not None and v.labels.tolist() == [4, 6]
    np.testing.assert_array_equal(v.images.reshape(2, -1).numpy(), val)
    np.savez(tmp_path / "val_data.npz", data=val, labels=np.array([0, 7]))
    with pytest.raises(ValueError, match="1..1000"):
        load_image_dataset("imagenet64-val", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train_data_batch"):
        load_image_dataset("imagenet64", root=str(tmp_path / "empty"))


# ---------------------------------------------------------------- ImageDataset operations


def test_quantize_rule_and_errors() -> None:
    ds = ImageDataset(torch.arange(256).reshape(4, 1, 8, 8), None, 256, 0, "ramp")
    q = ds.quantize(16)
    assert q.num_values == 16 and torch.equal(q.images, ds.images // 16)
    b = ds.quantize(2)
    assert torch.equal(b.images, (ds.images >= 128).long())
    d = load_image_dataset("digits").quantize(16)  # 17 -> 16: v * 16 // 17
    assert int(d.images.max()) == 15
    for bad in (1, 257):
        with pytest.raises(ValueError, match="levels"):
            ds.quantize(bad)


def test_split_deterministic_disjoint_complete() -> None:
    ds = _ds(50)
    tr, va = ds.split(0.2, seed=3)
    tr2, va2 = ds.split(0.2, seed=3)
    assert len(tr) == 40 and len(va) == 10
    assert torch.equal(tr.images, tr2.images) and torch.equal(va.images, va2.images)
    firsts = torch.cat([tr.images[:, 0, 0, 0], va.images[:, 0, 0, 0]]).sort().values
    assert torch.equal(firsts, ds.images[:, 0, 0, 0].sort().values)
    _, va3 = ds.split(0.2, seed=4)
    assert not torch.equal(va.images, va3.images)
    assert tr.labels is not None and tr.name == "toy"
    with pytest.raises(ValueError, match="val_fraction"):
        ds.split(1.0)


def test_dataset_validation() -> None:
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(torch.zeros(1, 1, 2, 2), None, 2, 0, "x")
    with pytest.raises(ValueError, match="0..1"):
        ImageDataset(torch.full((1, 1, 2, 2), 2), None, 2, 0, "x")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.long), torch.zeros(3, dtype=torch.long), 2, 1, "x")


def test_random_flip() -> None:
    x = torch.arange(6 * 2 * 3 * 4).reshape(6, 2, 3, 4)
    out = random_flip(x, torch.Generator().manual_seed(0))
    again = random_flip(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    flipped = [bool(torch.equal(out[i], x[i].flip(-1))) for i in range(6)]
    same = [bool(torch.equal(out[i], x[i])) for i in range(6)]
    assert all(f != s for f, s in zip(flipped, same, strict=True))
    many = random_flip(torch.arange(2000 * 2).reshape(2000, 1, 1, 2), torch.Generator().manual_seed(1))
    assert 900 < int((many[:, 0, 0, 0] % 2 == 1).sum()) < 1100  # flipped ones start with the odd value
    assert torch.equal(random_flip(x, torch.Generator(), p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, torch.Generator(), p=0.0), x)


def test_integer_npz_and_png_folders(tmp_path: Path) -> None:
    """16-bit / int64 pixels that fit 8 bits are read; a folder of PNGs, with one sub-folder per class for labels."""
    from PIL import Image

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (5, 6, 6)).astype(np.uint16)
    np.savez(tmp_path / "u16.npz", images=wide)
    ds = load_image_dataset(str(tmp_path / "u16.npz"))
    assert ds.images.shape == (5, 1, 6, 6) and torch.equal(
        ds.images[:, 0], torch.from_numpy(wide.astype(np.int64))
    )
    np.savez(tmp_path / "big.npz", images=(wide.astype(np.int64) * 256))
    with pytest.raises(ValueError, match="do not fit 8 bits"):
        load_image_dataset(str(tmp_path / "big.npz"))
    for c in ("cats", "dogs"):
        (tmp_path / "png" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(
                tmp_path / "png" / c / f"{i}.png"
            )
    ds = load_image_dataset("png", path=str(tmp_path / "png"))
    assert (
        ds.images.shape == (6, 3, 6, 6) and ds.labels is not None and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    )
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "png" / "dogs" / "odd.png")
    with pytest.raises(ValueError, match="every image must have the same mode and size"):
        load_image_dataset("png", path=str(tmp_path / "png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .png files"):
        load_image_dataset("png", path=str(tmp_path / "empty"))
