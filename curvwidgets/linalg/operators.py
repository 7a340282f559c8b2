"""One small protocol for symmetric linear operators, and adapters into it.

Every algorithm in :mod:`curvwidgets.linalg` talks to an operator through
:class:`LinearOperator`: its size ``dim``, its ``dtype`` and ``device``, and
products with torch tensors, ``matvec`` for one vector of shape ``(dim,)`` and
``matmat`` for a block of shape ``(dim, k)`` (columns are vectors, as in
scipy). :func:`as_operator` turns dense arrays, scipy operators and plain
callables into one.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import numpy as np
import scipy.sparse.linalg as sla
import torch

__all__ = ["LinearOperator", "DenseOperator", "CallableOperator", "ScipyOperator", "as_operator", "resolve_dtype"]

_FLOAT_DTYPES = {torch.float32: torch.float32, torch.float64: torch.float64}
_NAMES = {"float32": torch.float32, "float64": torch.float64, "single": torch.float32, "double": torch.float64}

DTypeLike = Union[torch.dtype, np.dtype, type, str]


def resolve_dtype(dtype: DTypeLike, argument: str = "dtype") -> torch.dtype:
    """Map a numpy, torch or string floating dtype to ``torch.float32`` or ``torch.float64``.

    Raises
    ------
    TypeError
        For any other dtype (integers, complex, half precision, unknown names).
    """
    if isinstance(dtype, torch.dtype):
        found = _FLOAT_DTYPES.get(dtype)
    elif isinstance(dtype, str):
        found = _NAMES.get(dtype)
    else:
        try:
            found = _NAMES.get(np.dtype(dtype).name)
        except TypeError:
            found = None
    if found is None:
        raise TypeError(f"{argument} must be float32 or float64 (numpy, torch or a name); got {dtype!r}")
    return found


class LinearOperator:
    """A symmetric linear operator acting on torch vectors.

    Subclasses set ``dim``, ``dtype`` and ``device`` and implement
    :meth:`matvec`; they override :meth:`matmat` when a block product is
    cheaper than one product per column.

    Attributes
    ----------
    dim : int
        Size ``P`` of the (square) operator.
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``; vectors passed in have it.
    device : torch.device
        Where products are computed; vectors passed in live there.
    """

    dim: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """Return ``A @ vector`` for ``vector`` of shape ``(dim,)``."""
        raise NotImplementedError

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        """Return ``A @ block`` for ``block`` of shape ``(dim, k)``.

        The default applies :meth:`matvec` to each column.
        """
        return torch.stack([self.matvec(column) for column in block.T], dim=1)

    def __matmul__(self, other: Any) -> Any:
        """``A @ x`` for a vector or block given as a torch tensor or numpy array.

        A numpy input gives a numpy output; a tensor is moved to the operator's
        device and dtype.
        """
        as_numpy = isinstance(other, np.ndarray)
        tensor = torch.as_tensor(other).to(device=self.device, dtype=self.dtype)
        if tensor.ndim not in (1, 2) or tensor.shape[0] != self.dim:
            raise ValueError(f"operand must have shape ({self.dim},) or ({self.dim}, k); got {tuple(tensor.shape)}")
        result = self.matvec(tensor) if tensor.ndim == 1 else self.matmat(tensor)
        return result.detach().cpu().numpy() if as_numpy else result

    @property
    def shape(self) -> tuple[int, int]:
        """``(dim, dim)``."""
        return (self.dim, self.dim)

    def to_scipy(self) -> sla.LinearOperator:
        """A :class:`scipy.sparse.linalg.LinearOperator` view working on numpy arrays (CPU copies)."""
        numpy_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        return sla.LinearOperator(
            shape=self.shape, dtype=numpy_dtype, matvec=self.__matmul__, matmat=self.__matmul__,
            rmatvec=self.__matmul__, rmatmat=self.__matmul__,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype}, device={self.device})"


class DenseOperator(LinearOperator):
    """A dense symmetric matrix held as a torch tensor of shape ``(P, P)``."""

    def __init__(self, matrix: torch.Tensor):
        self.matrix = matrix
        self.dim = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        return self.matrix @ vector

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        return self.matrix @ block


class CallableOperator(LinearOperator):
    """An operator defined by a function ``fn(v) -> A v`` on torch vectors of shape ``(dim,)``.

    ``fn`` may return a tensor or anything :func:`torch.as_tensor` accepts; the
    result is moved to the operator's device and dtype.
    """

    def __init__(self, fn: Callable[[torch.Tensor], Any], dim: int, dtype: torch.dtype, device: torch.device):
        self.fn = fn
        self.dim = dim
        self.dtype = dtype
        self.device = device

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.fn(vector)).to(device=self.device, dtype=self.dtype)


class ScipyOperator(LinearOperator):
    """A :class:`scipy.sparse.linalg.LinearOperator` (or sparse matrix) evaluated on the CPU."""

    def __init__(self, operator: sla.LinearOperator, dtype: torch.dtype):
        self.operator = operator
        self.dim = operator.shape[0]
        self.dtype = dtype
        self.device = torch.device("cpu")
        self._numpy_dtype = np.float32 if dtype == torch.float32 else np.float64

    def _apply(self, values: torch.Tensor) -> torch.Tensor:
        result = np.asarray(self.operator @ values.cpu().numpy().astype(self._numpy_dtype, copy=False))
        return torch.from_numpy(np.ascontiguousarray(result, dtype=self._numpy_dtype))

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        return self._apply(vector)

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        return self._apply(block)


def _symmetry_defect(matrix: torch.Tensor) -> float:
    """``||A - A^T||_F / ||A||_F`` (0 for the zero matrix)."""
    scale = torch.linalg.matrix_norm(matrix).item()
    return torch.linalg.matrix_norm(matrix - matrix.T).item() / scale if scale > 0 else 0.0


def as_operator(
    operator: Any,
    dim: Optional[int] = None,
    dtype: Optional[DTypeLike] = None,
    device: Union[str, torch.device, None] = None,
    check_symmetric: bool = True,
) -> LinearOperator:
    """Wrap ``operator`` into a :class:`LinearOperator`.

    Parameters
    ----------
    operator : LinearOperator, ndarray, torch.Tensor, scipy LinearOperator, sparse matrix or callable
        A dense ``(P, P)`` symmetric matrix, a scipy operator, an existing
        curvwidgets operator (returned as it is), or a function computing
        ``A @ v`` for a torch vector ``v`` of shape ``(P,)``.
    dim : int, optional
        ``P``; required for a callable, ignored otherwise.
    dtype : float32 or float64, optional
        For a callable or scipy operator: the dtype of the vectors it takes
        (default: float64 for a callable, the operator's own for scipy). For a
        dense matrix: cast to it (default: keep the matrix's dtype).
    device : str or torch.device, optional
        For a callable: where its vectors live (default CPU). For a dense
        matrix: move it there (default: keep it where it is).
    check_symmetric : bool, default: True
        For a dense matrix, reject it when ``||A - A^T||_F > sqrt(eps) ||A||_F``.

    Returns
    -------
    LinearOperator

    Raises
    ------
    ValueError
        A dense matrix that is not 2-D and square, or clearly not symmetric; a
        callable without a positive ``dim``.
    TypeError
        An unsupported dtype or object.

    Examples
    --------
    >>> import numpy as np
    >>> op = as_operator(np.diag([1.0, 2.0, 3.0]))
    >>> op.dim, op.dtype
    (3, torch.float64)
    >>> op @ np.ones(3)
    array([1., 2., 3.])
    """
    if isinstance(operator, LinearOperator):
        return operator
    if isinstance(operator, (np.ndarray, torch.Tensor)):
        matrix = torch.as_tensor(operator)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"operator must be a square 2-D matrix; got shape {tuple(matrix.shape)}")
        target = resolve_dtype(dtype if dtype is not None else matrix.dtype, "operator dtype" if dtype is None else "dtype")
        matrix = matrix.to(device=device if device is not None else matrix.device, dtype=target)
        if check_symmetric:
            defect = _symmetry_defect(matrix)
            if defect > torch.finfo(target).eps ** 0.5:
                raise ValueError(
                    f"operator must be symmetric; ||A - A^T||_F / ||A||_F = {defect:.3g}. "
                    "Symmetrise it with (A + A.T) / 2, or pass check_symmetric=False."
                )
        return DenseOperator(matrix)
    if isinstance(operator, sla.LinearOperator) or hasattr(operator, "tocsr"):
        if len(operator.shape) != 2 or operator.shape[0] != operator.shape[1]:
            raise ValueError(f"operator must be square; got shape {operator.shape}")
        return ScipyOperator(sla.aslinearoperator(operator), resolve_dtype(dtype if dtype is not None else operator.dtype))
    if callable(operator):
        if dim is None or int(dim) < 1:
            raise ValueError(f"dim must be a positive int when operator is a callable; got {dim!r}")
        return CallableOperator(
            operator, int(dim), resolve_dtype(dtype if dtype is not None else torch.float64), torch.device(device or "cpu")
        )
    raise TypeError(
        "operator must be a numpy array, torch tensor, scipy LinearOperator or sparse matrix, "
        f"a curvwidgets LinearOperator, or a callable with dim=; got {type(operator).__name__}"
    )
