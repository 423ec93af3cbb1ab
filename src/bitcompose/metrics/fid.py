"""Distances between two sets of feature vectors: Fréchet distance (FID) and kernel distance (KID).

* Fréchet distance between the Gaussians fitted to two feature sets (Heusel et al. 2017):
  ``‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}``. The trace of the matrix square root is computed as
  ``Σᵢ √λᵢ`` with ``λᵢ`` the eigenvalues of the symmetric PSD matrix ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}`` (it is similar to
  ``Σ₁ Σ₂``), so no complex numbers appear; tiny negative eigenvalues from round-off are clipped to 0.
* Kernel distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the squared MMD with
  the cubic polynomial kernel ``k(x, y) = (xᵀy / d + 1)³``, averaged over random subsets.

Everything is computed in float64 with numpy. Features may be given as torch tensors or numpy arrays ``[N, D]``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kernel_inception_distance",
]


def _as_features(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    arr = (
        x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    )
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, D], got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 feature vectors, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


def feature_statistics(feats: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of features ``[N, D]`` (N ≥ 2)."""
    arr = _as_features(feats, "feats")
    return arr.mean(axis=0), np.cov(arr, rowvar=False).reshape(arr.shape[1], arr.shape[1])


def _sqrtm_psd(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues clipped to 0)."""
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance_from_stats(
    mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray
) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, cov1) and N(mu2, cov2).

    Args:
        mu1, mu2: means ``[D]``.
        cov1, cov2: symmetric PSD covariances ``[D, D]``.

    Returns:
        ``‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}`` as a Python float (≥ 0 up to round-off, clipped at 0).
    """
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise ValueError(
            f"frechet_distance_from_stats: shapes disagree: mu1 {m1.shape}, cov1 {c1.shape}, "
            f"mu2 {m2.shape}, cov2 {c2.shape}"
        )
    s1 = _sqrtm_psd(c1)
    middle = s1 @ c2 @ s1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = m1 - m2
    value = float(diff @ diff) + float(np.trace(c1)) + float(np.trace(c2)) - 2.0 * tr_sqrt
    return max(value, 0.0)


def frechet_distance(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``[N, D]`` and ``[M, D]`` (N, M ≥ 2).

    With Inception pool features this is FID; with any other features (e.g. the in-project classifier's) it is
    the "FID" of that feature space. It is biased upwards for small N, M: compare numbers at equal sample sizes.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    mu1, cov1 = feature_statistics(a)
    mu2, cov2 = feature_statistics(b)
    return frechet_distance_from_stats(mu1, cov1, mu2, cov2)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    feats_a: np.ndarray | torch.Tensor,
    feats_b: np.ndarray | torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
    """Kernel distance: unbiased MMD² with the cubic polynomial kernel, mean and std over random subsets.

    Each of ``subsets`` rounds draws ``min(subset_size, N, M)`` rows without replacement from each set and
    computes the unbiased MMD² estimate (it can be slightly negative when the sets match).

    Args:
        feats_a: ``[N, D]`` features.
        feats_b: ``[M, D]`` features.
        subsets: number of random subsets (≥ 1).
        subset_size: rows per subset (≥ 2; reduced to ``min(N, M)`` when larger).
        seed: seed of, or an explicit, ``numpy.random.Generator`` for the subsets.

    Returns:
        ``(mean, std)`` of the MMD² estimates (std is 0 for a single subset).
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        xa = a[rng.choice(a.shape[0], m, replace=False)]
        xb = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = _mmd2_unbiased(xa, xb)
    return float(values.mean()), float(values.std())
