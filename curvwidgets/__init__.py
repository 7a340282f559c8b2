"""curvwidgets: curvature of neural-network loss surfaces, in notebooks.

The numerical core is importable on a headless machine with only torch, numpy
and scipy; plots and widgets are imported lazily from their own modules.
"""

from . import curvature, linalg, results, synthetic
from .curvature import GGN, Hessian, loss_stats
from .linalg import (
    BoundsTable,
    LanczosResult,
    LinearOperator,
    PowerIterationResult,
    as_operator,
    bounds_table,
    lanczos,
    power_iteration,
    smooth_density,
    spectral_moments,
    stem_density,
    trace_estimate,
    wasserstein1,
)
from .progress import Cancelled, ProgressEvent, TqdmProgress
from .results import TrainingHistory
from .training import TrainingDiverged, data, models, optim, schedules, train

__version__ = "0.1.0"

__all__ = [
    "BoundsTable",
    "Cancelled",
    "GGN",
    "Hessian",
    "LanczosResult",
    "LinearOperator",
    "PowerIterationResult",
    "ProgressEvent",
    "TqdmProgress",
    "as_operator",
    "bounds_table",
    "curvature",
    "data",
    "lanczos",
    "linalg",
    "loss_stats",
    "models",
    "optim",
    "power_iteration",
    "results",
    "schedules",
    "smooth_density",
    "spectral_moments",
    "stem_density",
    "synthetic",
    "trace_estimate",
    "train",
    "TrainingDiverged",
    "TrainingHistory",
    "wasserstein1",
]
