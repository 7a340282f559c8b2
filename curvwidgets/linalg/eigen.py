"""Extreme eigenpairs of a symmetric operator to a tolerance: thick-restart Lanczos (Wu & Simon, 2000).

Lanczos with full reorthogonalisation builds an orthonormal basis ``V`` of
at most ``max_basis`` vectors and the projection ``T = V^T A V``. A Ritz pair
``(theta_i, V s_i)`` of ``T`` has the residual ``||A V s_i - theta_i V s_i|| =
beta |s_i[-1]|`` (``beta`` the norm of the next Lanczos vector's residual):
no product is needed to know it, and ``|lambda - theta_i| <= residual`` for
some eigenvalue ``lambda`` of ``A``. When the basis is full and the wanted
pairs have not converged, the basis restarts from the wanted Ritz vectors and
a few more (their ``T`` is diagonal, coupled to the next vector
by ``beta s_i[-1]``), so the memory stays ``max_basis`` vectors while the
Krylov information of the wanted directions is kept.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from .._validate import choice, positive, positive_int, seed_value
from ..progress import CancelToken, ProgressCallback, check_protocol, report
from ._checks import NonFiniteProduct, apply_operator, start_vectors
from .lanczos import DGKS_ETA, _project_out
from .operators import LinearOperator, as_operator

__all__ = ["Eigenpairs", "eigenpairs", "WHICH"]

WHICH = ("largest", "smallest", "both")
ATTAINABLE = 8.0
"""A residual below ``ATTAINABLE * eps * ||T||`` counts as converged whatever ``tol``: the dtype cannot do better."""


@dataclass(frozen=True)
class Eigenpairs:
    """Ritz pairs of a symmetric operator, with their residuals.

    Attributes
    ----------
    values : ndarray, shape (k,)
        Ritz values, ascending.
    vectors : Tensor, shape (P, k)
        Unit Ritz vectors, column ``i`` for ``values[i]``, in the operator's dtype and device.
    residuals : ndarray, shape (k,)
        ``||A x_i - theta_i x_i||``, which bounds ``|lambda - theta_i|`` for some eigenvalue ``lambda``.
    products : int
        Operator products taken.
    restarts : int
        Times the basis was restarted.
    converged : bool
        Whether every residual is at most ``tol * |theta_i|`` (or the dtype's attainable accuracy).
    tol : float
    """

    values: np.ndarray
    vectors: torch.Tensor = field(repr=False)
    residuals: np.ndarray
    products: int
    restarts: int
    converged: bool
    tol: float

    @property
    def relative_residuals(self) -> np.ndarray:
        """``residuals / |values|``."""
        return self.residuals / np.abs(self.values)


def eigenpairs(
    op: Any,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-6,
    max_products: Optional[int] = None,
    seed: int = 0,
    *,
    max_basis: Optional[int] = None,
    start: Optional[Any] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    check_symmetric: bool = True,
) -> Eigenpairs:
    """The ``k`` largest, smallest, or both extreme eigenpairs of a symmetric operator, to a tolerance.

    Parameters
    ----------
    op : operator
        A symmetric operator of size ``P``, or anything
        :func:`~curvwidgets.linalg.as_operator` accepts (dense, sparse, a
        callable with ``dim``, a curvature operator).
    k : int, default: 1
        How many eigenpairs, ``1 <= k <= P``.
    which : {"largest", "smallest", "both"}, default: "largest"
        Algebraically largest or smallest; ``"both"`` takes ``k // 2`` from
        the bottom and the rest from the top (as ARPACK's ``"BE"``).
    tol : float, default: 1e-6
        Stop when every wanted residual is at most ``tol * |theta_i|``; then
        each Ritz value is within ``tol`` (relative) of an eigenvalue.
    max_products : int, optional
        The budget; default ``max(25 * max_basis, 500)``. When it runs out
        first, a ``RuntimeWarning`` says by how much and the pairs are
        returned with their residuals and ``converged=False``.
    seed : int, default: 0
        Seed of the random Gaussian start vector.
    max_basis : int, optional
        The most Lanczos vectors kept (memory ``max_basis * P`` numbers);
        default ``min(P, max(2 k + 20, 40))``; at least ``k + 2`` (or ``P``).
    start : array or tensor, shape (P,), optional
        A start vector instead of a random one (a previous run's Ritz vector
        restarts from there).
    progress, cancel
        The progress protocol of :mod:`curvwidgets.progress`: stage
        ``"eigenpairs"``, one event per product, the partial result the
        current Ritz pairs (computed only when a callback asks).
    check_symmetric : bool, default: True
        Check that ``op`` is symmetric first, as ``as_operator`` does.

    Returns
    -------
    Eigenpairs

    Raises
    ------
    ValueError
        ``k`` not in ``[1, P]``; ``tol <= 0``; ``which``, ``max_products``,
        ``max_basis`` or ``seed`` out of range; an operator product of the
        wrong shape or with NaN/inf.
    Cancelled
        When ``cancel`` is set; it carries the current Ritz pairs.

    Examples
    --------
    >>> import numpy as np
    >>> pairs = eigenpairs(np.diag(np.arange(1.0, 101.0)), k=3, tol=1e-10)
    >>> pairs.values.round(8).tolist(), pairs.converged
    ([98.0, 99.0, 100.0], True)
    """
    progress, cancel = check_protocol(progress, cancel)
    choice("which", which, WHICH)
    tol = positive("tol", tol)
    seed = seed_value("seed", seed)
    op = as_operator(op, check_symmetric=check_symmetric)
    k = positive_int("k", k)
    if k > op.dim:
        raise ValueError(f"k must be at most the operator's dimension {op.dim}; got {k}")
    default_basis = min(op.dim, max(2 * k + 20, 40))
    size = default_basis if max_basis is None else positive_int("max_basis", max_basis)
    if size < min(op.dim, k + 2) or size > op.dim:
        raise ValueError(f"max_basis must be in [{min(op.dim, k + 2)}, {op.dim}] (k + 2 to the dimension); got {size}")
    budget = max(25 * size, 500) if max_products is None else positive_int("max_products", max_products)
    first = start_vectors(op, 1, seed, "gaussian", start)[0]
    return _ThickRestart(op, k, which, tol, size, budget, progress, cancel).run(first)


class _ThickRestart:
    """The state of one run: basis rows ``V``, projection ``T``, residual ``r`` (the next Lanczos vector times ``beta``)."""

    def __init__(self, op: LinearOperator, k: int, which: str, tol: float, size: int, budget: int, progress, cancel):
        self.op, self.k, self.which, self.tol, self.size, self.budget = op, k, which, tol, size, budget
        self.progress, self.cancel = progress, cancel
        self.basis = torch.empty(size + 1, op.dim, dtype=op.dtype, device=op.device)  # rows written before read
        self.projection = np.zeros((size, size))
        self.coefficients = torch.empty(size + 1, dtype=op.dtype, device=op.device)
        self.products = self.restarts = 0
        self.norm = 0.0  # the largest |T| seen: the scale of attainable residuals

    def run(self, first: torch.Tensor) -> Eigenpairs:
        """Lanczos steps, the Ritz pairs checked after each, restarts when the basis is full."""
        self.basis[0] = first
        filled = 0  # rows of the basis whose columns of T are known
        while True:
            beta = self._step(filled)
            filled += 1
            values, vectors = np.linalg.eigh(self.projection[:filled, :filled])
            residuals = beta * np.abs(vectors[-1])
            wanted = self._wanted(values)
            done = self._converged(values[wanted], residuals[wanted]) or filled == self.op.dim
            if done or self.products >= self.budget:
                return self._result(values, vectors, residuals, wanted, filled, done)
            if beta <= self._breakdown():  # the Krylov space is invariant: go on from a fresh direction
                self._fresh_direction(filled)
                residuals = residuals * 0.0
            if filled == self.size:
                filled = self._restart(values, vectors, residuals, filled)

    def _step(self, filled: int) -> float:
        """One Lanczos step from basis row ``filled``: column ``filled`` of ``T``, row ``filled + 1``; ``beta``."""
        product = apply_operator(self.op, self.basis[filled][None], self.products + 1, "eigenpairs",
                                 check_finite=False)[0]
        self.products += 1
        rows = self.basis[: filled + 1]
        column = _project_out(product, rows, self.coefficients).clone()
        removed, after = column.norm().item(), product.norm().item()
        if not after > DGKS_ETA * math.hypot(after, removed):  # DGKS: the pass may still lean on the basis
            column += _project_out(product, rows, self.coefficients)
        beta = product.norm().item()
        values = column.double().cpu().numpy()
        if not (np.all(np.isfinite(values)) and math.isfinite(beta)):
            raise NonFiniteProduct(f"eigenpairs product {self.products}: the operator product contains NaN or inf; "
                                   "stopped")
        self.projection[: filled + 1, filled] = values
        self.projection[filled, : filled + 1] = values
        self.norm = max(self.norm, float(np.abs(values).max()), beta)
        self._report(filled + 1, beta)
        if beta > self._breakdown():
            self.basis[filled + 1] = product / beta
        return beta

    def _breakdown(self) -> float:
        return math.sqrt(torch.finfo(self.op.dtype).eps) * self.norm

    def _wanted(self, values: np.ndarray, count: Optional[int] = None) -> np.ndarray:
        """Indices (ascending) of the ``count`` (default ``k``) wanted Ritz values among ``values`` (ascending)."""
        count = min(self.k if count is None else count, len(values))
        if self.which == "largest":
            return np.arange(len(values) - count, len(values))
        if self.which == "smallest":
            return np.arange(count)
        low = count // 2
        return np.r_[np.arange(low), np.arange(len(values) - (count - low), len(values))]

    def _converged(self, values: np.ndarray, residuals: np.ndarray) -> bool:
        floor = ATTAINABLE * torch.finfo(self.op.dtype).eps * self.norm
        return len(values) == self.k and bool(np.all(residuals <= np.maximum(self.tol * np.abs(values), floor)))

    def _restart(self, values, vectors, residuals, filled: int) -> int:
        """Keep the wanted Ritz vectors and a few more beside them; ``T`` becomes diagonal plus the coupling row.

        The few more are a tenth of the rest of the basis, at least ``min(k, half the rest)``: keeping half the
        rest (Wu and Simon's first choice) took 15-30% more products than ARPACK at the same basis size
        (``benchmarks/README.md``), this as many or fewer.
        """
        extra = max((self.size - self.k) // 10, min(self.k, (self.size - self.k) // 2))
        keep = self._wanted(values, min(self.k + extra, len(values) - 1))
        kept = torch.as_tensor(vectors[:, keep], dtype=self.op.dtype, device=self.op.device)
        count = len(keep)
        self.basis[:count] = kept.T @ self.basis[:filled]
        self.basis[count] = self.basis[filled]  # the next Lanczos vector, orthogonal to all of them
        self.projection[:] = 0.0
        self.projection[np.arange(count), np.arange(count)] = values[keep]
        coupling = residuals[keep] * np.sign(vectors[-1, keep])  # beta s_i[-1]
        self.projection[count, :count] = self.projection[:count, count] = coupling
        self.restarts += 1
        return count

    def _fresh_direction(self, filled: int) -> None:
        """A random unit row ``filled`` orthogonal to the basis (its coupling to ``T`` is 0)."""
        generator = torch.Generator().manual_seed(self.products)
        draw = torch.randn(self.op.dim, generator=generator, dtype=torch.float64).to(self.op.device, self.op.dtype)
        for _ in range(2):
            _project_out(draw, self.basis[:filled], self.coefficients)
        self.basis[filled] = draw / draw.norm()

    def _result(self, values, vectors, residuals, wanted, filled: int, converged: bool) -> Eigenpairs:
        ritz = torch.as_tensor(vectors[:, wanted], dtype=self.op.dtype, device=self.op.device)
        pairs = Eigenpairs(values[wanted].copy(), (ritz.T @ self.basis[:filled]).T, residuals[wanted].copy(),
                           self.products, self.restarts, bool(converged), self.tol)
        if not converged:
            worst = float(np.max(pairs.relative_residuals))
            warnings.warn(f"eigenpairs: max_products={self.budget} products were spent before the {self.k} Ritz pairs "
                          f"converged (largest relative residual {worst:.2g}, tol {self.tol:.2g}); they are returned "
                          "with their residuals and converged=False (raise max_products or tol)", RuntimeWarning,
                          stacklevel=3)
        return pairs

    def _report(self, filled: int, beta: float) -> None:
        def partial() -> Eigenpairs:
            values, vectors = np.linalg.eigh(self.projection[:filled, :filled])
            wanted = self._wanted(values)
            ritz = torch.as_tensor(vectors[:, wanted], dtype=self.op.dtype, device=self.op.device)
            return Eigenpairs(values[wanted], (ritz.T @ self.basis[:filled]).T, beta * np.abs(vectors[-1, wanted]),
                              self.products, self.restarts, False, self.tol)

        report(self.progress, self.cancel, "eigenpairs", self.products, self.budget, partial=partial)
