"""The operator protocol, its adapters and the symmetry check."""

import re

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
import torch

import curvwidgets as cw
from curvwidgets.linalg import operators
from curvwidgets.linalg.operators import resolve_dtype


def test_dense_operator_products_in_numpy_and_torch():
    matrix = cw.synthetic.wigner(20, seed=0)
    op = cw.as_operator(matrix)
    assert (op.dim, op.dtype, op.device.type, op.shape) == (20, torch.float64, "cpu", (20, 20))
    vector, block = np.arange(20.0), np.ones((20, 3))
    np.testing.assert_allclose(op @ vector, matrix @ vector)
    np.testing.assert_allclose(op @ block, matrix @ block)
    assert isinstance(op @ torch.from_numpy(vector), torch.Tensor)
    np.testing.assert_allclose(op.to_scipy() @ vector, matrix @ vector)
    assert cw.as_operator(op) is op
    with pytest.raises(ValueError, match=r"operand must have shape \(20,\)"):
        op @ np.ones(5)


def test_dtype_and_device_conversion_of_dense_input():
    op = cw.as_operator(np.eye(3), dtype="float32")
    assert op.dtype == torch.float32 and op.matrix.dtype == torch.float32
    assert resolve_dtype(np.float64) == torch.float64 and resolve_dtype("single") == torch.float32


def test_callable_default_matmat_loops_over_columns():
    calls = []

    def double(vector):
        calls.append(vector.shape)
        return 2 * vector

    op = cw.as_operator(double, dim=4, dtype=torch.float32)
    assert calls == [(4,), (4,)]  # the symmetry probe: two products
    calls.clear()
    block = torch.arange(8.0).reshape(4, 2)
    torch.testing.assert_close(op.matmat(block), 2 * block)
    assert calls == [(4,), (4,)]
    returns_numpy = cw.as_operator(lambda v: v.numpy() * 3, dim=2)
    torch.testing.assert_close(returns_numpy.matvec(torch.ones(2, dtype=torch.float64)), torch.full((2,), 3.0, dtype=torch.float64))


def test_scipy_sparse_and_linear_operators():
    sparse = scipy.sparse.diags([1.0, 2.0, 3.0]).tocsr()
    op = cw.as_operator(sparse)
    torch.testing.assert_close(op.matvec(torch.ones(3, dtype=torch.float64)), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(op.matmat(torch.eye(3, dtype=torch.float64)), torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)))


def test_bad_operators():
    with pytest.raises(ValueError, match=r"dim must be given \(an int >= 1\)"):
        cw.as_operator(lambda v: v)
    with pytest.raises(TypeError, match="operator must be a numpy array"):
        cw.as_operator("matrix")
    with pytest.raises(ValueError, match="square 2-D"):
        cw.as_operator(np.ones(3))
    nearly = np.eye(3) + 1e-12 * np.triu(np.ones((3, 3)), 1)
    assert cw.as_operator(nearly).dim == 3  # rounding-level asymmetry is accepted
    assert cw.as_operator(np.triu(np.ones((3, 3))), check_symmetric=False).dim == 3


