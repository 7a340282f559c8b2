"""The trace of a symmetric operator from its products, with a standard error from the estimator's own samples.

Three estimators, each the mean of ``n`` samples ``t_i`` whose expectation is
``tr(A)``, each with a standard error computed from its own work:

- **Hutchinson** (1989): ``t_i = w_i^T A w_i`` for random probes ``w_i`` with
  ``E[w w^T] = I`` (Rademacher or Gaussian entries). One product per sample;
  the error falls as ``1 / sqrt(products)``.
- **Hutch++** (Meyer, Musco, Musco & Woodruff, 2021): a third of the products
  sketch the range of ``A`` (``Q = orth(A S)``), a third give the trace of
  ``A`` on it exactly (``tr(Q^T A Q)``), and a third are Hutchinson probes of
  what is left, ``(I - QQ^T) A (I - QQ^T)``; ``t_i = tr(Q^T A Q) + g_i'^T A
  g_i'`` with ``g_i' = (I - QQ^T) g_i``. On a decaying spectrum the error
  falls as ``1 / products``.
- **XTrace** (Epperly, Tropp & Webber, 2024): half of the products sketch the
  range of ``A`` with probes ``w_1 .. w_k``; each ``t_i`` is Hutch++ with the
  sketch of the other probes and ``w_i`` as its residual probe, so every
  product serves both parts. The samples share their probes, so the
  standard error is the jackknife's over the probes (XTrace without probe
  ``j``, from the same products), which the Efron-Stein inequality makes
  conservative: on spectra that decay it was about twice the actual error,
  and its 95% intervals covered the trace in 98-100% of 200 runs.

Hutchinson's and Hutch++'s standard errors are ``std(t) / sqrt(n)`` of
samples that are independent (for Hutch++, given the sketch): their 95%
intervals covered the trace in 94-98% of 200 runs on decaying, indefinite and
outlier spectra. Hutch++ is the default: an error about as small as
XTrace's at equal products, and an error bar that says how small.

With ``tol`` the estimators stop once the standard error is at most ``tol``
times the estimate, taking more products as needed up to ``max_products``;
Hutch++ and XTrace then grow their sketch in rounds, keeping every product:
the basis ``Q`` grows with the sketch, so only its new columns need ``A Q``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch

from .._validate import boolean, choice, positive, positive_int, seed_value
from ..progress import CancelToken, ProgressCallback, check_protocol, report
from ._checks import DISTRIBUTIONS, apply_operator
from .estimates import confidence_interval, format_with_error
from .operators import LinearOperator, as_operator

__all__ = ["TraceEstimate", "estimate_trace", "TRACE_METHODS"]

TRACE_METHODS = ("hutch++", "xtrace", "hutchinson")
MIN_SAMPLES = 8
"""With ``tol``, no estimate resting on fewer samples is trusted to have reached it (its error estimate is itself too noisy)."""
RANK_TOL = 1e-10
"""XTrace reads a sketch ``A W = Q R`` whose smallest pivot of ``R`` is below this fraction of the largest as
spanning all of ``range(A)`` (more probes than the rank), where the trace on it is exact."""
FIRST_ROUND = 24
"""Products of the first round of Hutch++ and XTrace with ``tol``; each later round doubles the sketch."""


@dataclass(frozen=True)
class TraceEstimate:
    """An estimate of ``tr(A)`` with its standard error.

    Attributes
    ----------
    value : float
        The estimate, the mean of :attr:`samples`.
    standard_error : float
        ``std(samples) / sqrt(len(samples))``; NaN with a single sample.
    products : int
        Operator products taken (one per column of every block).
    method : str
        One of :data:`TRACE_METHODS`.
    samples : ndarray, shape (n,)
        The estimator's samples, each of expectation ``tr(A)`` (see the module).
    tol : float or None
        The relative standard error asked for.
    converged : bool
        Whether ``standard_error <= tol * |value|`` (True without ``tol``).
    """

    value: float
    standard_error: float
    products: int
    method: str
    samples: np.ndarray = field(repr=False)
    tol: Optional[float] = None
    converged: bool = True

    @property
    def relative_error(self) -> float:
        """``standard_error / |value|``."""
        return self.standard_error / abs(self.value) if self.value != 0 else math.inf

    def interval(self, level: float = 0.95) -> Tuple[float, float]:
        """A ``level`` confidence interval, ``value -+ q * standard_error`` with Student's ``q`` on ``n - 1`` degrees."""
        return confidence_interval(self.value, self.standard_error, len(self.samples), level)

    def __str__(self) -> str:
        return f"{format_with_error(self.value, self.standard_error)} ({self.method}, {self.products} products)"


