"""The operator protocol and its adapters."""

import numpy as np
import pytest
import scipy.sparse
import torch

import curvwidgets as cw
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
