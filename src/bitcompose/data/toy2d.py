"""2-D toy distributions of the composition experiments, with exact samplers and exact densities.

These are the data sets of the authors' 2-D notebook (Du et al. 2023, ``simple_distributions.ipynb``):

* :func:`toy_gmm` — ``n`` isotropic Gaussians of standard deviation ``std`` at angles ``2πk/n`` on a circle of
  radius ``radius`` (std 0.075 by default; the product experiment uses 0.03).
* :func:`bar` — uniform on ``[−s, s] × [−1, 1]``; :func:`left_bar` / :func:`right_bar` — uniform on
  ``[−0.3, −0.1] × [−1, 1]`` and ``[0.1, 0.3] × [−1, 1]``; :func:`toy_box` — uniform on ``[−s, s]²``.

Every distribution has ``sample(n, generator) -> [n, 2]`` and ``log_prob(x [n, 2]) -> [n]`` (exact, normalised;
``−inf`` off the support) and ``contains(x) -> bool [n]`` (the support; all ``True`` for Gaussians). Uniform
distributions on unions of disjoint axis-aligned rectangles (:class:`UniformRects`) also describe the exact
composed targets of the mixture (union of the two bars) and the negation (the square frame), and
:class:`RestrictedGMM` is the exact product target (the ring restricted to the bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Rect",
    "GaussianRing",
    "UniformRects",
    "RestrictedGMM",
    "toy_gmm",
    "bar",
    "left_bar",
    "right_bar",
    "toy_box",
    "frame",
]


def _check_points(x: Tensor) -> None:
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"expected points of shape [n, 2], got {tuple(x.shape)}")


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"number of samples must be a non-negative int, got {n!r}")


@dataclass(frozen=True)
class Rect:
    """The closed axis-aligned rectangle ``[x0, x1] × [y0, y1]``."""

    x0: float
    x1: float
    y0: float
    y1: float

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError(f"empty rectangle {self}")

    @property
    def area(self) -> float:
        """Lebesgue measure of the rectangle."""
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def contains(self, x: Tensor) -> Tensor:
        """``x``: ``[n, 2]``; returns bool ``[n]`` (boundary counts as inside)."""
        _check_points(x)
        return (x[:, 0] >= self.x0) & (x[:, 0] <= self.x1) & (x[:, 1] >= self.y0) & (x[:, 1] <= self.y1)

    def overlaps(self, other: Rect) -> bool:
        """Whether the interiors of the two rectangles intersect."""
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


@dataclass(frozen=True)
class GaussianRing:
    """Equal-weight mixture of ``n`` isotropic Gaussians ``N(r·(cos 2πk/n, sin 2πk/n), std² I)``."""

    n: int = 8
    std: float = 0.075
    radius: float = 0.5

    def __post_init__(self) -> None:
        if self.n < 1 or self.std <= 0 or self.radius < 0:
            raise ValueError(f"GaussianRing needs n >= 1, std > 0, radius >= 0, got {self}")

    @property
    def means(self) -> Tensor:
        """Component means, float64 ``[n, 2]``."""
        ang = 2 * math.pi * torch.arange(self.n, dtype=torch.float64) / self.n
        return self.radius * torch.stack([torch.cos(ang), torch.sin(ang)], dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples, float32 ``[n, 2]``."""
        _check_n(n)
        k = torch.randint(0, self.n, (n,), generator=generator)
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.std * eps).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density of ``x [n, 2]`` (computed in float64), shape ``[n]``."""
        _check_points(x)
        d2 = ((x.double()[:, None, :] - self.means[None]) ** 2).sum(-1)  # [n, K]
        log_norm = math.log(self.n * 2 * math.pi * self.std**2)
        return torch.logsumexp(-0.5 * d2 / self.std**2, dim=1) - log_norm

    def contains(self, x: Tensor) -> Tensor:
        """The support is the whole plane: all ``True``."""
        _check_points(x)
        return torch.ones(x.shape[0], dtype=torch.bool)

    def mass(self, rect: Rect) -> float:
        """Exact probability of the rectangle (products of normal CDF differences)."""

        def phi(z: Tensor) -> Tensor:
            return 0.5 * torch.erfc(-z / math.sqrt(2))

        m = self.means
        px = phi((rect.x1 - m[:, 0]) / self.std) - phi((rect.x0 - m[:, 0]) / self.std)
        py = phi((rect.y1 - m[:, 1]) / self.std) - phi((rect.y0 - m[:, 1]) / self.std)
        return float((px * py).mean())


@dataclass(frozen=True)
class UniformRects:
    """Uniform distribution on a union of pairwise disjoint rectangles."""

    rects: tuple[Rect, ...]

    def __post_init__(self) -> None:
        if not self.rects:
            raise ValueError("UniformRects needs at least one rectangle")
        for i, a in enumerate(self.rects):
            for b in self.rects[i + 1 :]:
                if a.overlaps(b):
                    raise ValueError(f"UniformRects rectangles must be disjoint: {a} and {b} overlap")

    @property
    def area(self) -> float:
        """Total area of the support."""
        return sum(r.area for r in self.rects)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples, float32 ``[n, 2]``: pick a rectangle by area, then a uniform point in it."""
        _check_n(n)
        areas = torch.tensor([r.area for r in self.rects], dtype=torch.float64)
        k = torch.multinomial(areas / areas.sum(), n, replacement=True, generator=generator)
        lo = torch.tensor([[r.x0, r.y0] for r in self.rects], dtype=torch.float64)
        hi = torch.tensor([[r.x1, r.y1] for r in self.rects], dtype=torch.float64)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        return (lo[k] + u * (hi[k] - lo[k])).float()

    def contains(self, x: Tensor) -> Tensor:
        """``x``: ``[n, 2]``; bool ``[n]``."""
        _check_points(x)
        inside = torch.zeros(x.shape[0], dtype=torch.bool)
        for r in self.rects:
            inside |= r.contains(x)
        return inside

    def log_prob(self, x: Tensor) -> Tensor:
        """``−log(area)`` on the support, ``−inf`` off it; float64 ``[n]``."""
        inside = self.contains(x)
        out = torch.full((x.shape[0],), -math.log(self.area), dtype=torch.float64)
        return out.masked_fill(~inside, -math.inf)