def estimate_trace(
    op: Any,
    method: str = "hutch++",
    max_products: int = 100,
    tol: Optional[float] = None,
    seed: int = 0,
    *,
    distribution: str = "rademacher",
    block_size: int = 32,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    check_symmetric: bool = True,
) -> TraceEstimate:
    """The trace of a symmetric operator from at most ``max_products`` products, with its standard error.

    Parameters
    ----------
    op : operator
        A symmetric operator of size ``P``, or anything
        :func:`~curvwidgets.linalg.as_operator` accepts.
    method : {"hutch++", "xtrace", "hutchinson"}, default: "hutch++"
        The estimator (see :mod:`curvwidgets.linalg.trace`).
    max_products : int, default: 100
        The budget of products. Without ``tol`` all of it is used (Hutch++
        and XTrace need at least 3 and 4).
    tol : float, optional
        Stop once ``standard_error <= tol * |value|`` on at least
        :data:`MIN_SAMPLES` samples. If the budget runs out first, a
        ``RuntimeWarning`` says so and the estimate is returned with
        ``converged=False``.
    seed : int, default: 0
        Seed of the probes (drawn on the CPU in float64: the same on every device).
    distribution : {"rademacher", "gaussian"}, default: "rademacher"
        Entries of the probes. XTrace scales Gaussian probes to length ``sqrt(P)``,
        as its authors recommend.
    block_size : int, default: 32
        Products taken together (``op.matmat``) at most.
    progress, cancel
        The progress protocol of :mod:`curvwidgets.progress`: stage
        ``"trace"``, ``step`` the products so far of ``total = max_products``,
        the partial result the last complete estimate (None before one).
    check_symmetric : bool, default: True
        Check that ``op`` is symmetric first, as ``as_operator`` does.

    Returns
    -------
    TraceEstimate

    Raises
    ------
    ValueError
        ``method``, ``distribution``, ``seed``, ``max_products``,
        ``block_size`` or ``tol`` out of range (``tol > 0``), or an operator
        product of the wrong shape or with NaN/inf.
    Cancelled
        When ``cancel`` is set; it carries the last complete estimate.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag(1.0 / np.arange(1, 201) ** 2)         # trace pi^2/6 - tail, decaying
    >>> exact = float(np.trace(A))
    >>> estimate = estimate_trace(A, max_products=40, seed=1)
    >>> abs(estimate.value - exact) < 4 * estimate.standard_error
    True
    """
    progress, cancel = check_protocol(progress, cancel)
    choice("method", method, TRACE_METHODS)
    choice("distribution", distribution, DISTRIBUTIONS)
    seed = seed_value("seed", seed)
    max_products = positive_int("max_products", max_products)
    block_size = positive_int("block_size", block_size)
    tol = None if tol is None else positive("tol", tol)
    boolean("check_symmetric", check_symmetric)
    least = {"hutchinson": 1, "hutch++": 3, "xtrace": 4}[method]
    if max_products < least:
        raise ValueError(f"max_products must be at least {least} for method={method!r}; got {max_products}")
    op = as_operator(op, check_symmetric=check_symmetric)
    products = _Products(op, max_products, tol, block_size, progress, cancel)
    probes = _Probes(op.dim, distribution, seed, op.device, scaled=method == "xtrace")
    estimator = {"hutchinson": _hutchinson, "hutch++": _hutch_plus_plus, "xtrace": _xtrace}[method]
    samples, error = estimator(products, probes, max_products, tol)
    return _estimate(samples, error, products.count, method, tol, warn=True)


def _standard_error(samples: torch.Tensor) -> float:
    """``std(samples) / sqrt(n)`` of independent samples; NaN for one."""
    return float(samples.std() / math.sqrt(len(samples))) if len(samples) > 1 else math.nan


