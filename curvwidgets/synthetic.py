"""Random-matrix ensembles of section 5 of the paper, and their limiting densities.

All matrices are float64 numpy arrays built from a ``numpy.random.Generator``
seeded with ``seed``, so the same seed gives the same matrix everywhere.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from ._validate import boolean, positive, positive_int, real_array, seed_value

__all__ = [
    "wigner",
    "marchenko_pastur",
    "with_spectrum",
    "haar_orthogonal",
    "section53_eigenvalues",
    "section53_matrix",
    "semicircle_pdf",
    "marchenko_pastur_pdf",
    "marchenko_pastur_atom",
    "diagonal_approximation",
]

ArrayLike = Union[np.ndarray, Sequence[float], float]


def wigner(P: int, seed: int = 0, normalize: bool = True) -> np.ndarray:
    """A real symmetric Wigner matrix (Definition 5.1) with standard Gaussian entries.

    The upper triangle and the diagonal are i.i.d. ``N(0, 1)`` and the lower
    triangle mirrors the upper one. With ``normalize`` the matrix is divided
    by ``sqrt(P)`` so that its spectrum tends to the semicircle on ``[-2, 2]``
    (Theorem 6); without it the entries keep unit variance, as in Figure 4.

    Returns
    -------
    ndarray, shape (P, P)
    """
    P, normalize = positive_int("P", P), boolean("normalize", normalize)
    entries = np.random.default_rng(seed_value("seed", seed)).standard_normal((P, P))
    matrix = np.triu(entries) + np.triu(entries, 1).T
    return matrix / np.sqrt(P) if normalize else matrix


def marchenko_pastur(P: int, T: int, seed: int = 0, sigma: float = 1.0) -> np.ndarray:
    """The sample covariance ``X X^T / T`` of a ``P x T`` matrix ``X`` with i.i.d. ``N(0, sigma^2)`` entries.

    Its spectrum tends to the Marchenko-Pastur law with ratio ``q = P / T``
    (Theorem 7); for ``T < P`` a fraction ``1 - T / P`` of the eigenvalues is 0.

    Returns
    -------
    ndarray, shape (P, P)
    """
    P, T, sigma = positive_int("P", P), positive_int("T", T), positive("sigma", sigma)
    samples = sigma * np.random.default_rng(seed_value("seed", seed)).standard_normal((P, T))
    covariance = samples @ samples.T / T
    return (covariance + covariance.T) / 2


def haar_orthogonal(P: int, seed: int = 0) -> np.ndarray:
    """An orthogonal ``P x P`` matrix from Gram-Schmidt of Gaussian vectors.

    The columns are those of Gram-Schmidt applied to the columns of a
    standard Gaussian matrix: its QR factorisation with the signs fixed so
    that ``R`` has a positive diagonal. The result is Haar distributed.
    """
    P = positive_int("P", P)
    gaussian = np.random.default_rng(seed_value("seed", seed)).standard_normal((P, P))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))


def with_spectrum(eigenvalues: ArrayLike, seed: int = 0) -> np.ndarray:
    """The symmetric matrix ``U diag(eigenvalues) U^T`` with ``U`` from :func:`haar_orthogonal`.

    Returns
    -------
    ndarray, shape (P, P), P = len(eigenvalues)
    """
    values = real_array("eigenvalues", eigenvalues).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("eigenvalues must be a non-empty sequence of finite numbers")
    rotation = haar_orthogonal(values.size, seed)
    matrix = (rotation * values) @ rotation.T
    return (matrix + matrix.T) / 2


def section53_eigenvalues(seed: int = 0) -> np.ndarray:
    """The spectrum of section 5.3: a network-like spectrum of 1000 eigenvalues.

    470 drawn from ``U[0, 15]`` (the bulk), 20 from ``U[0, 60]`` (outliers),
    10 from ``U[-10, 0]`` (negative outliers), and 500 zeros; in that order.
    """
    rng = np.random.default_rng(seed_value("seed", seed))
    return np.concatenate([rng.uniform(0, 15, 470), rng.uniform(0, 60, 20), rng.uniform(-10, 0, 10), np.zeros(500)])


def section53_matrix(seed: int = 0) -> np.ndarray:
    """``U D U^T`` for :func:`section53_eigenvalues` (Figure 5); shape ``(1000, 1000)``."""
    return with_spectrum(section53_eigenvalues(seed), seed=seed_value("seed", seed) + 1)


def semicircle_pdf(x: ArrayLike, radius: float = 2.0) -> np.ndarray:
    """Wigner's semicircle density ``2 / (pi R^2) sqrt(R^2 - x^2)`` on ``[-R, R]`` (eq. 15 for ``R = 2``)."""
    x, radius = real_array("x", x), positive("radius", radius)
    return 2.0 / (np.pi * radius**2) * np.sqrt(np.clip(radius**2 - x**2, 0.0, None))


def _mp_edges(q: float, sigma: float) -> tuple[float, float]:
    """``(lambda_-, lambda_+)`` of the Marchenko-Pastur law, checking ``q`` and ``sigma`` finite and > 0."""
    q, sigma = positive("q", q), positive("sigma", sigma)
    return sigma**2 * (1 - np.sqrt(q)) ** 2, sigma**2 * (1 + np.sqrt(q)) ** 2


def marchenko_pastur_pdf(x: ArrayLike, q: float, sigma: float = 1.0) -> np.ndarray:
    """Continuous part of the Marchenko-Pastur law for ratio ``q = P / T`` (eq. 17).

    ``sqrt((lambda_+ - x)(x - lambda_-)) / (2 pi sigma^2 q x)`` on
    ``[lambda_-, lambda_+]``, ``lambda_+- = sigma^2 (1 +- sqrt(q))^2``. It
    integrates to ``min(1, 1/q)``; for ``q > 1`` the rest,
    :func:`marchenko_pastur_atom`, is a point mass at 0.
    """
    lower, upper = _mp_edges(q, sigma)
    q, sigma, x = float(q), float(sigma), real_array("x", x)
    inside = (x > lower) & (x < upper) & (x > 0)
    safe = np.where(inside, x, 1.0)
    values = np.sqrt(np.clip((upper - safe) * (safe - lower), 0.0, None)) / (2 * np.pi * sigma**2 * q * safe)
    return np.where(inside, values, 0.0)


def marchenko_pastur_atom(q: float) -> float:
    """Mass of the Marchenko-Pastur law at 0: ``max(0, 1 - 1/q)`` for ``q = P / T``."""
    _mp_edges(q, 1.0)
    return max(0.0, 1.0 - 1.0 / q)


def diagonal_approximation(matrix: np.ndarray) -> np.ndarray:
    """The diagonal of ``matrix``, read as a set of eigenvalue estimates.

    The baseline of Figures 4 and 5: treating the diagonal as the spectrum
    ignores every correlation between coordinates.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square; got shape {matrix.shape}")
    return np.diag(matrix).astype(float, copy=True)
