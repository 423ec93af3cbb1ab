"""The 2-D composition benchmark of "Reduce, Reuse, Recycle" (Du et al. 2023) with exact targets.

* :mod:`~bitcompose.toy2d.train`: training of the component models with an on-disk cache.
* :mod:`~bitcompose.toy2d.tasks`: product / mixture / negation and their exact composed targets.
* :mod:`~bitcompose.toy2d.metrics`: log-likelihood (smoothed, with the oracle value), W2, MMD², in-support fraction.
* :mod:`~bitcompose.toy2d.exact`: the closed-form level densities of the data sets (the ``exact`` parameterisation).
* :mod:`~bitcompose.toy2d.run`: one benchmark cell; :mod:`~bitcompose.toy2d.table`: the full table and figure.
"""

from __future__ import annotations

from bitcompose.toy2d.exact import ExactToyModel
from bitcompose.toy2d.run import CELL_PARAMS, DEFAULT_TRAIN_STEPS, SAMPLERS, run_cell
from bitcompose.toy2d.tasks import TASKS, Task
from bitcompose.toy2d.train import DATASETS, PARAMS, TrainConfig, load_or_train

__all__ = [
    "CELL_PARAMS",
    "DATASETS",
    "DEFAULT_TRAIN_STEPS",
    "PARAMS",
    "SAMPLERS",
    "TASKS",
    "ExactToyModel",
    "Task",
    "TrainConfig",
    "load_or_train",
    "run_cell",
]
