"""Lanczos iteration with full reorthogonalisation (Algorithm 1 of the paper).

After ``m`` steps from a unit start vector ``v``, Lanczos has built an
orthonormal basis ``V = [v_1 .. v_m]`` of the Krylov space
``K_m(A, v) = span{v, Av, .., A^{m-1} v}`` and the tridiagonal matrix
``T_m = V^T A V`` (diagonal ``alpha``, off-diagonal ``beta``). The eigenvalues
``theta_k`` of ``T_m`` (Ritz values) and the squared first components
``tau_k^2`` of its unit eigenvectors (Gauss weights) form the ``m``-point Gauss
quadrature rule of the spectral measure of ``A`` seen from ``v``
(Theorem 3 of the paper; Golub & Meurant, 1994)::

    sum_k tau_k^2 theta_k^j = v^T A^j v        for j = 0 .. 2m - 1.

In floating point the basis loses orthogonality unless each new vector is
orthogonalised again against all earlier ones. Each step here subtracts the
three-term recurrence ``alpha_j v_j + beta_{j-1} v_{j-1}`` and then makes one
pass of classical Gram-Schmidt against the whole stored basis (two
matrix-vector products with it, ``c = V w`` and ``w - V^T c``: two reads of the
basis). A second pass follows only when the first removed so much of ``w``
that its result may still lean on the basis: when ``||w_after|| <= eta
||w_before||`` with ``eta = 1/sqrt(2)``, the test of Daniel, Gragg, Kaufman &
Stewart (1976); a second pass is always enough ("twice is enough", Giraud et
al., 2005). ``reorthogonalisation="twice"`` makes the second pass on every
step instead.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Optional

import numpy as np
import scipy.linalg
import torch

from .._validate import boolean, choice, non_negative, positive, positive_int
from ..progress import CancelToken, ProgressCallback, check_protocol, report
from ._checks import NonFiniteProduct, apply_operator, check_start, check_steps, start_vectors
from .operators import DeviceLike, as_operator, resolve_device

__all__ = ["LanczosResult", "lanczos"]

REORTHOGONALISATIONS = ("dgks", "twice")
DGKS_ETA = 2.0**-0.5
"""A Gram-Schmidt pass is repeated when it leaves at most this fraction of the norm (DGKS, 1976)."""


@dataclass(frozen=True, eq=False)
class LanczosResult:
    """The tridiagonal matrices of a Lanczos run, and what follows from them.

    Each start vector ``l`` gives its own run of ``num_steps[l]`` steps. All
    runs take ``steps`` steps unless one stops early because its Krylov space
    became invariant (see :func:`lanczos`); the arrays of such a run are padded
    past ``num_steps[l]`` with NaN (``alpha``, ``beta``, ``ritz_values``,
    ``residual_estimates``) or 0 (``ritz_weights``), so padded nodes carry no
    mass. :meth:`nodes` and :meth:`weights` return one run without padding.

    Attributes
    ----------
    alpha : ndarray, shape (num_vectors, steps)
        Diagonals of the tridiagonal matrices ``T``.
    beta : ndarray, shape (num_vectors, steps - 1)
        Off-diagonals of ``T``.
    residual_norm : ndarray, shape (num_vectors,)
        ``beta_m``: norm of the residual after the last step (the next
        off-diagonal, not part of ``T``); about 0 after an early stop.
    num_steps : ndarray of int, shape (num_vectors,)
        Steps taken by each run.
    dim : int
        Size ``P`` of the operator.
    orthogonality : float
        Measured loss of orthogonality, ``max_l ||V_l^T V_l - I||_2`` over the
        runs' bases. NaN in the snapshots sent to ``progress`` (measuring costs
        a pass over the basis).
    basis : torch.Tensor or None, shape (num_vectors, steps, dim)
        The Lanczos vectors (rows), kept when ``store_vectors=True``.
    gram_schmidt_passes : ndarray of int or None, shape (num_vectors, steps)
        Classical Gram-Schmidt passes against the whole stored basis at each
        step (1 or 2; 0 past ``num_steps``). None for results not made by
        :func:`lanczos` (e.g. read from a file).
    """

    alpha: np.ndarray
    beta: np.ndarray
    residual_norm: np.ndarray
    num_steps: np.ndarray
    dim: int
    orthogonality: float = float("nan")
    basis: Optional[torch.Tensor] = field(default=None, repr=False)
    gram_schmidt_passes: Optional[np.ndarray] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        values = np.full(self.alpha.shape, np.nan)
        vectors = np.zeros(self.alpha.shape + (self.steps,))
        for run, count in enumerate(self.num_steps):
            values[run, :count], vectors[run, :count, :count] = scipy.linalg.eigh_tridiagonal(
                self.alpha[run, :count], self.beta[run, : count - 1]
            )
        object.__setattr__(self, "_eigenvalues", values)
        object.__setattr__(self, "_eigenvectors", vectors)

    @property
    def steps(self) -> int:
        """Largest number of steps over the runs (the width of the arrays)."""
        return self.alpha.shape[1]

    @property
    def num_vectors(self) -> int:
        """Number of start vectors (runs)."""
        return self.alpha.shape[0]

    @property
    def basis_reads_per_step(self) -> float:
        """Passes over the stored basis per step, averaged over every run's steps.

        Each Gram-Schmidt pass reads the basis twice (``c = V w``, then
        ``w - V^T c``): 2 for a step with one pass, 4 with two. The three-term
        recurrence, which reads two rows, is not counted. NaN when
        :attr:`gram_schmidt_passes` is None.
        """
        if self.gram_schmidt_passes is None:
            return float("nan")
        return 2.0 * self.gram_schmidt_passes.sum() / self.num_steps.sum()

    @property
    def ritz_values(self) -> np.ndarray:
        """Eigenvalues of each ``T`` in ascending order, shape ``(num_vectors, steps)``."""
        return self._eigenvalues

    @property
    def ritz_weights(self) -> np.ndarray:
        """Gauss weights ``tau_k^2``: squared first components of ``T``'s unit eigenvectors.

        Shape ``(num_vectors, steps)``; each row sums to 1.
        """
        return self._eigenvectors[:, 0, :] ** 2

    @property
    def residual_estimates(self) -> np.ndarray:
        """``||A y_k - theta_k y_k|| = beta_m |e_m^T s_k|`` for each Ritz pair, shape ``(num_vectors, steps)``.

        ``s_k`` is the ``k``-th unit eigenvector of ``T`` and ``e_m^T s_k`` its
        last component; exact in exact arithmetic, and an estimate otherwise.
        """
        last = self._eigenvectors[np.arange(self.num_vectors), self.num_steps - 1, :]
        estimates = self.residual_norm[:, None] * np.abs(last)
        return np.where(np.isnan(self._eigenvalues), np.nan, estimates)

    @cached_property
    def ritz_vectors(self) -> Optional[torch.Tensor]:
        """Unit Ritz vectors ``V^T s_k`` as rows, shape ``(num_vectors, steps, dim)``, or None.

        Ordered like :attr:`ritz_values`; rows past a run's ``num_steps`` are NaN.
        Available when the run kept its basis (``store_vectors=True``).
        """
        if self.basis is None:
            return None
        coefficients = torch.as_tensor(self._eigenvectors, dtype=self.basis.dtype, device=self.basis.device)
        vectors = torch.bmm(coefficients.transpose(1, 2), self.basis)
        for run, count in enumerate(self.num_steps):
            vectors[run, count:] = float("nan")
        return vectors

    def nodes(self, run: int = 0) -> np.ndarray:
        """Ritz values of one run, without padding, shape ``(num_steps[run],)``."""
        return self._eigenvalues[run, : self.num_steps[run]]

    def weights(self, run: int = 0) -> np.ndarray:
        """Gauss weights of one run, without padding, shape ``(num_steps[run],)``."""
        return self.ritz_weights[run, : self.num_steps[run]]

    def truncate(self, k: int) -> "LanczosResult":
        """The result after ``k`` steps: each ``T`` is cut to its leading ``k x k`` block.

        Equal (to rounding) to a fresh ``k``-step run from the same start
        vectors. ``orthogonality`` is kept: it bounds that of the shorter basis.
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.steps:
            raise ValueError(f"k must be an int in [1, {self.steps}]; got {k!r}")
        k = int(k)
        residual = self.residual_norm.copy()
        if k < self.steps:
            longer = self.num_steps > k
            residual[longer] = self.beta[longer, k - 1]
        return replace(
            self,
            alpha=self.alpha[:, :k].copy(),
            beta=self.beta[:, : k - 1].copy(),
            residual_norm=residual,
            num_steps=np.minimum(self.num_steps, k),
            basis=None if self.basis is None else self.basis[:, :k],
            gram_schmidt_passes=None if self.gram_schmidt_passes is None else self.gram_schmidt_passes[:, :k].copy(),
        )


