"""curvwidgets: curvature of neural-network loss surfaces, in notebooks.

The numerical core is importable on a headless machine with only torch, numpy
and scipy; plots and widgets are imported lazily from their own modules.
Every name below is imported when first used (PEP 562), so ``import
curvwidgets`` and ``curvwidgets --help`` do not pay for torch until a
computation needs it.
"""

from __future__ import annotations

import importlib
from typing import Any, List

__version__ = "0.1.0"

#: Public name -> the module (relative to this package) that defines it.
_EXPORTS = {
    # linear algebra on any symmetric operator
    "BoundsTable": ".linalg", "LanczosResult": ".linalg", "LinearOperator": ".linalg",
    "PowerIterationResult": ".linalg", "as_operator": ".linalg", "bounds_table": ".linalg", "lanczos": ".linalg",
    "power_iteration": ".linalg", "smooth_density": ".linalg", "spectral_moments": ".linalg",
    "stem_density": ".linalg", "trace_estimate": ".linalg", "wasserstein1": ".linalg",
    "TraceEstimate": ".linalg", "estimate_trace": ".linalg", "Eigenpairs": ".linalg", "eigenpairs": ".linalg",
    "Estimate": ".linalg", "spectral_estimates": ".linalg", "density_spread": ".linalg",
    # curvature of a model
    "GGN": ".curvature", "Hessian": ".curvature", "loss_stats": ".curvature", "spectrum": ".curvature",
    "OtherWeightsError": ".curvature", "fingerprint": ".curvature",
    "ModelLoss": ".losses", "SequenceCrossEntropyLoss": ".losses",
    # landscapes
    "Direction": ".directions", "eigen_directions": ".directions", "loss_landscape": ".landscape",
    "random_directions": ".directions",
    # progress protocol and results
    "Cancelled": ".progress", "ProgressEvent": ".progress", "TqdmProgress": ".progress",
    "Diagonal": ".results", "Fingerprint": ".results", "Landscape": ".results", "Spectrum": ".results",
    "TrainingHistory": ".results",
    # training
    "Trained": ".training", "TrainingDiverged": ".training", "data": ".training", "load_trained": ".training",
    "models": ".training", "optim": ".training", "schedules": ".training", "train": ".training",
    "CurvatureMonitor": ".training",
    # the paper's functions
    "train_network": ".api", "compute_eigenspectrum": ".api", "compute_loss_stats": ".api",
    "build_loss_landscape": ".api", "plot_training": ".api", "plot_spectrum": ".api", "plot_loss_landscape": ".api",
}
_SUBMODULES = ("api", "curvature", "directions", "landscape", "linalg", "losses", "results", "synthetic", "training")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'curvwidgets' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted({*globals(), *__all__})