def _estimate(samples: torch.Tensor, error: float, products: int, method: str, tol: Optional[float],
              warn: bool = False) -> TraceEstimate:
    values = samples.detach().cpu().numpy().astype(np.float64)
    value = float(values.mean())
    converged = tol is None or _reached(values, error, tol)
    if warn and not converged:
        warnings.warn(f"estimate_trace: the standard error {error:.3g} is still above tol * |trace| = "
                      f"{tol * abs(value):.3g} after max_products={products} products; the estimate is returned "
                      "with converged=False (raise max_products or tol)", RuntimeWarning, stacklevel=3)
    return TraceEstimate(value, error, products, method, values, tol, converged)


def _reached(samples: Any, error: float, tol: float) -> bool:
    """Whether there are enough ``samples`` and their mean's standard ``error`` is at most ``tol`` of its size."""
    return len(samples) >= MIN_SAMPLES and error <= tol * abs(float(samples.mean()))


class _Products:
    """``A @ block`` in float64, in pieces of ``block_size`` columns, counted and reported."""

    def __init__(self, op: LinearOperator, budget: int, tol: Optional[float], block_size: int, progress, cancel):
        self.op, self.budget, self.tol, self.block_size = op, budget, tol, block_size
        self.progress, self.cancel = progress, cancel
        self.count = 0
        self.latest: Optional[TraceEstimate] = None

    def left(self) -> int:
        return self.budget - self.count

    def __call__(self, block: torch.Tensor) -> torch.Tensor:
        """``A @ block`` for ``block`` of shape ``(P, k)``, float64 on the operator's device."""
        pieces = []
        for piece in torch.split(block, self.block_size, dim=1):
            rows = piece.T.to(self.op.dtype).contiguous()
            pieces.append(apply_operator(self.op, rows, self.count + 1, "estimate_trace").T.to(torch.float64))
            self.count += piece.shape[1]
            report(self.progress, self.cancel, "trace", self.count, self.budget, partial=lambda: self.latest)
        return torch.cat(pieces, dim=1)

    def keep(self, samples: torch.Tensor, error: float, method: str) -> bool:
        """Remember the estimate as the partial result of later events; whether it reached ``tol``."""
        self.latest = _estimate(samples, error, self.count, method, None)
        return self.tol is not None and _reached(samples, error, self.tol)


class _Probes:
    """Columns of seeded random probes, ``(P, k)`` float64, drawn on the CPU."""

    def __init__(self, dim: int, distribution: str, seed: int, device: torch.device, scaled: bool):
        self.dim, self.distribution, self.device = dim, distribution, device
        self.scaled = scaled and distribution == "gaussian"  # XTrace: Gaussian columns of length sqrt(P)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, count: int) -> torch.Tensor:
        draw = torch.randn(self.dim, count, generator=self.generator, dtype=torch.float64)
        if self.distribution == "rademacher":
            draw = torch.where(draw >= 0, 1.0, -1.0).to(torch.float64)
        elif self.scaled:
            draw *= math.sqrt(self.dim) / torch.linalg.vector_norm(draw, dim=0)
        return draw.to(self.device)


def _hutchinson(products: _Products, probes: _Probes, budget: int,
                tol: Optional[float]) -> Tuple[torch.Tensor, float]:
    """Samples ``w_i^T A w_i``: all the budget without ``tol``, else blocks until the error is small enough."""
    samples = torch.empty(0, dtype=torch.float64, device=probes.device)
    while products.left() > 0:
        block = probes(min(products.block_size if tol is not None else budget, products.left()))
        samples = torch.cat([samples, (block * products(block)).sum(dim=0)])
        if products.keep(samples, _standard_error(samples), "hutchinson"):
            break
    return samples, _standard_error(samples)


