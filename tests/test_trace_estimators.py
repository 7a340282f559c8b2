"""Trace estimators with standard errors: Hutchinson, Hutch++ and XTrace against exact traces.

References: the trace of matrices built from known eigenvalues; the dense
Hessian of a small network; the rates at which 95% intervals cover the exact
trace over 200 seeded runs.
"""

import math

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets.progress import Cancelled

RUNS = 200


def matrix_with(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    """``U diag(eigenvalues) U^T`` for a random orthogonal ``U``."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (basis * eigenvalues) @ basis.T


DECAYING = 1.0 / np.arange(1, 121) ** 1.5
INDEFINITE = np.random.default_rng(3).standard_normal(120) + 0.3


def runs(matrix: np.ndarray, method: str, products: int, count: int = RUNS):
    return [cw.estimate_trace(matrix, method, max_products=products, seed=seed, check_symmetric=False)
            for seed in range(count)]


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
@pytest.mark.parametrize("spectrum", [DECAYING, INDEFINITE], ids=["decaying", "indefinite"])
def test_95_percent_intervals_cover_the_exact_trace_at_their_rate(method, spectrum):
    """Hutchinson and Hutch++ at the nominal rate; XTrace's jackknife error is conservative (at least nominal)."""
    matrix, exact = matrix_with(spectrum), float(spectrum.sum())
    estimates = runs(matrix, method, 30)
    covered = np.mean([low <= exact <= high for low, high in (e.interval(0.95) for e in estimates)])
    assert 0.90 <= covered <= (1.0 if method == "xtrace" else 0.99)
    errors = np.array([e.value - exact for e in estimates])
    typical = np.sqrt(np.mean([e.standard_error**2 for e in estimates]))
    assert 0.7 < typical / np.sqrt(np.mean(errors**2)) < (3.0 if method == "xtrace" else 1.4)


def test_hutch_plus_plus_and_xtrace_beat_hutchinson_at_equal_products_on_a_decaying_spectrum():
    matrix, exact = matrix_with(DECAYING), float(DECAYING.sum())
    error = {method: np.sqrt(np.mean([(e.value - exact) ** 2 for e in runs(matrix, method, 30, count=100)]))
             for method in ("hutchinson", "hutch++", "xtrace")}
    assert error["hutch++"] < error["hutchinson"] / 3
    assert error["xtrace"] < error["hutchinson"] / 3


@pytest.mark.parametrize("method", ["hutch++", "xtrace"])
def test_a_sketch_wider_than_the_rank_gives_the_trace_exactly(method):
    spectrum = np.r_[np.array([5.0, 3.0, 2.0, 1.0, 0.5]), np.zeros(45)]
    estimate = cw.estimate_trace(matrix_with(spectrum), method, max_products=30, check_symmetric=False)
    assert estimate.value == pytest.approx(spectrum.sum(), rel=1e-10)
    assert estimate.standard_error <= 1e-10


def test_hutchinson_samples_are_the_quadratic_forms_of_rademacher_probes():
    """Hutchinson with Rademacher probes on a diagonal matrix is exact: w^T D w = tr(D) for w in {-1, 1}^n."""
    diagonal = np.diag(np.arange(1.0, 11.0))
    estimate = cw.estimate_trace(diagonal, "hutchinson", max_products=5)
    np.testing.assert_allclose(estimate.samples, 55.0, rtol=1e-14)
    assert estimate.products == 5 and estimate.standard_error == 0.0


def test_hutch_plus_plus_on_a_network_hessian_with_a_full_sketch_equals_the_dense_trace():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    data = [(torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,)))]
    hessian = cw.Hessian(model, torch.nn.CrossEntropyLoss(), data)
    exact = float(torch.trace(hessian @ torch.eye(hessian.dim, dtype=torch.float64)))
    estimate = cw.estimate_trace(hessian, max_products=3 * hessian.dim)
    assert estimate.value == pytest.approx(exact, rel=1e-10)


def test_float32_operators_give_float32_accuracy():
    matrix = torch.tensor(matrix_with(DECAYING[:40]), dtype=torch.float32)
    estimate = cw.estimate_trace(matrix, max_products=120, check_symmetric=False)
    assert estimate.value == pytest.approx(DECAYING[:40].sum(), rel=1e-5)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++", "xtrace"])
def test_tol_stops_once_the_standard_error_is_small_enough(method):
    matrix, exact = matrix_with(DECAYING), float(DECAYING.sum())
    tol = 2e-2 if method == "hutchinson" else 2e-3
    estimate = cw.estimate_trace(matrix, method, max_products=2000, tol=tol, seed=1, check_symmetric=False)
    assert estimate.converged and estimate.standard_error <= tol * abs(estimate.value)
    assert estimate.products < 2000 and len(estimate.samples) >= 8
    assert abs(estimate.value - exact) < 4 * estimate.standard_error


def test_a_budget_too_small_for_tol_warns_and_returns_the_estimate_unconverged():
    matrix = matrix_with(INDEFINITE)
    with pytest.warns(RuntimeWarning, match=r"still above tol \* \|trace\|.*max_products=40"):
        estimate = cw.estimate_trace(matrix, "hutchinson", max_products=40, tol=1e-4, check_symmetric=False)
    assert not estimate.converged and estimate.products == 40 and math.isfinite(estimate.standard_error)


def test_progress_counts_products_and_cancel_carries_the_last_estimate():
    events = []
    estimate = cw.estimate_trace(matrix_with(DECAYING), "hutchinson", max_products=20, block_size=8,
                                 progress=events.append, check_symmetric=False)
    assert [event.step for event in events] == [8, 16, 20] and events[-1].total == 20
    assert estimate.products == 20

    class AfterTwoEvents:
        calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls > 2

    with pytest.raises(Cancelled) as cancelled:
        cw.estimate_trace(matrix_with(DECAYING), "hutchinson", max_products=40, tol=1e-9, block_size=8,
                          cancel=AfterTwoEvents(), check_symmetric=False)
    assert cancelled.value.result.products == 16


def test_str_and_interval():
    estimate = cw.estimate_trace(matrix_with(DECAYING), max_products=60, check_symmetric=False)
    low, high = estimate.interval(0.95)
    assert low < estimate.value < high
    assert " ± " in str(estimate) and "hutch++, 60 products" in str(estimate)


@pytest.mark.parametrize("arguments, error, message", [
    (dict(tol=0.0), ValueError, r"tol must be"),
    (dict(tol=-1e-3), ValueError, r"tol must be"),
    (dict(method="xtrace", max_products=3), ValueError, r"max_products must be at least 4 for method='xtrace'; got 3"),
    (dict(max_products=0), ValueError, r"max_products must be an int >= 1"),
    (dict(method="girard"), ValueError, r"method must be one of"),
    (dict(distribution="uniform"), ValueError, r"distribution must be one of"),
    (dict(block_size=0), ValueError, r"block_size must be an int >= 1"),
])
def test_bad_input_names_the_argument(arguments, error, message):
    with pytest.raises(error, match=message):
        cw.estimate_trace(np.eye(5), **arguments)