def _probe_vectors(dim: int) -> np.ndarray:
    """The probe's two unit vectors, shape ``(2, dim)``, drawn as documented (seeded CPU float64 Gaussians)."""
    generator = torch.Generator().manual_seed(operators.PROBE_SEED)
    vectors = torch.randn(2, dim, generator=generator, dtype=torch.float64).numpy()
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _mildly_non_symmetric(dim: int, asymmetry: float) -> tuple:
    """``A = S + asymmetry * K`` with ``S`` symmetric, ``K`` skew, ``||K||_F = ||S||_F``; returns ``(A, K)``."""
    symmetric = cw.synthetic.wigner(dim, seed=0)
    gaussian = np.random.default_rng(1).standard_normal((dim, dim))
    skew = gaussian - gaussian.T
    skew *= np.linalg.norm(symmetric) / np.linalg.norm(skew)
    return symmetric + asymmetry * skew, asymmetry * skew


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_probe_defect_is_the_stated_closed_form_and_rejects_a_mildly_non_symmetric_operator(dtype):
    matrix = _mildly_non_symmetric(60, 0.01)[0].astype(dtype)
    exact, (u, v) = matrix.astype(np.float64), _probe_vectors(60)
    # u^T A v - v^T A u = u^T (A - A^T) v, in float64 for the matrix as stored
    expected = abs(u @ (exact - exact.T) @ v) / max(np.linalg.norm(exact @ u), np.linalg.norm(exact @ v))
    callable_op = cw.as_operator(lambda x: torch.from_numpy(matrix) @ x, dim=60, dtype=dtype, check_symmetric=False)
    scipy_op = cw.as_operator(scipy.sparse.linalg.aslinearoperator(matrix), check_symmetric=False)
    eps = float(np.finfo(dtype).eps)
    for op in (callable_op, scipy_op):
        assert op.symmetry_defect() == pytest.approx(expected, rel=1e-3 if dtype == np.float32 else 1e-12)
        assert op.symmetry_defect() > 5 * np.sqrt(eps)  # 1% asymmetry: past the tolerance sqrt(eps) in both dtypes
    with pytest.raises(ValueError, match=r"operator must be symmetric; its relative symmetry defect is .*check_symmetric=False"):
        cw.as_operator(lambda x: torch.from_numpy(matrix) @ x, dim=60, dtype=dtype)
    with pytest.raises(ValueError, match="operator must be symmetric"):
        cw.lanczos(scipy.sparse.linalg.aslinearoperator(matrix), steps=5)
    with pytest.raises(ValueError, match="operator must be symmetric"):
        cw.power_iteration(callable_op, steps=5)


@pytest.mark.parametrize("dim", [10, 500, 3000])
def test_probe_accepts_float32_symmetric_operators(dim):
    tensor = torch.from_numpy(cw.synthetic.wigner(dim, seed=2).astype(np.float32))
    callable_op = cw.as_operator(lambda x: tensor @ x, dim=dim, dtype=torch.float32)
    scipy_op = cw.as_operator(scipy.sparse.linalg.aslinearoperator(tensor.numpy()))
    for op in (callable_op, scipy_op):
        assert op.dtype == torch.float32 and op.symmetric  # passed, and marked so that it is not probed again
        assert op.symmetry_defect() < 10 * np.finfo(np.float32).eps  # far below sqrt(eps) = 3.5e-4


def test_sparse_check_is_exact():
    matrix, skew = _mildly_non_symmetric(40, 1e-3)
    sparse = scipy.sparse.csr_matrix(matrix)
    op = cw.as_operator(sparse, check_symmetric=False)
    exact = np.linalg.norm(matrix - matrix.T) / np.linalg.norm(matrix)
    assert op.symmetry_defect() == pytest.approx(exact, rel=1e-12)
    with pytest.raises(ValueError, match="operator must be symmetric"):
        cw.as_operator(sparse)
    assert cw.as_operator(scipy.sparse.csr_matrix(matrix - skew / 2 + skew.T / 2)).symmetric


def test_blocked_dense_check_equals_the_unblocked_norm(monkeypatch):
    matrix = torch.from_numpy(_mildly_non_symmetric(50, 1e-3)[0])
    exact = (torch.linalg.matrix_norm(matrix - matrix.T) / torch.linalg.matrix_norm(matrix)).item()
    for tile in (1024, 7, 1):  # one tile for the whole matrix, tiles of 7 (a ragged last one), single entries
        monkeypatch.setattr(operators, "SYMMETRY_TILE", tile)
        assert operators.DenseOperator(matrix).symmetry_defect() == pytest.approx(exact, rel=1e-13)
    assert operators.DenseOperator(torch.zeros(3, 3)).symmetry_defect() == 0.0


class CountingOperator(cw.LinearOperator):
    """``diag(1..dim)`` counting its products; ``symmetric`` as given."""

    def __init__(self, dim: int, symmetric: bool):
        self.dim, self.dtype, self.device, self.symmetric = dim, torch.float64, torch.device("cpu"), symmetric
        self.products = 0

    def matvec(self, vector):
        self.products += 1
        return torch.arange(1.0, self.dim + 1, dtype=torch.float64) * vector