class _Sketch:
    """Probes ``W`` and their products ``A W``, grown in rounds; the orthonormal basis of ``A W`` and ``A`` on it."""

    def __init__(self, products: _Products, probes: _Probes):
        self.products, self.probes = products, probes
        self.probe_block = torch.empty(probes.dim, 0, dtype=torch.float64, device=probes.device)
        self.images = self.probe_block.clone()
        self.basis_block, self.basis_image = self.probe_block.clone(), self.probe_block.clone()  # Q and A Q so far

    def grow(self, columns: int) -> None:
        """Add probes up to ``columns`` in all, with their products."""
        new = self.probes(columns - self.probe_block.shape[1])
        self.probe_block = torch.cat([self.probe_block, new], dim=1)
        self.images = torch.cat([self.images, self.products(new)], dim=1)

    def basis(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Q, R, A Q, Q^T A Q)`` for ``A W = Q R``.

        ``Q`` grows with ``A W``: the products added since the last call are
        orthogonalised against the ``Q`` so far (block Gram-Schmidt, twice),
        so only the new columns of ``Q`` cost products for ``A Q``, and ``R =
        Q^T A W`` stays upper triangular.
        """
        fresh = self.images[:, self.basis_block.shape[1]:]
        for _ in range(2):
            fresh = fresh - self.basis_block @ (self.basis_block.T @ fresh)
        added, _ = torch.linalg.qr(fresh)
        self.basis_block = torch.cat([self.basis_block, added], dim=1)
        self.basis_image = torch.cat([self.basis_image, self.products(added)], dim=1)
        basis, image = self.basis_block, self.basis_image
        projected = basis.T @ image
        return basis, torch.triu(basis.T @ self.images), image, (projected + projected.T) / 2


def _rounds(budget: int, tol: Optional[float], cost: Callable[[int, int], int]) -> List[int]:
    """The nominal sizes ``m`` of the rounds: the budget at once without ``tol``; else from
    :data:`FIRST_ROUND` doubling, each round's ``cost(m)`` (what it adds to the products) within the budget."""
    if tol is None:
        return [budget]
    sizes, spent, size = [], 0, min(FIRST_ROUND, budget)
    while True:
        fitting = size
        while fitting > (sizes[-1] if sizes else 0) and spent + cost(fitting, sizes[-1] if sizes else 0) > budget:
            fitting -= 1
        if fitting <= (sizes[-1] if sizes else 0):
            return sizes
        spent += cost(fitting, sizes[-1] if sizes else 0)
        sizes.append(fitting)
        size = 2 * fitting


def _hutch_plus_plus(products: _Products, probes: _Probes, budget: int,
                     tol: Optional[float]) -> Tuple[torch.Tensor, float]:
    """Hutch++ samples ``tr(Q^T A Q) + g_i'^T A g_i'``, the sketch and the residual probes each a third of ``m``.

    Given ``Q`` the samples are independent and unbiased, so ``std / sqrt(n)``
    is the standard error of their mean.
    """
    sketch, residual = _Sketch(products, probes), _Sketch(products, probes)

    def parts(size: int) -> Tuple[int, int]:
        return size // 3, size - 2 * (size // 3)

    def cost(size: int, before: int) -> int:
        (columns, probes_now), (columns_before, probes_before) = parts(size), parts(before)
        return 2 * (columns - columns_before) + (probes_now - probes_before)

    samples = None
    for size in _rounds(budget, tol, cost):
        columns, count = parts(size)
        sketch.grow(columns)
        residual.grow(count)
        basis, _, image, projected = sketch.basis()
        probe, probe_image = residual.probe_block, residual.images
        inside = basis.T @ probe  # Q^T g
        # g'^T A g' with g' = (I - QQ^T) g, from A g and A Q alone
        quadratic = ((probe * probe_image).sum(0) - 2 * (inside * (image.T @ probe)).sum(0)
                     + (inside * (projected @ inside)).sum(0))
        samples = torch.trace(projected) + quadratic
        if products.keep(samples, _standard_error(samples), "hutch++"):
            break
    return samples, _standard_error(samples)


