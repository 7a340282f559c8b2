"""Power iteration, the baseline that Lanczos is compared with (Theorem 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from ..progress import CancelToken, ProgressCallback, check_protocol, report
from ._checks import apply_operator, check_start, check_steps, start_vectors
from .operators import as_operator

__all__ = ["PowerIterationResult", "power_iteration"]


@dataclass(frozen=True, eq=False)
class PowerIterationResult:
    """Estimates of the eigenvalue of largest magnitude.

    Attributes
    ----------
    eigenvalue : float
        The last estimate, ``history[-1]``.
    eigenvector : torch.Tensor, shape (P,)
        The unit vector ``u_{k-1}`` whose Rayleigh quotient is ``eigenvalue``.
    history : ndarray, shape (steps,)
        ``history[k-1] = u_{k-1}^T A u_{k-1}``, where ``u_{k-1}`` is
        ``A^{k-1} v`` normalised: the estimate after ``k`` operator products.
    residual : float
        ``||A u - eigenvalue u||`` for the returned pair.
    """

    eigenvalue: float
    eigenvector: torch.Tensor
    history: np.ndarray
    residual: float


def power_iteration(
    op: Any,
    steps: int,
    seed: int = 0,
    start: Optional[Any] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    *,
    distribution: str = "gaussian",
    check_symmetric: bool = True,
) -> PowerIterationResult:
    """Power iteration: ``u <- A u / ||A u||``, recording the Rayleigh quotient each step.

    Parameters
    ----------
    op : operator
        A symmetric operator, or anything :func:`as_operator` accepts.
    steps : int
        Number of operator products.
    seed, start, distribution
        The start vector, as in :func:`~curvwidgets.linalg.lanczos`.
    progress, cancel
        The progress protocol of :mod:`curvwidgets.progress`.
    check_symmetric : bool, default: True
        Check that ``op`` is symmetric first, as :func:`as_operator` does.

    Returns
    -------
    PowerIterationResult
        Converges to the eigenvalue of largest magnitude, at the rate
        ``(lambda_2 / lambda_1)^2`` per step for the Rayleigh quotient.

    Raises
    ------
    ValueError
        ``steps``, ``seed`` or ``distribution`` out of range, a bad start
        vector, an operator that is not symmetric, or an operator product of
        the wrong shape or with NaN/inf (the message names the step).
    TypeError
        ``progress`` not callable, ``cancel`` without ``is_set()``, or an
        operator :func:`as_operator` does not accept.
    Cancelled
        When ``cancel`` is set; ``.result`` holds the estimates so far.

    Examples
    --------
    >>> import numpy as np
    >>> result = power_iteration(np.diag([1.0, 2.0, 10.0]), steps=30)
    >>> round(result.eigenvalue, 8)
    10.0
    """
    progress, cancel = check_protocol(progress, cancel)
    steps = check_steps(steps)
    _, seed, distribution = check_start(1, seed, distribution)
    op = as_operator(op, check_symmetric=check_symmetric)
    vector = start_vectors(op, 1, seed, distribution, start)
    history = np.empty(steps)

    def result(done: int, product: torch.Tensor) -> PowerIterationResult:
        estimate = float(history[done - 1])
        residual = torch.linalg.vector_norm(product - estimate * vector).item()
        return PowerIterationResult(estimate, vector[0].clone(), history[:done].copy(), residual)

    done = 0
    while True:
        product = apply_operator(op, vector, done + 1, "power_iteration")
        history[done] = torch.dot(vector[0], product[0]).item()
        done += 1
        report(progress, cancel, "power_iteration", done, steps, partial=lambda: result(done, product))
        norm = torch.linalg.vector_norm(product)
        if done == steps or norm == 0:  # A u = 0: u is an eigenvector, and nothing is left to iterate
            return result(done, product)
        vector = product / norm
