"""The three 2-D composition tasks of the released notebook, with their exact targets.

| task | model 1 | model 2 | operator | exact target |
|---|---|---|---|---|
| product | ring (8 Gaussians, std 0.03) | bar(0.2) | :class:`~bitcompose.compose.Product` | ring restricted to the bar |
| mixture | left_bar | right_bar | :class:`~bitcompose.compose.Mixture` (exact ``log(q1 + q2)``) | uniform on the union |
| negation | box(0.7) | box(0.3) | :class:`~bitcompose.compose.Negation` (α = 0.3) | uniform on the frame |

The mixture uses the exact ``−logsumexp(−E_1, −E_2)`` of the level energies by default. The released notebook's
heuristic (log-sum-exp of the *raw* network energies sharpened by 3.5, ``Mixture(sharpen=3.5)``) is available via
``mixture_sharpen=3.5``; with our models it puts most samples in the gap between the bars (in-support 0.42 with
reverse diffusion vs 0.88 for the exact mixture; see docs/results/toy2d.md).

The negation ``q_1^{1.3}/q_2^{0.3}`` is the frame only at t = 0 exactly. At every noise level both factors have
Gaussian tails, ``log q_t^i ≈ −d_i²/(2σ_t²)`` at distance ``d_i`` outside box ``i``, so past the outer wall the
composed log-density is ``≈ (−1.3 d_1² + 0.3 (d_1 + 0.4)²)/(2σ_t²)``: it *rises* up to ``d_1 = 0.4α = 0.12`` beyond
the wall. With the exact level densities (``param="exact"``) less than 1% of the level-0 mass (σ₀ ≈ 0.025) lies
in the frame, so a sampler that samples the composed levels correctly leaves the support; trained models
only land inside as far as their tails are wrong. The metrics are still against the frame (the intended
target), and the results page reports this.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitcompose.compose.operators import Mixture, Negation, Product
from bitcompose.core.model import DiffusionModel
from bitcompose.data import toy2d as data
from bitcompose.toy2d.metrics import ProductTarget, ToyTarget, UniformTarget

__all__ = ["TASKS", "Task", "MIXTURE_SHARPEN", "NEGATION_ALPHA"]

#: Default mixture sharpening: ``None`` = exact mixture; the notebook's heuristic is 3.5.
MIXTURE_SHARPEN: float | None = None
NEGATION_ALPHA = 0.3


@dataclass(frozen=True)
class Task:
    """A composition task: two component data sets (keys of ``DATASETS``), an operator and the exact target."""

    name: str
    datasets: tuple[str, str]
    operator: str
    target: ToyTarget
    needs_energy: bool

    def compose(
        self, m1: DiffusionModel, m2: DiffusionModel, mixture_sharpen: float | None = MIXTURE_SHARPEN
    ) -> DiffusionModel:
        """The composed model of the two trained component models (``mixture_sharpen``: mixture only)."""
        if self.operator == "product":
            return Product(m1, m2)
        if self.operator == "mixture":
            return Mixture(m1, m2, sharpen=mixture_sharpen)
        if self.operator == "negation":
            return Negation(m1, m2, alpha=NEGATION_ALPHA)
        raise ValueError(f"unknown operator {self.operator!r}")


TASKS: dict[str, Task] = {
    "product": Task(
        "product",
        ("ring", "bar"),
        "product",
        ProductTarget(data.toy_gmm(8, std=0.03, radius=0.5), data.bar(0.2)),
        needs_energy=False,
    ),
    "mixture": Task(
        "mixture",
        ("left_bar", "right_bar"),
        "mixture",
        UniformTarget(
            data.UniformRects(data.left_bar(0.1).rects + data.right_bar(0.1).rects),
        ),
        needs_energy=True,
    ),
    "negation": Task(
        "negation",
        ("box_0.7", "box_0.3"),
        "negation",
        UniformTarget(data.frame(0.7, 0.3)),
        needs_energy=False,
    ),
}
