"""Extreme eigenpairs to a tolerance (thick-restart Lanczos) against dense eigendecompositions."""

import numpy as np
import pytest
import scipy.sparse
import torch

import curvwidgets as cw
from curvwidgets.progress import Cancelled


def matrix_with(eigenvalues: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (basis * eigenvalues) @ basis.T


SPECTRUM = np.sort(np.r_[np.array([10.0, 9.5, 9.4, -4.0, -3.9]), np.random.default_rng(1).uniform(-1, 3, 195)])
MATRIX = matrix_with(SPECTRUM)
EXPECTED = {"largest": SPECTRUM[-3:], "smallest": SPECTRUM[:3], "both": np.r_[SPECTRUM[:1], SPECTRUM[-2:]]}


def assert_pairs_of(pairs, matrix: np.ndarray, expected: np.ndarray, tol: float, dtype=np.float64):
    assert pairs.converged
    np.testing.assert_array_less(np.abs(pairs.values - expected), tol * np.abs(expected) + 1e-12)
    vectors = pairs.vectors.double().cpu().numpy()
    true_residuals = np.linalg.norm(matrix @ vectors - vectors * pairs.values, axis=0)
    slack = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(pairs.residuals, true_residuals, rtol=1e-3, atol=slack * np.abs(expected).max())
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(len(expected)), atol=slack)


@pytest.mark.parametrize("which", ["largest", "smallest", "both"])
@pytest.mark.parametrize("tol", [1e-3, 1e-8])
def test_values_match_eigh_to_the_tolerance_asked(which, tol):
    pairs = cw.eigenpairs(MATRIX, 3, which, tol=tol, check_symmetric=False)
    assert_pairs_of(pairs, MATRIX, EXPECTED[which], tol)
    assert np.all(pairs.residuals <= tol * np.abs(pairs.values))


def test_a_small_basis_restarts_and_still_converges():
    pairs = cw.eigenpairs(MATRIX, 3, "smallest", tol=1e-8, max_basis=12, max_products=3000, check_symmetric=False)
    assert pairs.restarts > 5
    assert_pairs_of(pairs, MATRIX, EXPECTED["smallest"], 1e-8)


def test_sparse_callable_and_float32_operators():
    diagonal = np.r_[np.linspace(0.0, 1.0, 297), [3.0, 4.0, 5.0]]
    sparse = scipy.sparse.diags(diagonal).tocsr()
    assert_pairs_of(cw.eigenpairs(sparse, 3, tol=1e-10), np.diag(diagonal), np.array([3.0, 4.0, 5.0]), 1e-10)
    weights = torch.tensor(diagonal)
    callable_op = cw.as_operator(lambda v: weights.to(v.dtype) * v, dim=300, dtype=torch.float64)
    assert_pairs_of(cw.eigenpairs(callable_op, 3, tol=1e-10), np.diag(diagonal), np.array([3.0, 4.0, 5.0]), 1e-10)
    single = torch.tensor(MATRIX, dtype=torch.float32)
    pairs = cw.eigenpairs(single, 3, tol=1e-5, check_symmetric=False)
    assert pairs.vectors.dtype == torch.float32
    assert_pairs_of(pairs, MATRIX, EXPECTED["largest"], 1e-5, np.float32)


@pytest.mark.parametrize("which", ["largest", "both"])
def test_network_hessian_against_its_dense_eigendecomposition(which):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    data = [(torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,)))]
    hessian = cw.Hessian(model, torch.nn.CrossEntropyLoss(), data)
    dense = (hessian @ torch.eye(hessian.dim, dtype=torch.float64)).numpy()
    exact = np.linalg.eigvalsh((dense + dense.T) / 2)
    expected = exact[-3:] if which == "largest" else np.r_[exact[:1], exact[-2:]]
    assert_pairs_of(cw.eigenpairs(hessian, 3, which, tol=1e-8), dense, expected, 1e-8)


def test_float32_network_ggn_against_its_float64_dense_eigendecomposition():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    data = [(torch.randn(20, 4), torch.randint(0, 3, (20,)))]
    ggn = cw.GGN(model, torch.nn.CrossEntropyLoss(), data)
    dense = (cw.GGN(model, torch.nn.CrossEntropyLoss(), data, dtype=torch.float64)
             @ torch.eye(ggn.dim, dtype=torch.float64)).numpy()
    pairs = cw.eigenpairs(ggn, 3, tol=1e-4)
    assert pairs.vectors.dtype == torch.float32
    assert_pairs_of(pairs, dense, np.linalg.eigvalsh((dense + dense.T) / 2)[-3:], 1e-4, np.float32)


def test_k_equal_to_the_dimension_gives_every_eigenvalue():
    small = matrix_with(np.arange(1.0, 9.0))
    pairs = cw.eigenpairs(small, 8, tol=1e-12, check_symmetric=False)
    np.testing.assert_allclose(pairs.values, np.arange(1.0, 9.0), rtol=1e-12)


def test_an_invariant_start_goes_on_from_a_fresh_direction():
    """From an eigenvector the Krylov space is one-dimensional; the other wanted pairs still come."""
    diagonal = np.diag(np.arange(1.0, 51.0))
    start = np.zeros(50)
    start[10] = 1.0
    pairs = cw.eigenpairs(diagonal, 2, tol=1e-10, start=start)
    np.testing.assert_allclose(pairs.values, [49.0, 50.0], rtol=1e-10)


def test_a_budget_too_small_warns_and_returns_the_pairs_with_their_residuals():
    with pytest.warns(RuntimeWarning, match=r"max_products=15 products were spent before the 3 Ritz pairs converged"):
        pairs = cw.eigenpairs(MATRIX, 3, "smallest", tol=1e-10, max_products=15, check_symmetric=False)
    assert not pairs.converged and pairs.products == 15
    vectors = pairs.vectors.numpy()
    np.testing.assert_allclose(pairs.residuals, np.linalg.norm(MATRIX @ vectors - vectors * pairs.values, axis=0),
                               rtol=1e-6)


def test_progress_and_cancel():
    events = []
    cw.eigenpairs(MATRIX, 1, tol=1e-6, progress=events.append, check_symmetric=False)
    assert [event.step for event in events] == list(range(1, len(events) + 1))
    assert events[-1].partial.values.shape == (1,)

    class AfterFive:
        calls = 0

        def is_set(self):
            self.calls += 1
            return self.calls >= 5

    with pytest.raises(Cancelled) as cancelled:
        cw.eigenpairs(MATRIX, 2, tol=1e-12, cancel=AfterFive(), check_symmetric=False)
    assert cancelled.value.result.products == 5


@pytest.mark.parametrize("arguments, message", [
    (dict(tol=0.0), r"tol must be"),
    (dict(tol=-1.0), r"tol must be"),
    (dict(k=201), r"k must be at most the operator's dimension 200; got 201"),
    (dict(k=0), r"k must be an int >= 1"),
    (dict(which="LM"), r"which must be one of"),
    (dict(k=5, max_basis=6), r"max_basis must be in \[7, 200\]"),
    (dict(max_products=0), r"max_products must be an int >= 1"),
])
def test_bad_input_names_the_argument(arguments, message):
    with pytest.raises(ValueError, match=message):
        cw.eigenpairs(MATRIX, **{"check_symmetric": False, **arguments})
