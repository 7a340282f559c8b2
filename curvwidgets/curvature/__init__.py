"""Curvature of a model's loss: Hessian and GGN operators, diagonals, loss statistics.

The operators plug into :mod:`curvwidgets.linalg` (``cw.lanczos(cw.Hessian(...), steps=100)``)
and reduce over ranks when ``torch.distributed`` is initialised.
"""

from .operators import GGN, CurvatureOperator, Hessian
from .params import ParameterLayout, select_parameters

__all__ = ["CurvatureOperator", "GGN", "Hessian", "ParameterLayout", "select_parameters"]
