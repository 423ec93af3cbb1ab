"""The core every layer builds on: analog bits, schedules, the model protocol, the sampling vocabulary, config
I/O and small tensor helpers."""

from bitcompose.core.bits import ENCODINGS, BitCodec
from bitcompose.core.grid import TimeGrid
from bitcompose.core.model import DiffusionModel, EnergyUnavailableError, Prediction, TimeLike, as_times
from bitcompose.core.sampling import SampleResult, StepInfo
from bitcompose.core.schedules import CosineSchedule, DiscreteSchedule, Level, LevelGrid, Schedule

__all__ = [
    "ENCODINGS",
    "BitCodec",
    "CosineSchedule",
    "DiffusionModel",
    "DiscreteSchedule",
    "EnergyUnavailableError",
    "Level",
    "LevelGrid",
    "Prediction",
    "SampleResult",
    "Schedule",
    "StepInfo",
    "TimeGrid",
    "TimeLike",
    "as_times",
]