@dataclass(frozen=True)
class RestrictedGMM:
    """A :class:`GaussianRing` conditioned on a rectangle: density ``p_gmm(x)·1[x ∈ R] / P_gmm(R)``.

    This is the exact product of the ring with the uniform bar (the uniform factor is constant on its support).
    """

    ring: GaussianRing
    region: Rect

    @property
    def mass(self) -> float:
        """``P_gmm(R)``, the normaliser (exact)."""
        return self.ring.mass(self.region)

    def contains(self, x: Tensor) -> Tensor:
        """``x``: ``[n, 2]``; bool ``[n]``."""
        return self.region.contains(x)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density (float64 ``[n]``), ``−inf`` outside the rectangle."""
        lp = self.ring.log_prob(x) - math.log(self.mass)
        return lp.masked_fill(~self.contains(x), -math.inf)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples by rejection (sample the ring, keep points inside the rectangle), ``[n, 2]``."""
        _check_n(n)
        if self.mass < 1e-6:
            raise ValueError(f"region {self.region} has ring probability {self.mass:.2e}: rejection too slow")
        chunks: list[Tensor] = []
        have = 0
        while have < n:
            x = self.ring.sample(max(2 * int((n - have) / self.mass), 64), generator)
            x = x[self.contains(x)]
            chunks.append(x)
            have += x.shape[0]
        return torch.cat(chunks)[:n] if chunks else torch.zeros(0, 2)


def toy_gmm(n: int = 8, std: float = 0.075, radius: float = 0.5) -> GaussianRing:
    """The notebook's ring of ``n`` Gaussians (the product task uses ``std=0.03``)."""
    return GaussianRing(n=n, std=std, radius=radius)


def bar(scale: float = 0.2) -> UniformRects:
    """Uniform on the vertical bar ``[−scale, scale] × [−1, 1]``."""
    return UniformRects((Rect(-scale, scale, -1.0, 1.0),))


def left_bar(scale: float = 0.1) -> UniformRects:
    """Uniform on ``[−0.2 − scale, −0.2 + scale] × [−1, 1]`` (``[−0.3, −0.1] × [−1, 1]`` by default)."""
    return UniformRects((Rect(-0.2 - scale, -0.2 + scale, -1.0, 1.0),))


def right_bar(scale: float = 0.1) -> UniformRects:
    """Uniform on ``[0.2 − scale, 0.2 + scale] × [−1, 1]`` (``[0.1, 0.3] × [−1, 1]`` by default)."""
    return UniformRects((Rect(0.2 - scale, 0.2 + scale, -1.0, 1.0),))


def toy_box(scale: float = 1.0) -> UniformRects:
    """Uniform on the square ``[−scale, scale]²``."""
    return UniformRects((Rect(-scale, scale, -scale, scale),))


def frame(outer: float = 0.7, inner: float = 0.3) -> UniformRects:
    """Uniform on the square frame ``[−outer, outer]² \\ [−inner, inner]²`` (as four disjoint rectangles)."""
    if not 0 < inner < outer:
        raise ValueError(f"frame needs 0 < inner < outer, got inner={inner}, outer={outer}")
    return UniformRects(
        (
            Rect(-outer, outer, inner, outer),
            Rect(-outer, outer, -outer, -inner),
            Rect(-outer, -inner, -inner, inner),
            Rect(inner, outer, -inner, inner),
        )
    )
