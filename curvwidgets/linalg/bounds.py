"""Convergence bounds of Lanczos and power iteration (Theorems 1, 2 and Table 1).

For a symmetric ``A`` with eigenvalues ``lambda_1 >= lambda_2 >= .. >= lambda_P``,
top eigenvector ``z_1``, and a start vector at angle ``phi`` to ``z_1``
(``cos phi = |v^T z_1| / ||v||``), after ``m`` products (Golub & Van Loan,
2013, sec. 10.1.5):

* Lanczos (Theorem 1): ``theta_1 >= lambda_1 - (lambda_1 - lambda_P) tan^2(phi) L_{m-1}``
  with ``L_{m-1} = 1 / c_{m-1}(1 + 2 rho)^2``, ``rho = (lambda_1 - lambda_2) / (lambda_2 - lambda_P)``
  and ``c_k`` the Chebyshev polynomial of the first kind of degree ``k``;
* power iteration (Theorem 2), for positive semi-definite ``A``:
  ``theta_1 >= lambda_1 - (lambda_1 - lambda_P) tan^2(phi) R_{m-1}`` with
  ``R_{m-1} = (lambda_2 / lambda_1)^{2(m-1)}``, ``theta_1`` the Rayleigh
  quotient of ``A^{m-1} v``.

The paper's eq. 5 prints the exponent as ``2m - 1``; its Table 1 (taken from
Golub & Van Loan) uses ``2(m - 1)``, which is what the theorem gives for the
estimate after ``m`` products, and what is implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._validate import finite, non_negative_int, positive_int
from ._checks import finite_vector

__all__ = [
    "chebyshev",
    "lanczos_bound_term",
    "power_bound_term",
    "lanczos_lower_bound",
    "power_lower_bound",
    "BoundsTable",
    "bounds_table",
]


def chebyshev(degree: int, x: float) -> float:
    """Chebyshev polynomial of the first kind ``c_degree(x)``, for any real ``x``."""
    degree, x = non_negative_int("degree", degree), finite("x", x)
    if abs(x) <= 1:
        return float(np.cos(degree * np.arccos(x)))
    value = np.cosh(degree * np.arccosh(abs(x)))
    return float(value if x > 0 or degree % 2 == 0 else -value)


def _gap(lambda_1: float, lambda_2: float, lambda_p: float) -> float:
    """``rho = (lambda_1 - lambda_2) / (lambda_2 - lambda_P)``, checking ``lambda_1 > lambda_2 > lambda_P`` (all finite)."""
    lambda_1, lambda_2, lambda_p = finite("lambda_1", lambda_1), finite("lambda_2", lambda_2), finite("lambda_p", lambda_p)
    if not lambda_1 > lambda_2 > lambda_p:
        raise ValueError(
            f"the bounds need lambda_1 > lambda_2 > lambda_P; got {lambda_1}, {lambda_2}, {lambda_p}"
        )
    return (lambda_1 - lambda_2) / (lambda_2 - lambda_p)


def lanczos_bound_term(lambda_1: float, lambda_2: float, lambda_p: float, steps: int) -> float:
    """``L_{m-1} = 1 / c_{m-1}(1 + 2 rho)^2`` of Theorem 1 for ``m = steps``."""
    steps = positive_int("steps", steps)
    return 1.0 / chebyshev(steps - 1, 1.0 + 2.0 * _gap(lambda_1, lambda_2, lambda_p)) ** 2


def power_bound_term(lambda_1: float, lambda_2: float, steps: int) -> float:
    """``R_{m-1} = (lambda_2 / lambda_1)^{2(m-1)}`` of Theorem 2 for ``m = steps``."""
    lambda_1, lambda_2, steps = finite("lambda_1", lambda_1), finite("lambda_2", lambda_2), positive_int("steps", steps)
    if not lambda_1 > lambda_2 >= 0:
        raise ValueError(f"the power bound needs lambda_1 > lambda_2 >= 0; got {lambda_1}, {lambda_2}")
    return (lambda_2 / lambda_1) ** (2 * (steps - 1))


def _tan_squared(cos_angle: float) -> float:
    """``tan^2 phi`` from ``cos phi``, checking ``cos_angle`` in ``(0, 1]``."""
    if not 0 < finite("cos_angle", cos_angle) <= 1:
        raise ValueError(f"cos_angle must be in (0, 1]; got {cos_angle}")
    return (1.0 - cos_angle**2) / cos_angle**2


def _descending(eigenvalues: Sequence[float]) -> np.ndarray:
    """All eigenvalues, largest first; ``ValueError`` unless at least 2 and all finite."""
    values = finite_vector("eigenvalues", eigenvalues)
    if values.size < 2:
        raise ValueError(f"eigenvalues must hold all eigenvalues of A (at least 2); got {values.size}")
    return np.sort(values)[::-1]


def lanczos_lower_bound(eigenvalues: Sequence[float], cos_angle: float, steps: int) -> float:
    """Theorem 1's lower bound on the largest Ritz value after ``steps`` Lanczos steps.

    Parameters
    ----------
    eigenvalues : sequence of float
        All eigenvalues of ``A`` (any order).
    cos_angle : float
        ``|v^T z_1| / ||v||`` for the start vector ``v`` and the top unit eigenvector ``z_1``.
    steps : int
        Number ``m`` of Lanczos steps.
    """
    values = _descending(eigenvalues)
    term = lanczos_bound_term(values[0], values[1], values[-1], steps)
    return float(values[0] - (values[0] - values[-1]) * _tan_squared(cos_angle) * term)


def power_lower_bound(eigenvalues: Sequence[float], cos_angle: float, steps: int) -> float:
    """Theorem 2's lower bound on the power-iteration estimate after ``steps`` products (PSD ``A``)."""
    values = _descending(eigenvalues)
    term = power_bound_term(values[0], values[1], steps)
    return float(values[0] - (values[0] - values[-1]) * _tan_squared(cos_angle) * term)


