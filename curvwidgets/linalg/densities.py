"""Spectral densities from Lanczos runs: stems (eq. 8), smoothed curves, moments, traces.

A run from a random unit vector ``v`` gives a discrete measure
``sum_k tau_k^2 delta(lambda - theta_k)`` whose first ``2m`` moments are
``v^T A^j v``; for a random ``v`` these are unbiased estimates of the moments
``tr(A^j) / P`` of the spectral density (eq. 6 of the paper, up to the
normalisation of ``v``). Averaging over ``n_v`` runs gives eq. 8.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .._validate import finite, non_negative_int, optional_positive, positive_int
from ._checks import finite_vector
from .estimates import Estimate
from .lanczos import LanczosResult

__all__ = ["check_density", "stem_density", "smooth_density", "density_spread", "spectral_moments",
           "trace_estimate", "spectral_estimates", "wasserstein1"]

Stem = Tuple[np.ndarray, np.ndarray]
DensityLike = Union[LanczosResult, Stem]


def check_density(value: Any, argument: str = "result") -> DensityLike:
    """``value`` if it is a :class:`LanczosResult`, else ``(nodes, weights)`` as float arrays, checked.

    Parameters
    ----------
    value : LanczosResult or (nodes, weights)
        ``nodes`` and ``weights`` of shape ``(n,)``, ``n >= 1``: finite, the
        weights >= 0 with a positive sum.
    argument : str
        The name given in error messages.

    Raises
    ------
    TypeError
        When ``value`` is neither a ``LanczosResult`` nor a pair.
    ValueError
        When the pair's arrays are not 1-D, of one length and finite, or the
        weights are negative or all 0.
    """
    if isinstance(value, LanczosResult):
        return value
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        size = f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""
        raise TypeError(
            f"{argument} must be a LanczosResult or a pair (nodes, weights) of 1-D arrays; "
            f"got {type(value).__name__}{size}"
        )
    nodes, weights = finite_vector(f"{argument} nodes", value[0]), finite_vector(f"{argument} weights", value[1])
    if nodes.shape != weights.shape:
        raise ValueError(f"{argument} nodes and weights must have the same length; got {nodes.size} and {weights.size}")
    if np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(
            f"{argument} weights must be >= 0 with a positive sum; got minimum {weights.min():.3g}, sum {weights.sum():.3g}"
        )
    return nodes, weights


def stem_density(result: DensityLike) -> Stem:
    """The discrete spectral density of eq. 8, pooled over start vectors.

    Parameters
    ----------
    result : LanczosResult or (nodes, weights)
        A Lanczos run, or a stem already pooled.

    Returns
    -------
    nodes : ndarray, shape (n,)
        Ritz values of all runs, ascending.
    weights : ndarray, shape (n,)
        Their Gauss weights divided by the number of runs; they sum to 1.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_density`.
    """
    result = check_density(result)
    if isinstance(result, LanczosResult):
        nodes = np.concatenate([result.nodes(run) for run in range(result.num_vectors)])
        weights = np.concatenate([result.weights(run) for run in range(result.num_vectors)]) / result.num_vectors
    else:
        nodes, weights = result
    order = np.argsort(nodes, kind="stable")
    return nodes[order], weights[order]


def default_sigma(nodes: np.ndarray, steps: int) -> float:
    """Gaussian width used by :func:`smooth_density` when none is given.

    ``(max(nodes) - min(nodes)) / steps``: about the spacing of ``steps``
    Ritz values spread over the spectrum, which is as fine as an ``m``-step
    rule resolves. For a single node, ``1e-3 * max(1, |node|)``.
    """
    width = float(nodes.max() - nodes.min())
    return width / steps if width > 0 else 1e-3 * max(1.0, float(np.abs(nodes).max()))


def smooth_density(
    result: DensityLike,
    grid: Optional[Union[np.ndarray, Sequence[float]]] = None,
    sigma: Optional[float] = None,
    num_points: int = 512,
) -> Tuple[np.ndarray, np.ndarray]:
    """Gaussian-broadened spectral density ``sum_k w_k N(x; theta_k, sigma^2)``.

    Parameters
    ----------
    result : LanczosResult or (nodes, weights)
        The stem to smooth.
    grid : array, optional
        Points ``x`` at which to evaluate. Default: ``num_points`` points from
        ``min(nodes) - 3 sigma`` to ``max(nodes) + 3 sigma``.
    sigma : float, optional
        Kernel width in eigenvalue units; default :func:`default_sigma`.
    num_points : int, default: 512
        Size of the default grid.

    Returns
    -------
    grid : ndarray, shape (n,)
    density : ndarray, shape (n,)
        Integrates to 1 over the real line (each kernel has unit mass).
    """
    sigma, num_points = optional_positive("sigma", sigma), positive_int("num_points", num_points)
    grid = None if grid is None else finite_vector("grid", grid)
    nodes, weights = stem_density(result)
    if sigma is None:
        steps = result.steps if isinstance(result, LanczosResult) else nodes.size
        sigma = default_sigma(nodes, steps)
    if grid is None:
        grid = np.linspace(nodes.min() - 3 * sigma, nodes.max() + 3 * sigma, num_points)
    kernels = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return grid, kernels @ weights


def density_spread(
    result: LanczosResult,
    grid: Optional[Union[np.ndarray, Sequence[float]]] = None,
    sigma: Optional[float] = None,
    num_points: int = 512,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The smoothed density of each start vector's run: their mean and its standard error, point by point.

    The mean is :func:`smooth_density` of the pooled stem (same ``grid`` and
    ``sigma``); the standard error, ``std / sqrt(num_vectors)`` over the runs,
    says how far the drawn density may be from the one the runs estimate
    (the paper's Figure 7 compares two start vectors). NaN from one run.

    Returns
    -------
    grid, density, standard_error : ndarray, shape (n,) each
    """
    if not isinstance(result, LanczosResult):
        raise TypeError(f"result must be a LanczosResult (one density per start vector); got {type(result).__name__}")
    grid, density = smooth_density(result, grid=grid, sigma=sigma, num_points=num_points)
    sigma = sigma if sigma is not None else default_sigma(stem_density(result)[0], result.steps)
    runs = np.array([smooth_density((result.nodes(run), result.weights(run)), grid=grid, sigma=sigma)[1]
                     for run in range(result.num_vectors)])
    error = runs.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else np.full(grid.shape, np.nan)
    return grid, density, error


def spectral_moments(result: DensityLike, orders: Union[int, Sequence[int]] = 4) -> np.ndarray:
    """Moments ``sum_k w_k theta_k^j`` of the pooled stem, for ``j`` in ``orders``.

    An int ``n`` means orders ``0 .. n``. For unit random start vectors these
    estimate ``tr(A^j) / P``; they are exact (equal to ``v^T A^j v`` averaged
    over the runs) for ``j < 2m``.

    Raises
    ------
    ValueError
        When ``orders`` is not an int >= 0 or a sequence of them.
    """
    if isinstance(orders, (Sequence, np.ndarray)) and not isinstance(orders, str):
        orders = [non_negative_int(f"orders[{index}]", order) for index, order in enumerate(orders)]
    else:
        orders = range(non_negative_int("orders", orders) + 1)
    nodes, weights = stem_density(result)
    return np.array([weights @ nodes**order for order in orders])


def trace_estimate(result: LanczosResult) -> float:
    """Hutchinson-Lanczos estimate of ``tr(A) = P * sum_k w_k theta_k`` (averaged over runs)."""
    if not isinstance(result, LanczosResult):
        raise TypeError(f"result must be a LanczosResult (it carries the size P); got {type(result).__name__}")
    return float(result.dim * spectral_moments(result, [1])[0])


def spectral_estimates(result: LanczosResult, below: float = 0.0, orders: int = 4) -> Dict[str, Estimate]:
    """The trace, moments and negative mass from each start vector, and their mean with its standard error.

    Each run from an independent random unit vector gives its own estimate
    (its Gauss rule); their mean is what :func:`trace_estimate`,
    :func:`spectral_moments` and the pooled stem give, and their spread over
    the runs is its standard error (NaN from a single run: one vector says
    nothing about how far its estimate may be off).

    Parameters
    ----------
    result : LanczosResult
    below : float, default: 0.0
        The negative mass is the Gauss weight at Ritz values ``< below``.
    orders : int, default: 4
        Moments ``tr(A^j) / P`` for ``j = 1 .. orders`` (exact for each run's
        vector up to ``j = 2m - 1``).

    Returns
    -------
    dict of str to Estimate
        ``"trace"`` (``P`` times the first moment), ``"moment_1"`` ..
        ``"moment_{orders}"`` and ``"negative_mass"``; each ``Estimate``'s
        ``samples`` holds the runs' values, shape ``(num_vectors,)``.
    """
    if not isinstance(result, LanczosResult):
        raise TypeError(f"result must be a LanczosResult; got {type(result).__name__}")
    below = finite("below", below)
    orders = positive_int("orders", orders)
    runs = [(result.nodes(run), result.weights(run)) for run in range(result.num_vectors)]
    moments = np.array([[weights @ nodes**order for order in range(1, orders + 1)] for nodes, weights in runs])
    estimates = {"trace": Estimate.of(result.dim * moments[:, 0])}
    estimates.update({f"moment_{order}": Estimate.of(moments[:, order - 1]) for order in range(1, orders + 1)})
    estimates["negative_mass"] = Estimate.of(np.array([weights[nodes < below].sum() for nodes, weights in runs]))
    return estimates


def wasserstein1(result: DensityLike, eigenvalues: np.ndarray) -> float:
    """Wasserstein-1 distance between a stem density and the empirical measure of ``eigenvalues``.

    In eigenvalue units: how far, on average, spectral mass must move to turn
    one measure into the other. Used to score Lanczos (or any approximation
    given as nodes and weights) against exact eigenvalues.
    """
    reference = finite_vector("eigenvalues", np.ravel(eigenvalues))
    nodes, weights = stem_density(result)
    # W1 = integral of |F - G| over the real line, F and G the two step CDFs: between
    # consecutive atoms of both measures the difference of the CDFs is constant.
    atoms = np.concatenate([nodes, reference])
    order = np.argsort(atoms, kind="stable")
    masses = np.concatenate([weights / weights.sum(), np.full(reference.size, -1.0 / reference.size)])[order]
    return float(np.abs(np.cumsum(masses)[:-1]) @ np.diff(atoms[order]))