def _xtrace(products: _Products, probes: _Probes, budget: int, tol: Optional[float]) -> Tuple[torch.Tensor, float]:
    """XTrace's leave-one-out samples on a sketch of ``m // 2`` probes (and ``m // 2`` products for ``A Q``).

    The samples share their probes, so their spread understates the error of
    their mean; the standard error is the jackknife's over the probes,
    ``sqrt((k - 1) / k * sum_j (T_(-j) - mean T)^2)`` with ``T_(-j)`` XTrace
    without probe ``j`` (no further product).
    """
    sketch = _Sketch(products, probes)

    def cost(size: int, before: int) -> int:
        return 2 * (size // 2 - before // 2)

    samples = None
    for size in _rounds(budget, tol, cost):
        sketch.grow(size // 2)
        samples, replicates = _leave_one_out(sketch)
        count = len(replicates)
        error = float(torch.sqrt((count - 1) / count * ((replicates - replicates.mean()) ** 2).sum()))
        if products.keep(samples, error, "xtrace"):
            break
    return samples, error


def _leave_one_out(sketch: _Sketch) -> Tuple[torch.Tensor, torch.Tensor]:
    """XTrace's samples ``t_i``, and the XTrace estimates ``T_(-j)`` of the probes without probe ``j``.

    ``t_i = tr(Q_i^T A Q_i) + r_i^T A r_i``: ``Q_i`` an orthonormal basis of
    the products ``A W`` without column ``i``, ``r_i = (I - Q_i Q_i^T) w_i``.
    With ``A W = Q R``, the part of ``range(Q)`` that the products without
    columns ``L`` miss is spanned by ``g_l``, the columns ``l`` in ``L`` of
    ``R^{-T}``; so every sample, and every ``T_(-j)`` (whose samples leave
    out ``{i, j}``), follows from ``k x k`` matrices: ``H = Q^T A Q``,
    ``V = Q^T W``, ``R = Q^T A W`` and ``w_i^T A w_i``. Returns ``(t, T)``,
    each of shape ``(k,)``.
    """
    basis, triangle, _, projected = sketch.basis()
    probe, probe_image = sketch.probe_block, sketch.images
    count = triangle.shape[0]
    trace = torch.trace(projected)
    pivots = triangle.diagonal().abs()
    if pivots.min() <= RANK_TOL * pivots.max():  # more probes than rank A: A W spans range(A), tr(Q^T A Q) is exact
        return trace.repeat(count), trace.repeat(count)
    identity = torch.eye(count, dtype=triangle.dtype, device=triangle.device)
    dual = torch.linalg.solve_triangular(triangle, identity, upper=True).T  # R^{-T}: columns g_i
    inside = basis.T @ probe  # V: columns v_i = Q^T w_i
    gram = dual.T @ dual  # g_a . g_b
    dual_inside = dual.T @ inside  # g_a . v_b
    dual_image = dual.T @ triangle  # g_a . r_b with r_b = Q^T A w_b (the identity, up to rounding)
    curved_dual = dual.T @ projected @ dual  # g_a^T H g_b
    curved_mixed = dual.T @ projected @ inside  # g_a^T H v_b
    diagonal = ((probe * probe_image).sum(0) - 2 * (inside * triangle).sum(0)
                + (inside * (projected @ inside)).sum(0))  # (w_i - Q v_i)^T A (w_i - Q v_i)

    def sample(i: torch.Tensor, left_out: List[torch.Tensor]) -> torch.Tensor:
        """``t_i`` with the columns ``left_out`` (index tensors broadcast with ``i``) out of the basis."""
        pairs = torch.stack([torch.stack([gram[a, b] for b in left_out], -1) for a in left_out], -2)
        inverse = torch.linalg.inv(pairs)
        into = torch.stack([dual_inside[a, i] for a in left_out], -1)  # g_a . v_i
        coefficients = (inverse @ into[..., None])[..., 0]  # the part of v_i along the g_a: sum_a c_a g_a
        curved = torch.stack([torch.stack([curved_dual[a, b] for b in left_out], -1) for a in left_out], -2)
        removed = (inverse * curved).sum((-2, -1))  # tr(Pi H) for the projection Pi onto the g_a
        # r = (w_i - Q v_i) + Q sum_a c_a g_a: its curvature from the k x k matrices
        along_image = torch.stack([dual_image[a, i] - (curved_mixed[a, i]) for a in left_out], -1)
        cross = 2 * (coefficients * along_image).sum(-1)
        along = (coefficients[..., :, None] * coefficients[..., None, :] * curved).sum((-2, -1))
        return trace - removed + diagonal[i] + cross + along

    rows = torch.arange(count, device=triangle.device)
    one_out = sample(rows, [rows])
    others, left = torch.meshgrid(rows, rows, indexing="ij")  # sample i = others, probe j = left left out
    same = others == left
    two_out = sample(others, [others, torch.where(same, (left + 1) % count, left)])  # i = j: a stand-in, masked
    two_out = torch.where(same, 0.0, two_out)
    replicates = two_out.sum(0) / (count - 1)  # T_(-j): the mean over i != j
    return one_out, replicates
