"""Curvature of a model's loss: Hessian and GGN operators, diagonals, loss statistics.

The operators plug into :mod:`curvwidgets.linalg` (``cw.lanczos(cw.Hessian(...), steps=100)``)
and reduce over ranks when ``torch.distributed`` is initialised.
"""

from . import diagonal
from .diagonal import exact_diagonal, ggn_diagonal, hutchinson_diagonal, mc_ggn_diagonal
from .fingerprint import OtherWeightsError, fingerprint
from .operators import GGN, CurvatureOperator, Hessian
from .params import ParameterLayout, select_parameters
from .retained import RetainedProducts
from .spectrum import MATRICES, spectrum
from .stats import STATISTICS, loss_stats

__all__ = [
    "CurvatureOperator",
    "MATRICES",
    "OtherWeightsError",
    "GGN",
    "Hessian",
    "ParameterLayout",
    "RetainedProducts",
    "STATISTICS",
    "diagonal",
    "exact_diagonal",
    "fingerprint",
    "ggn_diagonal",
    "hutchinson_diagonal",
    "loss_stats",
    "mc_ggn_diagonal",
    "select_parameters",
    "spectrum",
]