def _gram64(rows: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
    """``rows @ rows.T`` accumulated in float64, converting ``chunk`` columns at a time."""
    gram = torch.zeros(rows.shape[0], rows.shape[0], dtype=torch.float64, device=rows.device)
    for begin in range(0, rows.shape[1], chunk):
        block = rows[:, begin : begin + chunk].to(torch.float64)
        gram += block @ block.T
    return gram


def _orthogonality(basis: torch.Tensor, num_steps: np.ndarray) -> float:
    """``max_l ||V_l V_l^T - I||_2`` over the runs' stored rows, computed in float64."""
    worst = 0.0
    for run, count in enumerate(num_steps):
        gram = _gram64(basis[run, :count])
        gram -= torch.eye(count, dtype=torch.float64, device=gram.device)
        worst = max(worst, torch.linalg.matrix_norm(gram, ord=2).item())
    return worst


def _project_out(vector: torch.Tensor, basis: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """One pass of classical Gram-Schmidt of ``vector`` (dim,) against the rows of ``basis`` (k, dim).

    ``c = basis @ vector`` goes into ``out`` (at least ``k`` long, so no
    temporary is allocated), then ``vector -= basis.T @ c`` in place: two
    reads of ``basis``. Returns ``c``, shape (k,).
    """
    coefficients = torch.mv(basis, vector, out=out[: basis.shape[0]])
    vector.addmv_(basis.T, coefficients, alpha=-1)
    return coefficients


def _recurrence_then_pass(vector: torch.Tensor, basis: torch.Tensor, recurrence: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Turn ``vector = A v_j`` into the next residual: three-term recurrence, then one Gram-Schmidt pass.

    Parameters
    ----------
    vector : torch.Tensor, shape (dim,)
        The product ``A v_j``; updated in place.
    basis : torch.Tensor, shape (j + 1, dim)
        The Lanczos vectors ``v_0 .. v_j`` as rows.
    recurrence : torch.Tensor, shape (2,)
        Holds ``beta_{j-1}`` (unused at ``j = 0``); receives ``alpha_j = v_j . A v_j``.
    out : torch.Tensor, shape (at least j + 1,)
        Receives the pass's coefficients.

    Returns
    -------
    torch.Tensor, shape (3,), on ``vector``'s device
        ``alpha_j`` (with the pass's correction), the norm of the pass's
        coefficients (``||V c||`` up to the basis's loss of orthogonality: what
        the pass removed, measured without another sweep over ``w``) and ``||w||``.
    """
    recent = basis[-2:]  # v_{j-1}, v_j (v_0 alone at the first step)
    torch.dot(basis[-1], vector, out=recurrence[1])
    vector.addmv_(recent.T, recurrence[2 - recent.shape[0] :], alpha=-1)
    coefficients = _project_out(vector, basis, out)
    norms = torch.linalg.vector_norm(coefficients), torch.linalg.vector_norm(vector)
    return torch.stack((recurrence[1] + coefficients[-1], *norms))


def _second_pass(vector: torch.Tensor, basis: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Another Gram-Schmidt pass; returns, shape (2,), the correction to ``alpha_j`` and the new ``||w||``."""
    coefficients = _project_out(vector, basis, out)
    return torch.stack((coefficients[-1], torch.linalg.vector_norm(vector)))


def _next_residuals(
    products: torch.Tensor,
    bases: list[torch.Tensor],
    recurrences: list[torch.Tensor],
    buffers: list[torch.Tensor],
    reorthogonalisation: str,
) -> tuple[list[tuple[float, float]], list[bool]]:
    """One step's residuals of several runs, with one host round trip (two when a run repeats its pass).

    Parameters
    ----------
    products : torch.Tensor, shape (runs, dim)
        ``A v_j`` of each run; turned into its residual ``w`` in place.
    bases, recurrences, buffers
        Per run: its basis ``(j + 1, dim)``, ``recurrence`` and ``out`` of
        :func:`_recurrence_then_pass`.
    reorthogonalisation : {"dgks", "twice"}
        Repeat the pass where the DGKS test asks for it, or always.

    Returns
    -------
    values : list of (float, float)
        ``(alpha_j, ||w||)`` of each run.
    repeated : list of bool
        Whether each run made a second pass.
    """
    first = torch.stack([_recurrence_then_pass(*run) for run in zip(products, bases, recurrences, buffers)]).tolist()
    # ||w_before||^2 = ||w_after||^2 + ||c||^2 (Pythagoras); "not after > ..." is also true for NaN,
    # which the second pass carries to the caller's finite check.
    repeated = [
        reorthogonalisation == "twice" or not after > DGKS_ETA * math.hypot(after, removed) for _, removed, after in first
    ]
    values = [(diagonal, after) for diagonal, _, after in first]
    again = [row for row, repeat in enumerate(repeated) if repeat]
    if again:
        second = torch.stack([_second_pass(products[row], bases[row], buffers[row]) for row in again]).tolist()
        for row, (correction, norm) in zip(again, second):
            values[row] = (values[row][0] + correction, norm)
    return values, repeated


def _top_converged(alpha: np.ndarray, beta: np.ndarray, tol: float, count: int) -> bool:
    """Whether the ``count`` largest Ritz values of ``T`` (diagonal ``alpha``, off-diagonal ``beta[:-1]``) have
    residual estimates ``beta[-1] |s_i[-1]| <= tol |theta_i|``."""
    if len(alpha) < count:
        return False
    values, vectors = scipy.linalg.eigh_tridiagonal(alpha, beta[:-1])
    return bool(np.all(beta[-1] * np.abs(vectors[-1, -count:]) <= tol * np.abs(values[-count:])))


def lanczos(
    op: Any,
    steps: int,
    num_vectors: int = 1,
    seed: int = 0,
    start: Optional[Any] = None,
    store_vectors: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    *,
    distribution: str = "gaussian",
    basis_device: Optional[DeviceLike] = None,
    breakdown_tol: Optional[float] = None,
    check_symmetric: bool = True,
    reorthogonalisation: str = "dgks",
    tol: Optional[float] = None,
    tol_pairs: int = 1,
) -> LanczosResult:
    """Run Lanczos with full reorthogonalisation from one or several start vectors.

    Parameters
    ----------
    op : operator
        A symmetric operator of size ``P``, or anything :func:`as_operator`
        accepts (a dense array or tensor, a scipy operator, ...).
    steps : int
        Number ``m`` of Lanczos steps (= operator products per start vector);
        at most ``P`` are taken.
    num_vectors : int, default: 1
        Number of independent random start vectors; their products are taken
        together with ``op.matmat``.
    seed : int, default: 0
        Seed of the random start vectors (drawn on the CPU, so the same seed
        gives the same vectors on any device).
    start : array or tensor, shape (P,) or (num_vectors, P), optional
        Start vectors to use instead of random ones (normalised here).
    store_vectors : bool, default: False
        Keep the basis in the result, so that ``ritz_vectors`` is available.
    progress, cancel
        The progress protocol of :mod:`curvwidgets.progress`; one event per step.
    distribution : {"gaussian", "rademacher"}, default: "gaussian"
        Entries of the random start vectors.
    basis_device : str or torch.device, optional
        Where the basis lives; ``"cpu"`` offloads it from an accelerator for
        large operators (products stay on ``op.device``). Default: ``op.device``.
    breakdown_tol : float, optional
        A run stops early when ``beta_j <= breakdown_tol * ||T_j||`` (estimated
        by the largest ``|alpha|`` and ``beta`` so far): its Krylov space is
        then invariant to working precision, its Ritz values are eigenvalues
        of ``op`` and its Gauss rule is exact, so that run has fewer nodes.
        Default: ``sqrt(eps)`` of the dtype.
    check_symmetric : bool, default: True
        Check that ``op`` is symmetric first, as :func:`as_operator` does
        (two extra products for an opaque operator; skipped for operators
        that are symmetric by construction, such as the package's Hessian and GGN).
    reorthogonalisation : {"dgks", "twice"}, default: "dgks"
        ``"dgks"``: one Gram-Schmidt pass against the whole basis per step,
        and a second one only where the DGKS test asks for it (the first pass
        left at most ``1/sqrt(2)`` of the norm). ``"twice"``: two passes on
        every step (twice the reads of the basis, for the same orthogonality
        to working precision; kept as a reference).
    tol : float, optional
        Stop a run early once its ``tol_pairs`` largest Ritz values have
        residual estimates ``<= tol * |theta|`` (each then within ``tol``,
        relative, of an eigenvalue); ``steps`` is then the most it takes.
        For the extreme eigenpairs alone, :func:`~curvwidgets.linalg.eigenpairs`
        restarts and needs less memory.
    tol_pairs : int, default: 1
        How many of the largest Ritz values ``tol`` applies to.

    Returns
    -------
    LanczosResult

    Raises
    ------
    ValueError
        ``steps``, ``num_vectors``, ``seed``, ``distribution``,
        ``breakdown_tol`` or ``reorthogonalisation`` out of range; start vectors of the wrong shape, zero
        or non-finite; an operator that is not symmetric; an operator product
        of the wrong shape or with NaN/inf (the message names the step).
    TypeError
        ``progress`` not callable, ``cancel`` without ``is_set()``, or an
        operator :func:`as_operator` does not accept.
    Cancelled
        When ``cancel`` is set; ``.result`` is the valid result of the steps done.

    Notes
    -----
    Per step, one operator product per run, the three-term recurrence, then
    one Gram-Schmidt pass against the whole stored basis (``2 j P``
    multiply-adds at step ``j``, two matrix-vector products that run at memory
    bandwidth), and a second pass where the DGKS test asks for it.
    ``result.basis_reads_per_step`` says how many reads of the basis a step
    took on average (2 when no step needed a second pass, 4 with ``"twice"``).
    One host synchronisation per step for all runs together, and one more on
    the steps where some run makes a second pass.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag(np.r_[np.linspace(0.0, 1.0, 99), 5.0])  # top eigenvalue 5, the rest in [0, 1]
    >>> result = lanczos(A, steps=20, seed=0)
    >>> round(float(result.ritz_values[0, -1]), 10)
    5.0
    >>> round(float(result.ritz_weights.sum()), 12)
    1.0
    """
    progress, cancel = check_protocol(progress, cancel)
    steps = check_steps(steps)
    num_vectors, seed, distribution = check_start(num_vectors, seed, distribution)
    boolean("store_vectors", store_vectors)
    storage = None if basis_device is None else resolve_device(basis_device, "basis_device")
    tolerance = None if breakdown_tol is None else non_negative("breakdown_tol", breakdown_tol)
    choice("reorthogonalisation", reorthogonalisation, REORTHOGONALISATIONS)
    tol = None if tol is None else positive("tol", tol)
    tol_pairs = positive_int("tol_pairs", tol_pairs)
    op = as_operator(op, check_symmetric=check_symmetric)
    steps = min(steps, op.dim)
    vectors = start_vectors(op, num_vectors, seed, distribution, start)
    runs = vectors.shape[0]
    storage = op.device if storage is None else storage
    tolerance = torch.finfo(op.dtype).eps ** 0.5 if tolerance is None else tolerance

    basis = torch.empty(runs, steps, op.dim, dtype=op.dtype, device=storage)
    basis[:, 0] = vectors.to(storage)
    alpha = np.full((runs, steps), np.nan)
    beta = np.full((runs, steps), np.nan)  # beta[:, j] couples steps j and j + 1
    num_steps = np.zeros(runs, dtype=np.int64)
    passes = np.zeros((runs, steps), dtype=np.int64)
    scale = np.zeros(runs)
    active = list(range(runs))

    def result(measure: bool) -> LanczosResult:
        width = int(num_steps.max())
        kept = basis[:, :width]
        last = beta[np.arange(runs), num_steps - 1]
        off_diagonal = beta[:, : width - 1].copy()
        for run, count in enumerate(num_steps):
            off_diagonal[run, count - 1 :] = np.nan
        return LanczosResult(
            alpha=alpha[:, :width].copy(),
            beta=off_diagonal,
            residual_norm=last,
            num_steps=num_steps.copy(),
            dim=op.dim,
            orthogonality=_orthogonality(kept, num_steps) if measure else float("nan"),
            basis=kept if store_vectors else None,
            gram_schmidt_passes=passes[:, :width].copy(),
        )

    coefficients = torch.empty(runs, steps, dtype=op.dtype, device=storage)
    recurrence = torch.zeros(runs, 2, dtype=op.dtype, device=storage)  # (beta_{j-1}, alpha_j) of each run
    current = vectors[active]
    for step in range(steps):
        products = apply_operator(op, current, step + 1, "lanczos", check_finite=False).to(storage)
        values, repeated = _next_residuals(
            products,
            [basis[run, : step + 1] for run in active],
            [recurrence[run] for run in active],
            [coefficients[run] for run in active],
            reorthogonalisation,
        )
        still_active = []
        for row, run in enumerate(active):
            alpha[run, step], beta[run, step] = values[row]
            if not (np.isfinite(alpha[run, step]) and np.isfinite(beta[run, step])):
                raise NonFiniteProduct(f"lanczos step {step + 1}: the operator product contains NaN or inf; stopped")
            num_steps[run] = step + 1
            passes[run, step] = 2 if repeated[row] else 1
            scale[run] = max(scale[run], abs(alpha[run, step]), beta[run, step])
            converged = tol is not None and _top_converged(alpha[run, : step + 1], beta[run, : step + 1], tol, tol_pairs)
            if step + 1 < steps and beta[run, step] > tolerance * scale[run] and not converged:
                torch.div(products[row], beta[run, step], out=basis[run, step + 1])
                recurrence[run, 0] = beta[run, step]
                still_active.append(run)
        active = still_active
        report(progress, cancel, "lanczos", step + 1, steps, partial=lambda: result(measure=False), final=lambda: result(measure=True))
        if not active:
            break
        current = basis[active, step + 1].to(op.device)
    return result(measure=True)