def test_operators_symmetric_by_construction_skip_the_probe():
    from curvwidgets.curvature.operators import GGN, CurvatureOperator, Hessian

    assert CurvatureOperator.symmetric and Hessian.symmetric and GGN.symmetric
    trusted, user = CountingOperator(8, symmetric=True), CountingOperator(8, symmetric=False)
    for op in (trusted, user):
        result = cw.lanczos(op, steps=3)
        assert cw.as_operator(op) is op
    assert trusted.products == 3  # three Lanczos steps, no probe
    assert user.products == 3 + 2 + 2  # each of lanczos and as_operator probed the user's operator
    assert not user.symmetric  # a user's object is never marked
    np.testing.assert_array_less(result.nodes(0), 8 + 1e-12)


def test_a_wrapper_is_probed_once():
    calls = []

    def diagonal(vector):
        calls.append(1)
        return torch.arange(1.0, 7.0, dtype=torch.float64) * vector

    op = cw.as_operator(diagonal, dim=6)
    assert len(calls) == 2 and op.symmetric
    cw.lanczos(op, steps=4)
    assert len(calls) == 2 + 4
    unchecked = cw.as_operator(diagonal, dim=6, check_symmetric=False)
    assert len(calls) == 6 and not unchecked.symmetric
    cw.lanczos(unchecked, steps=4, check_symmetric=False)
    assert len(calls) == 6 + 4


class Duck:
    """An operator by its attributes only (no curvwidgets base class); ``matmat`` optional."""

    def __init__(self, matrix: torch.Tensor, with_matmat: bool):
        self.matrix, self.dim, self.dtype, self.device = matrix, matrix.shape[0], matrix.dtype, "cpu"
        self.block_calls = 0
        if with_matmat:
            self.matmat = self._matmat

    def matvec(self, vector):
        return self.matrix @ vector

    def _matmat(self, block):
        self.block_calls += 1
        return self.matrix @ block


@pytest.mark.parametrize("with_matmat", [False, True])
def test_an_object_with_dim_dtype_device_and_matvec_is_an_operator(with_matmat):
    matrix = cw.synthetic.wigner(30, seed=4)
    duck = Duck(torch.from_numpy(matrix), with_matmat)
    op = cw.as_operator(duck)
    assert isinstance(op, operators.ProtocolOperator) and (op.dim, op.dtype, op.device.type) == (30, torch.float64, "cpu")
    block = torch.from_numpy(np.random.default_rng(0).standard_normal((30, 3)))
    torch.testing.assert_close(op.matmat(block), torch.from_numpy(matrix) @ block)
    assert duck.block_calls == int(with_matmat)
    result = cw.lanczos(duck, steps=30, num_vectors=2)
    np.testing.assert_allclose(result.nodes(0), np.linalg.eigvalsh(matrix), atol=1e-10)


def test_a_trusted_duck_is_not_probed():
    duck = Duck(torch.from_numpy(np.triu(np.ones((4, 4)))), with_matmat=False)
    with pytest.raises(ValueError, match="operator must be symmetric"):
        cw.as_operator(duck)
    duck.symmetric = True  # the owner's word: trusted, as the package's curvature operators are
    assert cw.as_operator(duck).symmetric


@pytest.mark.parametrize("dim", [2.7, "10", True, 0, np.float64(3.0)])
def test_dim_must_be_an_int(dim):
    with pytest.raises(ValueError, match=rf"dim must be an int >= 1; got {re.escape(repr(dim))}"):
        cw.as_operator(lambda v: v, dim=dim)


def test_dim_is_checked_against_a_matrix_and_numpy_ints_are_accepted():
    assert cw.as_operator(lambda v: v, dim=np.int64(3)).dim == 3
    assert cw.as_operator(np.eye(3), dim=3).dim == 3
    with pytest.raises(ValueError, match=r"dim must be the operator's size 3; got 4"):
        cw.as_operator(np.eye(3), dim=4)
