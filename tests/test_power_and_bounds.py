"""Power iteration, and the bounds of Theorems 1, 2 and Table 1 against closed forms and real runs."""

import threading

import numpy as np
import pytest

import curvwidgets as cw
from curvwidgets.linalg import bounds


def test_power_iteration_history_is_the_rayleigh_quotient_of_powers(separated):
    matrix, eigenvalues = separated
    start = np.random.default_rng(1).standard_normal(400)
    result = cw.power_iteration(matrix, steps=8, start=start)
    vector = start.copy()
    for k in range(8):
        unit = vector / np.linalg.norm(vector)
        assert result.history[k] == pytest.approx(unit @ matrix @ unit, rel=1e-12)
        vector = matrix @ vector
    converged = cw.power_iteration(matrix, steps=60, seed=0)
    assert converged.eigenvalue == pytest.approx(3.0, abs=1e-12)
    assert converged.residual < 1e-6
    np.testing.assert_allclose(matrix @ converged.eigenvector.numpy(), 3.0 * converged.eigenvector.numpy(), atol=1e-6)


def test_power_iteration_cancel_and_bad_steps():
    stop = threading.Event()
    stop.set()
    with pytest.raises(cw.Cancelled) as caught:
        cw.power_iteration(np.diag([1.0, 2.0]), steps=10, cancel=stop)
    assert caught.value.step == 1 and caught.value.result.history.shape == (1,)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        cw.power_iteration(np.eye(2), steps=0)


def test_power_iteration_stops_on_a_null_vector():
    result = cw.power_iteration(np.diag([0.0, 1.0]), steps=5, start=np.array([1.0, 0.0]))
    assert result.history.tolist() == [0.0] and result.residual == 0.0


@pytest.mark.parametrize("degree", range(8))
@pytest.mark.parametrize("x", [-2.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.2, 3.0])
def test_chebyshev_matches_numpy(degree, x):
    coefficients = np.zeros(degree + 1)
    coefficients[-1] = 1.0
    assert bounds.chebyshev(degree, x) == pytest.approx(np.polynomial.chebyshev.chebval(x, coefficients), rel=1e-12, abs=1e-12)


def test_table_1_reproduces_the_printed_values():
    table = cw.bounds_table()
    # Golub & Van Loan, Table 10.1.1, as printed (garbled) in the paper: L / R for gaps 1.5, 1.1, 1.01.
    printed_lanczos = [[1.1e-4, 2.0e-10, 3.9e-16, 7.4e-22], [2.7e-2, 5.5e-5, 1.1e-7, 2.1e-10], [5.6e-1, 1.0e-1, 1.5e-2, 2.0e-3]]
    printed_power = [[3.9e-2, 6.8e-4, 1.2e-5, 2.0e-7], [4.7e-1, 1.8e-1, 6.9e-2, 2.7e-2], [9.2e-1, 8.4e-1, 7.6e-1, 6.9e-1]]
    np.testing.assert_allclose(table.lanczos, printed_lanczos, rtol=0.06)
    np.testing.assert_allclose(table.power, printed_power, rtol=0.06)
    assert np.all(table.ratio < 1)
    assert "1.1e-04 / 3.9e-02" in table.to_text()


def test_closed_forms_of_the_bound_terms():
    # gap 1.5: rho = 0.5, c_4(2) = 97; power: (2/3)^8.
    assert bounds.lanczos_bound_term(1.5, 1.0, 0.0, 5) == pytest.approx(1 / 97**2, rel=1e-13)
    assert bounds.power_bound_term(1.5, 1.0, 5) == pytest.approx((2 / 3) ** 8, rel=1e-13)


@pytest.mark.parametrize("gap", [1.5, 1.1, 1.01])
@pytest.mark.parametrize("steps", [3, 5, 10, 15])
def test_theorems_1_and_2_hold_on_measured_runs(gap, steps):
    eigenvalues = np.concatenate([[gap], np.linspace(0.0, 1.0, 299)])
    matrix = cw.synthetic.with_spectrum(eigenvalues, seed=2)
    top = np.linalg.eigh(matrix)[1][:, -1]
    start = np.random.default_rng(steps).standard_normal(300)
    cos_angle = abs(start @ top) / np.linalg.norm(start)
    ritz = cw.lanczos(matrix, steps=steps, start=start).ritz_values[0, -1]
    power = cw.power_iteration(matrix, steps=steps, start=start).history[-1]
    assert bounds.lanczos_lower_bound(eigenvalues, cos_angle, steps) - 1e-12 <= ritz <= gap + 1e-12
    assert bounds.power_lower_bound(eigenvalues, cos_angle, steps) - 1e-12 <= power <= gap + 1e-12
    assert ritz >= power - 1e-12  # Lanczos maximises the Rayleigh quotient over the whole Krylov space


def test_bounds_reject_bad_input():
    with pytest.raises(ValueError, match="lambda_1 > lambda_2 > lambda_P"):
        bounds.lanczos_bound_term(1.0, 1.0, 0.0, 5)
    with pytest.raises(ValueError, match="cos_angle must be in"):
        bounds.lanczos_lower_bound([2.0, 1.0, 0.0], 0.0, 5)
    with pytest.raises(ValueError, match="degree must be"):
        bounds.chebyshev(-1, 2.0)
