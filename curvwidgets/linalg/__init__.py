"""Linear algebra on any symmetric operator: Lanczos, power iteration, densities, bounds.

Nothing here knows about neural networks; curvature operators plug in through
the :class:`~curvwidgets.linalg.operators.LinearOperator` protocol.
"""

from .bounds import (
    BoundsTable,
    bounds_table,
    chebyshev,
    lanczos_bound_term,
    lanczos_lower_bound,
    power_bound_term,
    power_lower_bound,
)
from .densities import (density_spread, smooth_density, spectral_estimates, spectral_moments, stem_density,
                        trace_estimate, wasserstein1)
from .eigen import Eigenpairs, eigenpairs
from .estimates import Estimate
from .lanczos import LanczosResult, lanczos
from .operators import LinearOperator, as_operator
from .power import PowerIterationResult, power_iteration
from .solve import SolveResult, conjugate_gradient, lanczos_solve
from .trace import TraceEstimate, estimate_trace

__all__ = [
    "BoundsTable",
    "Eigenpairs",
    "Estimate",
    "LanczosResult",
    "LinearOperator",
    "PowerIterationResult",
    "SolveResult",
    "TraceEstimate",
    "as_operator",
    "bounds_table",
    "chebyshev",
    "conjugate_gradient",
    "density_spread",
    "eigenpairs",
    "estimate_trace",
    "lanczos",
    "lanczos_bound_term",
    "lanczos_solve",
    "lanczos_lower_bound",
    "power_bound_term",
    "power_iteration",
    "power_lower_bound",
    "smooth_density",
    "spectral_estimates",
    "spectral_moments",
    "stem_density",
    "trace_estimate",
    "wasserstein1",
]
