"""The Bit Diffusion study: the paper's image ablations and the categorical baselines as one resumable grid."""

from bitcompose.study.grid import GRIDS, MODELS, StudyCell, StudyModel, grid
from bitcompose.study.table import run_study

__all__ = ["GRIDS", "MODELS", "StudyCell", "StudyModel", "grid", "run_study"]
