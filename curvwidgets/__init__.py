"""curvwidgets: curvature of neural-network loss surfaces, in notebooks.

The numerical core is importable on a headless machine with only torch, numpy
and scipy; plots and widgets are imported lazily from their own modules.
"""

from . import curvature, linalg, results, synthetic
from .curvature import GGN, Hessian, loss_stats, spectrum
from .landscape import Direction, eigen_directions, landscape, random_directions
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
from .results import Landscape, Spectrum, TrainingHistory
from .training import Trained, TrainingDiverged, data, load_trained, models, optim, schedules, train

__version__ = "0.1.0"

__all__ = [
    "BoundsTable",
    "Cancelled",
    "Direction",
    "GGN",
    "Hessian",
    "Landscape",
    "LanczosResult",
    "LinearOperator",
    "PowerIterationResult",
    "ProgressEvent",
    "TqdmProgress",
    "as_operator",
    "bounds_table",
    "curvature",
    "data",
    "eigen_directions",
    "lanczos",
    "landscape",
    "linalg",
    "load_trained",
    "loss_stats",
    "models",
    "optim",
    "power_iteration",
    "random_directions",
    "results",
    "schedules",
    "smooth_density",
    "Spectrum",
    "spectrum",
    "spectral_moments",
    "stem_density",
    "synthetic",
    "trace_estimate",
    "train",
    "Trained",
    "TrainingDiverged",
    "TrainingHistory",
    "wasserstein1",
]
