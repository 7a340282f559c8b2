"""Stem and smoothed densities, moments and traces against direct computation."""

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import curvwidgets as cw
from curvwidgets.linalg.densities import default_sigma


@pytest.fixture(scope="module")
def run():
    matrix = cw.synthetic.wigner(250, seed=12)
    starts = np.random.default_rng(3).standard_normal((4, 250))
    return matrix, starts, cw.lanczos(matrix, steps=20, start=starts)


def test_stem_density_pools_runs_as_eq_8(run):
    _, _, result = run
    nodes, weights = cw.stem_density(result)
    assert nodes.shape == weights.shape == (80,)
    assert np.all(np.diff(nodes) >= 0)
    assert weights.sum() == pytest.approx(1.0)
    expected = sorted(zip(result.ritz_values.ravel(), result.ritz_weights.ravel() / 4))
    np.testing.assert_allclose(np.column_stack([nodes, weights]), np.array(expected))


def test_moments_are_averaged_quadratic_forms(run):
    matrix, starts, result = run
    units = starts / np.linalg.norm(starts, axis=1, keepdims=True)
    for order in range(5):
        exact = np.mean([u @ np.linalg.matrix_power(matrix, order) @ u for u in units])
        assert cw.spectral_moments(result, [order])[0] == pytest.approx(exact, abs=1e-12)
    assert cw.spectral_moments(result, 2).shape == (3,)


def test_trace_estimate_is_dim_times_the_mean_rayleigh_quotient(run):
    matrix, starts, result = run
    units = starts / np.linalg.norm(starts, axis=1, keepdims=True)
    expected = 250 * np.mean(np.einsum("ij,jk,ik->i", units, matrix, units))
    assert cw.trace_estimate(result) == pytest.approx(expected, abs=1e-10)


def test_trace_estimate_converges_to_the_trace():
    matrix = cw.synthetic.with_spectrum(np.linspace(1.0, 3.0, 200), seed=0)
    result = cw.lanczos(matrix, steps=3, num_vectors=400, seed=1)
    assert cw.trace_estimate(result) == pytest.approx(400.0, rel=0.02)


def test_smooth_density_integrates_to_one_and_has_the_stem_mean(run):
    _, _, result = run
    nodes, _ = cw.stem_density(result)
    sigma = default_sigma(nodes, result.steps)
    grid, density = cw.smooth_density(result, grid=np.linspace(nodes[0] - 9 * sigma, nodes[-1] + 9 * sigma, 8000))
    assert scipy.integrate.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-9)
    default_grid, default_density = cw.smooth_density(result)
    assert default_grid.shape == (512,) and default_grid[0] == pytest.approx(nodes[0] - 3 * sigma)
    np.testing.assert_allclose(default_density, np.interp(default_grid, grid, density), rtol=1e-3)
    mean = scipy.integrate.trapezoid(grid * density, grid)
    assert mean == pytest.approx(cw.spectral_moments(result, [1])[0], abs=1e-6)


def test_smooth_density_is_the_stated_gaussian_mixture():
    grid, density = cw.smooth_density(([0.0, 2.0], [0.25, 0.75]), grid=[0.0, 1.0], sigma=0.5)
    expected = 0.25 * scipy.stats.norm.pdf([0.0, 1.0], 0.0, 0.5) + 0.75 * scipy.stats.norm.pdf([0.0, 1.0], 2.0, 0.5)
    np.testing.assert_allclose(density, expected)
    assert default_sigma(np.array([-1.0, 3.0]), steps=8) == 0.5
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        cw.smooth_density(([0.0], [1.0]), sigma=0.0)
    with pytest.raises(ValueError, match="same length"):
        cw.stem_density(([0.0, 1.0], [1.0]))


def test_wasserstein1_closed_form():
    # Moving mass 1/2 from 0 to 1 and keeping 1/2 at 1: distance 1/2.
    assert cw.wasserstein1(([0.0, 1.0], [0.5, 0.5]), np.array([1.0, 1.0])) == pytest.approx(0.5)


def test_wasserstein1_equals_the_quantile_integral():
    # W1 of two measures on the line is also the integral over p in (0, 1) of |F^-1(p) - G^-1(p)|:
    # with the reference's n equal masses, exact on a grid of quantile levels fine enough.
    rng = np.random.default_rng(4)
    nodes, weights = rng.normal(size=7), rng.uniform(0.1, 1.0, size=7)
    reference = rng.normal(0.3, 1.5, size=5)
    levels = (np.arange(200_000) + 0.5) / 200_000
    order = np.argsort(nodes)
    inverse_f = nodes[order][np.searchsorted(np.cumsum(weights[order]) / weights.sum(), levels)]
    inverse_g = np.sort(reference)[np.searchsorted(np.arange(1, 6) / 5, levels)]
    expected = np.mean(np.abs(inverse_f - inverse_g))
    assert cw.wasserstein1((nodes, weights), reference) == pytest.approx(expected, rel=1e-4)


def test_lanczos_stem_is_close_to_the_semicircle():
    matrix = cw.synthetic.wigner(1500, seed=0)
    result = cw.lanczos(matrix, steps=30, seed=0)
    eigenvalues = np.linalg.eigvalsh(matrix)
    assert cw.wasserstein1(result, eigenvalues) < 0.1
    diagonal = cw.synthetic.diagonal_approximation(matrix)
    assert cw.wasserstein1((diagonal, np.full(1500, 1 / 1500)), eigenvalues) > 0.5
