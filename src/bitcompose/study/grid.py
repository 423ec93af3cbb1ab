"""What the Bit Diffusion study trains and samples: its models (encoding × loss × self-conditioning × prediction,
and the two baselines) and its cells (a model × sampler × steps × td × Appendix G mode), grouped into named grids.

Every model is class-conditional and uses the CPU-sized recipe of the experiments
(:func:`~bitcompose.experiments.image_models.small_model_config`: U-Net base 32, mults (1, 2), one residual block, batch 64,
Adam 1e-3); only the fields a model names differ. The grids:

* ``quick``: every model family once, mostly at DDIM 100, plus a few solver cells (≤ 20 min on the digits).
* ``samplers``: the main model (binary, ℓ2, self-conditioning, x0) under DDIM / DDPM / DPM-Solver++(2M) at
  10–400 steps, td ∈ {0, 0.5, 1, 2} at 10 and 100 steps, and Appendix G's momentum and self-guidance.
* ``encodings``: encodings × losses (Tables 1 and 6) at DDIM and DDPM 100 steps, and 400 steps for gray and
  random (Table 7).
* ``ablations``: self-conditioning on/off × x0 / ε prediction (Fig. 5, Table 8).
* ``baselines``: the absorbing-state categorical model at 10–400 steps and the continuous-pixel model (Table 1).
* ``full``: all of the above.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bitcompose.core.names import STUDY_GRIDS
from bitcompose.experiments.image_models import small_model_config
from bitcompose.images.config import DataConfig, TrainConfig

__all__ = ["GRIDS", "MODELS", "Grid", "StudyCell", "StudyModel", "grid", "model_config"]

LOSSES = ("l2", "logistic", "softmax-head", "masked-elbo")


@dataclass(frozen=True)
class StudyModel:
    """One trained model of the study.

    Attributes:
        name: the row's ``model`` (e.g. ``binary``, ``random-softmax``, ``binary-eps-nosc``, ``masked``).
        encoding: ``binary`` (the paper's uint8), ``gray``, ``random`` (uint8 (rand)), ``onehot``, or
            ``continuous`` (one real number per pixel: the continuous-pixel reference).
        loss: ``l2`` (Eq. 2), ``logistic`` (App. B's sigmoid cross-entropy), ``softmax-head`` (ℓ2 through the
            softmax-factorised output layer, App. B) or ``masked-elbo`` (the absorbing-state baseline).
        self_condition: self-conditioning in training (probability 0.5) and sampling.
        prediction: ``x0``, ``eps`` or ``masked``.
    """

    name: str
    encoding: str
    loss: str = "l2"
    self_condition: bool = True
    prediction: str = "x0"

    @property
    def family(self) -> str:
        """``bit`` (analog bits), ``continuous`` or ``masked``."""
        if self.prediction == "masked":
            return "masked"
        return "continuous" if self.encoding == "continuous" else "bit"


def _catalogue() -> dict[str, StudyModel]:
    models = [StudyModel(e, e) for e in ("binary", "gray", "random", "onehot")]
    models += [StudyModel(f"{e}-logistic", e, "logistic") for e in ("binary", "gray", "random", "onehot")]
    models += [StudyModel(f"{e}-softmax", e, "softmax-head") for e in ("random", "onehot")]
    models += [
        StudyModel("binary-nosc", "binary", self_condition=False),
        StudyModel("binary-eps", "binary", prediction="eps"),
        StudyModel("binary-eps-nosc", "binary", self_condition=False, prediction="eps"),
        StudyModel("masked", "onehot", "masked-elbo", self_condition=False, prediction="masked"),
        StudyModel("continuous", "continuous"),
    ]
    return {m.name: m for m in models}


#: Every model the grids can name.
MODELS: dict[str, StudyModel] = _catalogue()


def model_config(model: StudyModel, dataset: str, image_size: int, steps: int) -> TrainConfig:
    """The training config of ``model`` on ``dataset`` (class-conditional; ``steps`` optimiser steps)."""
    # 28×28 gets a third resolution, so that attention stays at 7×7 as for the 14×14 models
    mults = (1, 2, 2) if image_size >= 28 else (1, 2)
    base = small_model_config(
        f"study-{dataset}-{model.name}",
        DataConfig(name="fashion_mnist" if dataset == "fashion_mnist_28" else dataset, conditional=True),
        "score",
        steps,
        attn_resolution=image_size // 2 ** (len(mults) - 1),
        channel_mults=mults,
    )
    prediction = "logistic" if model.loss == "logistic" else model.prediction
    net = dataclasses.replace(
        base.model,
        encoding=model.encoding,
        prediction=prediction,
        self_condition=model.self_condition,
        output_head="softmax" if model.loss == "softmax-head" else "linear",
    )
    sample = dataclasses.replace(base.sample, sampler="ddpm" if model.family == "masked" else "ddim")
    return dataclasses.replace(
        base, model=net, sample=sample, self_cond_prob=0.5 if model.self_condition else 0.0
    )


@dataclass(frozen=True)
class StudyCell:
    """One evaluation: ``n`` class-conditional samples of a model with one sampler setting.

    Attributes:
        model: a key of :data:`MODELS`.
        sampler: ``ddim``, ``ddpm`` or ``dpmpp2m`` (the masked model: ``ddpm``, its ancestral sampler).
        steps: sampling steps.
        td: the asymmetric time interval, in steps.
        momentum: Appendix G's momentum estimate (0: off).
        self_guidance: Appendix G's self-guidance weight (0: off; two network passes per step).
        self_guidance_form: its convention, ``cfg`` or ``scale`` (:class:`~bitcompose.diffusion.SamplingOptions`).
    """

    model: str
    sampler: str
    steps: int
    td: float = 0.0
    momentum: float = 0.0
    self_guidance: float = 0.0
    self_guidance_form: str = "cfg"

    @property
    def name(self) -> str:
        """The file stem, e.g. ``binary-ddim-100``, ``binary-ddim-10-td1``, ``binary-ddim-100-sg3``."""
        parts = [self.model, self.sampler, str(self.steps)]
        if self.td:
            parts.append(f"td{self.td:g}")
        if self.momentum:
            parts.append(f"m{self.momentum:g}")
        if self.self_guidance:
            parts.append(f"sg{self.self_guidance:g}")
            if self.self_guidance_form != "cfg":
                parts.append(self.self_guidance_form)
        return "-".join(parts)

    @property
    def nfe(self) -> int:
        """Network evaluations per sample."""
        return self.steps * (2 if self.self_guidance else 1)

    @property
    def mode(self) -> str:
        """Appendix G's sampling strategy: ``default``, ``momentum`` or ``self-guidance``."""
        if self.self_guidance:
            return "self-guidance"
        return "momentum" if self.momentum else "default"


@dataclass(frozen=True)
class Grid:
    """A named set of cells (the models are those the cells name)."""

    name: str
    cells: tuple[StudyCell, ...]

    @property
    def models(self) -> tuple[StudyModel, ...]:
        """The models the cells need, in order of first use."""
        return tuple(MODELS[m] for m in dict.fromkeys(c.model for c in self.cells))


STEPS = (10, 20, 50, 100, 400)
TDS = (0.5, 1.0, 2.0)
#: Appendix G settings: a momentum of 0.5 and a self-guidance weight of 3 (the paper finds 3–5 robust).
MOMENTUM, SELF_GUIDANCE = 0.5, 3.0
#: The self-guidance sweep: these weights in both conventions (``scale`` at w = 1 is the default sampler).
SELF_GUIDANCE_WEIGHTS = (0.5, 1.0, 2.0, 3.0)


def _samplers() -> list[StudyCell]:
    cells = [StudyCell("binary", s, k) for s in ("ddim", "ddpm", "dpmpp2m") for k in STEPS]
    cells += [StudyCell("binary", "ddim", k, td=td) for k in (10, 100) for td in TDS]
    cells += [StudyCell("binary", "ddim", k, momentum=MOMENTUM) for k in (100, 400)]
    cells += [StudyCell("binary", "ddim", k, self_guidance=SELF_GUIDANCE) for k in (100, 400)]
    return cells


def _encodings() -> list[StudyCell]:
    names = ["binary", "gray", "random", "onehot", "random-softmax", "onehot-softmax"]
    names += [f"{e}-logistic" for e in ("binary", "gray", "random", "onehot")]
    cells = [StudyCell(m, s, 100) for m in names for s in ("ddim", "ddpm")]
    cells += [StudyCell(m, s, 400) for m in ("gray", "random") for s in ("ddim", "ddpm")]
    return cells


def _ablations() -> list[StudyCell]:
    names = ("binary", "binary-nosc", "binary-eps", "binary-eps-nosc")
    return [StudyCell(m, s, k) for m in names for s, k in (("ddim", 100), ("dpmpp2m", 20))]


def _baselines() -> list[StudyCell]:
    cells = [StudyCell("masked", "ddpm", k) for k in STEPS]
    cells += [StudyCell("continuous", s, k) for s, k in (("ddim", 100), ("ddpm", 100), ("dpmpp2m", 20))]
    return cells + [StudyCell("binary", "ddim", 100)]


def _self_guidance() -> list[StudyCell]:
    cells = [StudyCell("binary", "ddim", 100)]
    for form in ("cfg", "scale"):
        cells += [
            StudyCell("binary", "ddim", 100, self_guidance=w, self_guidance_form=form)
            for w in SELF_GUIDANCE_WEIGHTS
            if not (form == "scale" and w == 1.0)
        ]
    return cells


def _quick() -> list[StudyCell]:
    cells = [StudyCell(m, "ddim", 100) for m in ("binary", "gray", "random", "onehot")]
    cells += [StudyCell(m, "ddim", 100) for m in ("binary-nosc", "binary-eps", "continuous")]
    cells += [StudyCell("masked", "ddpm", k) for k in (20, 100)]
    cells += [StudyCell("binary", s, k) for s, k in (("ddim", 20), ("dpmpp2m", 20), ("ddpm", 100))]
    cells += [StudyCell("binary", "ddim", 20, td=1.0), StudyCell("binary", "ddim", 100, momentum=MOMENTUM)]
    return cells + [StudyCell("binary", "ddim", 100, self_guidance=SELF_GUIDANCE)]


def _unique(cells: list[StudyCell]) -> tuple[StudyCell, ...]:
    return tuple(dict.fromkeys(cells))


_DEFINITIONS = {
    "quick": _quick,
    "samplers": _samplers,
    "encodings": _encodings,
    "ablations": _ablations,
    "baselines": _baselines,
    "selfguidance": _self_guidance,
    "full": lambda: _samplers() + _encodings() + _ablations() + _baselines() + _self_guidance(),
}
#: Every grid, by its name in :data:`~bitcompose.core.names.STUDY_GRIDS` (the CLI's choices).
GRIDS = {name: _DEFINITIONS[name] for name in STUDY_GRIDS}


def grid(name: str, models: tuple[str, ...] | None = None) -> Grid:
    """The named grid (one of :data:`GRIDS`), restricted to the cells of ``models`` when given (a part of a grid:
    e.g. ``models=("gray", "random")`` of ``encodings``)."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose one of {', '.join(GRIDS)}")
    cells = _unique(GRIDS[name]())
    if models is None:
        return Grid(name, cells)
    named = tuple(dict.fromkeys(c.model for c in cells))
    unknown = [m for m in models if m not in named]
    if unknown or not models:
        raise ValueError(
            f"grid {name!r} has no model {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"its models are {', '.join(named)}"
        )
    return Grid(name, tuple(c for c in cells if c.model in models))
