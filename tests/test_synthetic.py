"""Random-matrix ensembles and limiting densities against closed forms."""

import numpy as np
import pytest
import scipy.integrate

import curvwidgets as cw
from curvwidgets import synthetic


def test_wigner_is_symmetric_with_unit_variance_entries():
    raw = synthetic.wigner(400, seed=1, normalize=False)
    np.testing.assert_array_equal(raw, raw.T)
    upper = raw[np.triu_indices(400)]
    assert upper.mean() == pytest.approx(0.0, abs=0.01) and upper.var() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(synthetic.wigner(400, seed=1), raw / 20.0)
    # Frobenius identity of eq. 18: mean squared eigenvalue = ||H||_F^2 / P, about P for unit entries.
    assert np.mean(np.linalg.eigvalsh(raw) ** 2) == pytest.approx(np.sum(raw**2) / 400)


def test_marchenko_pastur_matrix_is_the_sample_covariance():
    matrix = synthetic.marchenko_pastur(50, 80, seed=2)
    samples = np.random.default_rng(2).standard_normal((50, 80))
    np.testing.assert_allclose(matrix, samples @ samples.T / 80, atol=1e-14)
    low_rank = np.linalg.eigvalsh(synthetic.marchenko_pastur(60, 30, seed=0))
    assert np.sum(np.abs(low_rank) < 1e-10) == 30


@pytest.mark.parametrize("radius", [1.0, 2.0])
def test_semicircle_is_a_density_with_variance_r2_over_4(radius):
    mass = scipy.integrate.quad(lambda x: synthetic.semicircle_pdf(x, radius), -radius, radius)[0]
    variance = scipy.integrate.quad(lambda x: x**2 * synthetic.semicircle_pdf(x, radius), -radius, radius)[0]
    assert mass == pytest.approx(1.0, abs=1e-9) and variance == pytest.approx(radius**2 / 4, abs=1e-9)
    assert synthetic.semicircle_pdf(radius + 0.1, radius) == 0.0


@pytest.mark.parametrize("q", [0.25, 0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("sigma", [1.0, 0.5])
def test_marchenko_pastur_law_moments(q, sigma):
    lower, upper = sigma**2 * (1 - np.sqrt(q)) ** 2, sigma**2 * (1 + np.sqrt(q)) ** 2

    def integral(power):
        points = [] if lower == 0 else [lower]
        return scipy.integrate.quad(lambda x: x**power * synthetic.marchenko_pastur_pdf(x, q, sigma),
                                    lower, upper, points=points or None, limit=200)[0]

    atom = synthetic.marchenko_pastur_atom(q)
    assert atom == pytest.approx(max(0.0, 1 - 1 / q))
    assert integral(0) + atom == pytest.approx(1.0, abs=1e-6)
    assert integral(1) == pytest.approx(sigma**2, abs=1e-6)  # the atom at 0 adds nothing
    assert integral(2) == pytest.approx(sigma**4 * (1 + q), abs=1e-6)


def test_marchenko_pastur_law_matches_a_large_sample():
    eigenvalues = np.linalg.eigvalsh(synthetic.marchenko_pastur(1000, 2000, seed=0))
    counts, edges = np.histogram(eigenvalues, bins=20)
    expected = [scipy.integrate.quad(lambda x: synthetic.marchenko_pastur_pdf(x, 0.5), a, b)[0] for a, b in zip(edges, edges[1:])]
    np.testing.assert_allclose(counts / 1000, expected, atol=0.02)


def test_with_spectrum_has_the_requested_eigenvalues_and_a_haar_rotation():
    values = np.array([3.0, -1.0, 0.0, 0.0, 7.5])
    matrix = synthetic.with_spectrum(values, seed=4)
    np.testing.assert_array_equal(matrix, matrix.T)
    np.testing.assert_allclose(np.linalg.eigvalsh(matrix), np.sort(values), atol=1e-12)
    rotation = synthetic.haar_orthogonal(30, seed=1)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(30), atol=1e-13)
    gaussian = np.random.default_rng(1).standard_normal((30, 30))
    # Gram-Schmidt: the first column is the first Gaussian column normalised.
    np.testing.assert_allclose(rotation[:, 0], gaussian[:, 0] / np.linalg.norm(gaussian[:, 0]), atol=1e-13)
    with pytest.raises(ValueError, match="eigenvalues must be"):
        synthetic.with_spectrum([])


def test_section53_spectrum_has_the_papers_composition():
    values = synthetic.section53_eigenvalues(seed=0)
    assert values.size == 1000 and np.sum(values == 0) == 500
    assert np.all((values[:470] >= 0) & (values[:470] <= 15))
    assert np.all((values[470:490] >= 0) & (values[470:490] <= 60))
    assert np.all((values[490:500] >= -10) & (values[490:500] <= 0))
    matrix = synthetic.section53_matrix(seed=0)
    np.testing.assert_allclose(np.linalg.eigvalsh(matrix), np.sort(values), atol=1e-10)


def test_diagonal_approximation_and_bad_sizes():
    matrix = np.array([[1.0, 2.0], [2.0, -3.0]])
    np.testing.assert_array_equal(synthetic.diagonal_approximation(matrix), [1.0, -3.0])
    with pytest.raises(ValueError, match="square"):
        synthetic.diagonal_approximation(np.ones(3))
    with pytest.raises(ValueError, match="P must be an int >= 1"):
        synthetic.wigner(0)
    with pytest.raises(ValueError, match="T must be an int >= 1"):
        synthetic.marchenko_pastur(3, 1.5)
    with pytest.raises(ValueError, match="q must be a finite number > 0"):
        synthetic.marchenko_pastur_pdf(1.0, 0.0)


def test_wigner_spectrum_converges_to_the_semicircle():
    eigenvalues = np.linalg.eigvalsh(cw.synthetic.wigner(1200, seed=5))
    counts, edges = np.histogram(eigenvalues, bins=16, range=(-2, 2))
    expected = [scipy.integrate.quad(synthetic.semicircle_pdf, a, b)[0] for a, b in zip(edges, edges[1:])]
    np.testing.assert_allclose(counts / 1200, expected, atol=0.015)
