"""Spectral estimates with standard errors over start vectors, and Lanczos stopped at a tolerance.

References: the quadratic forms ``v^T A^j v`` of the start vectors themselves
(Gauss quadrature is exact for ``j < 2m``), the exact trace of matrices of
known spectrum, and the coverage of 95% intervals over 200 seeds.
"""

import math

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets.linalg.estimates import Estimate, format_with_error


def matrix_with(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (basis * eigenvalues) @ basis.T


SPECTRUM = np.r_[np.linspace(-1.0, 1.0, 95), [2.0, 3.0, 4.0, 5.0, 8.0]]
MATRIX = matrix_with(SPECTRUM)


def test_each_start_vector_gives_its_own_quadratic_forms():
    starts = np.random.default_rng(4).standard_normal((5, 100))
    result = cw.lanczos(MATRIX, 6, start=starts, check_symmetric=False)
    units = starts / np.linalg.norm(starts, axis=1, keepdims=True)
    estimates = cw.spectral_estimates(result)
    forms = {order: np.einsum("ij,ij->i", units, units @ np.linalg.matrix_power(MATRIX, order)) for order in (1, 2, 3)}
    np.testing.assert_allclose(estimates["trace"].samples, 100 * forms[1], rtol=1e-12, atol=1e-12)
    for order in (1, 2, 3):
        np.testing.assert_allclose(estimates[f"moment_{order}"].samples, forms[order], rtol=1e-11, atol=1e-13)
    mass = [result.weights(run)[result.nodes(run) < 0].sum() for run in range(5)]
    np.testing.assert_allclose(estimates["negative_mass"].samples, mass, rtol=1e-15)
    trace = estimates["trace"]
    assert trace.value == pytest.approx(cw.trace_estimate(result), rel=1e-13)
    assert trace.standard_error == pytest.approx(np.std(100 * forms[1], ddof=1) / math.sqrt(5), rel=1e-10)


def test_the_trace_interval_over_start_vectors_covers_the_exact_trace_at_its_rate():
    covered = 0
    for seed in range(200):
        trace = cw.spectral_estimates(cw.lanczos(MATRIX, 4, num_vectors=10, seed=seed, check_symmetric=False))["trace"]
        low, high = trace.interval(0.95)
        covered += low <= SPECTRUM.sum() <= high
    assert 0.90 <= covered / 200 <= 0.99


def test_one_start_vector_has_no_error_bar_and_says_so():
    spectrum = cw.results.Spectrum.from_lanczos(cw.lanczos(MATRIX, 5, check_symmetric=False))
    summary = spectrum.summary()
    assert math.isnan(summary["trace_estimate_se"]) and math.isnan(summary["negative_mass_se"])
    assert "from 1 start vector: no error bars" in spectrum.describe()
    several = cw.results.Spectrum.from_lanczos(cw.lanczos(MATRIX, 5, num_vectors=4, check_symmetric=False))
    text = several.describe()
    trace = several.estimates()["trace"]
    assert f"trace_estimate {format_with_error(trace.value, trace.standard_error)}" in text
    assert "over 4 start vectors" in text and " ± " in text


def test_the_density_spread_is_the_spread_of_each_vectors_density():
    result = cw.lanczos(MATRIX, 8, num_vectors=6, seed=2, check_symmetric=False)
    grid, density, error = cw.density_spread(result, sigma=0.1, num_points=64)
    pooled_grid, pooled = cw.smooth_density(result, sigma=0.1, num_points=64)
    np.testing.assert_array_equal(grid, pooled_grid)
    np.testing.assert_allclose(density, pooled, rtol=1e-12, atol=1e-15)
    runs = np.array([cw.smooth_density((result.nodes(run), result.weights(run)), grid=grid, sigma=0.1)[1]
                     for run in range(6)])
    np.testing.assert_allclose(density, runs.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(error, runs.std(axis=0, ddof=1) / np.sqrt(6), rtol=1e-10, atol=1e-15)
    single = cw.lanczos(MATRIX, 8, check_symmetric=False)
    assert np.isnan(cw.results.Spectrum.from_lanczos(single).smooth_spread(sigma=0.1)[2]).all()


def test_format_with_error_keeps_the_digits_the_error_leaves():
    assert format_with_error(13.7257, 0.0512) == "13.726 ± 0.051"
    assert format_with_error(1234.5, 56.7) == "1234 ± 57"
    assert format_with_error(2.5, math.nan) == "2.5 (one sample: no error bar)"
    estimate = Estimate.of(np.array([1.0, 2.0, 3.0]))
    assert (estimate.value, estimate.standard_error, estimate.count) == (2.0, pytest.approx(1 / math.sqrt(3)), 3)


def test_lanczos_stops_each_run_once_its_top_ritz_values_reach_tol():
    result = cw.lanczos(MATRIX, 60, num_vectors=2, seed=1, tol=1e-8, tol_pairs=2, check_symmetric=False)
    assert np.all(result.num_steps < 60)
    for run in range(2):
        nodes = result.nodes(run)
        np.testing.assert_allclose(nodes[-2:], [5.0, 8.0], rtol=1e-8)
        residuals = result.residual_estimates[run, : result.num_steps[run]]
        order = np.argsort(nodes)
        assert np.all(residuals[order][-2:] <= 1e-8 * np.abs(nodes[order][-2:]))
    full = cw.lanczos(MATRIX, 60, seed=1, check_symmetric=False)
    assert full.num_steps[0] == 60


def test_spectrum_records_tol_and_stops():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    data = [(torch.randn(30, 4, dtype=torch.float64), torch.randint(0, 3, (30,)))]
    spectrum = cw.spectrum(model, data, steps=40, num_vectors=2, tol=1e-6)
    assert spectrum.meta["tol"] == 1e-6 and spectrum.lanczos.num_steps.max() < 40
    dense = (cw.Hessian(model, torch.nn.CrossEntropyLoss(), data) @ torch.eye(spectrum.dim, dtype=torch.float64))
    top = np.linalg.eigvalsh(dense.numpy()).max()
    assert spectrum.summary()["lambda_max"] == pytest.approx(top, rel=1e-6)


@pytest.mark.parametrize("arguments, message", [
    (dict(tol=0.0), r"tol must be"),
    (dict(tol=1e-3, tol_pairs=0), r"tol_pairs must be an int >= 1"),
])
def test_bad_tolerances_name_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        cw.lanczos(MATRIX, 5, check_symmetric=False, **arguments)


def test_hutchinson_diagonal_standard_errors_are_the_probes_spread_and_cover_the_diagonal():
    from curvwidgets.curvature import hutchinson_diagonal

    matrix = torch.tensor(MATRIX)
    estimate, error = hutchinson_diagonal(matrix, num_samples=40, seed=3, block_size=16, with_error=True)
    generator = torch.Generator().manual_seed(3)
    probes = torch.cat([torch.randint(0, 2, (100, count), generator=generator) * 2 - 1 for count in (16, 16, 8)],
                       dim=1).double()
    samples = probes * (matrix @ probes)
    np.testing.assert_allclose(estimate, samples.mean(1), rtol=1e-12)
    np.testing.assert_allclose(error, samples.std(1) / math.sqrt(40), rtol=1e-10)
    assert torch.equal(estimate, hutchinson_diagonal(matrix, num_samples=40, seed=3, block_size=16))
    covered = []
    for seed in range(40):
        estimate, error = hutchinson_diagonal(matrix, num_samples=30, seed=seed, with_error=True)
        covered.append(((estimate - matrix.diagonal()).abs() <= 2.045 * error).double().mean().item())
    assert 0.90 <= np.mean(covered) <= 0.99


def test_monte_carlo_ggn_diagonal_standard_errors_over_draws():
    from curvwidgets.curvature import ggn_diagonal, mc_ggn_diagonal

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    generator = torch.Generator().manual_seed(1)
    data = [(torch.randn(n, 4, generator=generator, dtype=torch.float64), torch.randint(0, 3, (n,), generator=generator))
            for n in (7, 5)]
    ggn = cw.GGN(model, torch.nn.CrossEntropyLoss(), data)
    estimate, error = mc_ggn_diagonal(ggn, num_mc=8, seed=2, with_error=True)
    np.testing.assert_allclose(estimate, mc_ggn_diagonal(ggn, num_mc=8, seed=2), rtol=1e-12, atol=1e-15)
    exact = ggn_diagonal(ggn)
    scores = []
    for seed in range(30):
        estimate, error = mc_ggn_diagonal(ggn, num_mc=8, seed=seed, with_error=True)
        scores.append(((estimate - exact).abs() <= 2.365 * error).double().mean().item())  # t quantile, 7 degrees
    assert 0.85 <= np.mean(scores) <= 0.99
    assert torch.isnan(mc_ggn_diagonal(ggn, num_mc=1, with_error=True)[1]).all()