@dataclass(frozen=True, eq=False)
class BoundsTable:
    """Table 1: the bound terms for each gap ``lambda_1 / lambda_2`` (rows) and ``m`` (columns), ``lambda_P = 0``.

    Attributes
    ----------
    gaps : ndarray, shape (r,)
        ``lambda_1 / lambda_2``.
    steps : ndarray of int, shape (c,)
        Numbers of steps ``m``.
    lanczos : ndarray, shape (r, c)
        ``L_{m-1}``.
    power : ndarray, shape (r, c)
        ``R_{m-1}``.
    """

    gaps: np.ndarray
    steps: np.ndarray
    lanczos: np.ndarray
    power: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """``L_{m-1} / R_{m-1}``: below 1 where Lanczos' guarantee is the tighter one."""
        return self.lanczos / self.power

    def to_text(self) -> str:
        """The table as aligned text, each cell ``L / R``."""
        header = "l1/l2 | " + " | ".join(f"m = {m:<13d}" for m in self.steps)
        rows = [
            f"{gap:<5g} | " + " | ".join(f"{lanczos:7.1e} / {power:7.1e}" for lanczos, power in zip(lrow, prow))
            for gap, lrow, prow in zip(self.gaps, self.lanczos, self.power)
        ]
        return "\n".join([header, *rows])


def bounds_table(gaps: Sequence[float] = (1.5, 1.1, 1.01), steps: Sequence[int] = (5, 10, 15, 20)) -> BoundsTable:
    """Compute Table 1 of the paper (Golub & Van Loan's Table 10.1.1) with ``lambda_2 = 1``, ``lambda_P = 0``.

    Examples
    --------
    >>> table = bounds_table()
    >>> f"{table.lanczos[0, 0]:.1e} {table.power[0, 0]:.1e}"
    '1.1e-04 3.9e-02'
    """
    gaps = finite_vector("gaps", gaps)
    if not np.all(gaps > 1):
        raise ValueError(f"gaps must be ratios lambda_1 / lambda_2 > 1; got {gaps.tolist()}")
    steps = np.array([positive_int(f"steps[{index}]", m) for index, m in enumerate(steps)], dtype=int)
    lanczos = np.array([[lanczos_bound_term(gap, 1.0, 0.0, int(m)) for m in steps] for gap in gaps])
    power = np.array([[power_bound_term(gap, 1.0, int(m)) for m in steps] for gap in gaps])
    return BoundsTable(gaps, steps, lanczos, power)
