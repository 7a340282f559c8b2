"""Damped inverse products ``(A + damping I)^{-1} b``: conjugate gradients, or from a Lanczos run.

These are what a Laplace approximation or a Newton step needs from a
curvature operator ``A``. Conjugate gradients needs ``A + damping I`` to be
positive definite (a GGN with ``damping > 0``, or a Hessian damped past its
most negative eigenvalue); the Lanczos form works for any damping that keeps
``T + damping I`` invertible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from .._validate import finite, positive, positive_int
from ..progress import CancelToken, ProgressCallback, check_protocol, report
from ._checks import apply_operator, check_steps
from .lanczos import lanczos
from .operators import LinearOperator, as_operator

__all__ = ["SolveResult", "conjugate_gradient", "lanczos_solve"]


@dataclass(frozen=True, eq=False)
class SolveResult:
    """An approximate solution of ``(A + damping I) x = b``.

    Attributes
    ----------
    solution : torch.Tensor, shape (P,)
    residual_norms : ndarray
        Residual norms ``||b - (A + damping I) x_k||``: of every iterate for
        conjugate gradients (updated recursively), of ``x_0 = 0`` and the
        solution for :func:`lanczos_solve`.
    converged : bool
        Whether the relative residual reached ``tol``.
    iterations : int
        Operator products spent on the solution.
    """

    solution: torch.Tensor
    residual_norms: np.ndarray
    converged: bool
    iterations: int


def _rhs(op: LinearOperator, rhs: Any) -> torch.Tensor:
    """``rhs`` as a finite vector of shape ``(op.dim,)`` on ``op``'s device and dtype, else ``ValueError``.

    A complex ``rhs`` is a ``TypeError`` (the solvers work in real arithmetic).
    """
    vector = torch.as_tensor(rhs)
    if vector.is_complex():
        raise TypeError(f"rhs must be real; got dtype {vector.dtype}")
    vector = vector.to(device=op.device, dtype=op.dtype)
    if vector.shape != (op.dim,):
        raise ValueError(f"rhs must have shape ({op.dim},); got {tuple(vector.shape)}")
    if not bool(torch.isfinite(vector).all()):
        raise ValueError("rhs must be finite; it contains NaN or inf")
    return vector


def conjugate_gradient(
    op: Any,
    rhs: Any,
    damping: float = 0.0,
    tol: float = 1e-6,
    maxiter: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    *,
    check_symmetric: bool = True,
) -> SolveResult:
    """Solve ``(A + damping I) x = b`` by conjugate gradients from ``x_0 = 0``.

    Stopping rule: ``||r_k|| <= tol * ||b||`` for the residual ``r_k = b - (A +
    damping I) x_k``, or ``maxiter`` iterations (default ``P``), or a direction
    ``p`` with ``p^T (A + damping I) p <= 0``: the damped operator is then not
    positive definite and the iterate so far is returned with ``converged=False``.

    Parameters
    ----------
    op : operator
        Symmetric; anything :func:`as_operator` accepts.
    rhs : array or tensor, shape (P,)
    damping : float, default: 0
    tol : float, default: 1e-6
        Relative residual tolerance.
    maxiter : int, optional
    progress, cancel
        The progress protocol; one event per iteration.
    check_symmetric : bool, default: True
        Check that ``op`` is symmetric first, as :func:`as_operator` does.

    Examples
    --------
    >>> import numpy as np
    >>> result = conjugate_gradient(np.diag([1.0, 2.0, 4.0]), np.ones(3), damping=1.0, tol=1e-12)
    >>> result.solution.numpy().round(6).tolist(), result.converged
    ([0.5, 0.333333, 0.2], True)
    """
    progress, cancel = check_protocol(progress, cancel)
    damping, tol = finite("damping", damping), positive("tol", tol)
    maxiter = None if maxiter is None else positive_int("maxiter", maxiter)
    op = as_operator(op, check_symmetric=check_symmetric)
    b = _rhs(op, rhs)
    limit = op.dim if maxiter is None else maxiter
    solution = torch.zeros_like(b)
    residual = b.clone()
    direction = residual.clone()
    norms = [torch.linalg.vector_norm(residual).item()]
    target = tol * norms[0]
    squared = norms[0] ** 2
    converged = norms[0] <= target

    def result() -> SolveResult:
        return SolveResult(solution.clone(), np.array(norms), converged, len(norms) - 1)

    while not converged and len(norms) <= limit:
        product = apply_operator(op, direction[None], len(norms), "conjugate_gradient")[0] + damping * direction
        curvature = torch.dot(direction, product).item()
        if curvature <= 0:
            break
        step = squared / curvature
        solution += step * direction
        residual -= step * product
        new_squared = torch.dot(residual, residual).item()
        norms.append(new_squared**0.5)
        converged = norms[-1] <= target
        direction = residual + (new_squared / squared) * direction
        squared = new_squared
        report(progress, cancel, "conjugate_gradient", len(norms) - 1, limit, partial=result)
    return result()


def lanczos_solve(
    op: Any, rhs: Any, steps: int, damping: float = 0.0, tol: float = 1e-6, *, check_symmetric: bool = True
) -> SolveResult:
    """``(A + damping I)^{-1} b`` from a Lanczos run started at ``b``.

    With ``V`` the Lanczos basis of ``K_m(A, b)`` and ``T = V^T A V``,
    ``x_m = ||b|| V (T + damping I)^{-1} e_1`` (the Galerkin solution in the
    Krylov space; equal to conjugate gradients in exact arithmetic when
    ``A + damping I`` is positive definite). Needs the basis (``m P``
    numbers); the residual is checked against ``tol * ||b||`` with one more
    product. ``check_symmetric`` is as in :func:`as_operator`.
    """
    steps, damping, tol = check_steps(steps), finite("damping", damping), positive("tol", tol)
    op = as_operator(op, check_symmetric=check_symmetric)
    b = _rhs(op, rhs)
    run = lanczos(op, steps=steps, start=b, store_vectors=True, check_symmetric=False)
    count = int(run.num_steps[0])
    _require_invertible(run.nodes(0), damping, torch.finfo(op.dtype).eps)
    tridiagonal = np.diag(run.alpha[0, :count] + damping)
    tridiagonal += np.diag(run.beta[0, : count - 1], 1) + np.diag(run.beta[0, : count - 1], -1)
    unit = np.zeros(count)
    unit[0] = torch.linalg.vector_norm(b).item()
    coefficients = torch.as_tensor(np.linalg.solve(tridiagonal, unit), dtype=op.dtype, device=run.basis.device)
    solution = (coefficients @ run.basis[0, :count]).to(op.device)
    residual = b - (apply_operator(op, solution[None], count + 1, "lanczos_solve")[0] + damping * solution)
    norms = np.array([torch.linalg.vector_norm(b).item(), torch.linalg.vector_norm(residual).item()])
    return SolveResult(solution, norms, bool(norms[1] <= tol * norms[0]), count + 1)


def _require_invertible(ritz_values: np.ndarray, damping: float, eps: float) -> None:
    """``ValueError`` when ``T + damping I`` is singular to working precision (``eps`` of the operator's dtype).

    That is when ``-damping`` is one of ``T``'s eigenvalues, the Ritz values
    ``ritz_values`` (shape ``(m,)``), within ``m eps`` of their scale.
    """
    shifted = np.abs(ritz_values + damping)
    scale = np.abs(ritz_values).max() + abs(damping)
    if shifted.min() <= ritz_values.size * eps * scale:
        theta = ritz_values[np.argmin(shifted)]
        raise ValueError(f"damping={damping} makes T + damping I singular: the Ritz value {theta:.6g} of the operator "
                         "is -damping (an eigenvalue of the operator to working precision); choose another damping")
