"""One small protocol for symmetric linear operators, and adapters into it.

Every algorithm in :mod:`curvwidgets.linalg` talks to an operator through
:class:`LinearOperator`: its size ``dim``, its ``dtype`` and ``device``, and
products with torch tensors, ``matvec`` for one vector of shape ``(dim,)`` and
``matmat`` for a block of shape ``(dim, k)`` (columns are vectors, as in
scipy). :func:`as_operator` turns dense arrays, scipy operators, plain
callables and any object with ``dim``, ``dtype``, ``device`` and ``matvec``
into one.

Lanczos on a non-symmetric operator returns meaningless Ritz values, so
:func:`as_operator` checks symmetry where it is cheap: exactly for dense and
sparse matrices (``||A - A^T||_F <= sqrt(eps) ||A||_F``), and for an opaque
operator with a randomised probe costing two products
(:meth:`LinearOperator.symmetry_defect`).
Operators that are symmetric by construction (the package's Hessian and GGN)
say so with ``symmetric = True`` and are trusted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import numpy as np
import scipy.sparse
import scipy.sparse.linalg as sla
import torch

from .._validate import boolean, device_value, positive_int
from ._checks import apply_operator

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "CallableOperator",
    "ScipyOperator",
    "ProtocolOperator",
    "as_operator",
    "resolve_dtype",
    "resolve_device",
]

_FLOAT_DTYPES = {torch.float32: torch.float32, torch.float64: torch.float64}
_NAMES = {"float32": torch.float32, "float64": torch.float64, "single": torch.float32, "double": torch.float64}

DTypeLike = Union[torch.dtype, np.dtype, type, str]
DeviceLike = Union[str, torch.device]
PROTOCOL = ("dim", "dtype", "device", "matvec")
PROBE_SEED = 0  # the symmetry probe's vectors are the same on every call, so a check repeats exactly
SYMMETRY_TILE = 1024  # side of the square tiles of the dense symmetry check (8 MiB in float64)


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


def resolve_device(device: DeviceLike, argument: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` that exists on this machine.

    Raises
    ------
    ValueError
        For None, a name torch does not read as a device (e.g. ``"gpu"``), or
        CUDA where there is none (see :func:`curvwidgets._validate.device_value`).
    """
    if device is None:
        raise ValueError(f"{argument} must name a device such as 'cpu' or 'cuda:0'; got None")
    return device_value(argument, device)


def _dense_defect(matrix: torch.Tensor) -> float:
    """``||A - A^T||_F / ||A||_F`` (0 for the zero matrix), by pairs of square tiles.

    Each pair of ``SYMMETRY_TILE``-square tiles ``(A_ij, A_ji)`` is read once
    and only one tile of ``A - A^T`` exists at a time (no ``P x P``
    temporary, no transposed sweep over whole rows); the squared norms are
    summed in float64.
    """
    scale = torch.linalg.matrix_norm(matrix).item()
    if scale == 0:
        return 0.0
    size, tile = matrix.shape[0], SYMMETRY_TILE
    squares = torch.zeros((), dtype=torch.float64, device=matrix.device)
    for i in range(0, size, tile):
        for j in range(i, size, tile):
            difference = matrix[i : i + tile, j : j + tile] - matrix[j : j + tile, i : i + tile].T
            # an off-diagonal pair stands for both tiles of A - A^T, which have the same norm
            squares += (1.0 if i == j else 2.0) * torch.linalg.vector_norm(difference).double() ** 2
    return math.sqrt(squares.item()) / scale


def _sparse_defect(matrix: Any) -> float:
    """``||A - A^T||_F / ||A||_F`` of a scipy sparse matrix (0 for the zero matrix)."""
    scale = scipy.sparse.linalg.norm(matrix)
    return float(scipy.sparse.linalg.norm(matrix - matrix.T) / scale) if scale > 0 else 0.0


def _probe_defect(op: LinearOperator) -> float:
    """``|u^T A v - v^T A u| / max(||A u||, ||A v||)`` for seeded random unit ``u``, ``v``; two products.

    The denominator bounds both ``|u^T A v|`` and ``|v^T A u|`` (Cauchy-Schwarz),
    so the defect is relative to the scale of the products; it is 0 for the
    zero operator and for a symmetric one up to rounding.
    """
    generator = torch.Generator().manual_seed(PROBE_SEED)
    probes = torch.randn(2, op.dim, generator=generator, dtype=torch.float64)
    probes = (probes / torch.linalg.vector_norm(probes, dim=1, keepdim=True)).to(device=op.device, dtype=op.dtype)
    products = torch.cat([apply_operator(op, probes[k : k + 1], k + 1, "symmetry probe") for k in range(2)]).to(torch.float64)
    probes = probes.to(torch.float64)
    scale = torch.linalg.vector_norm(products, dim=1).max().item()
    difference = (torch.dot(probes[0], products[1]) - torch.dot(probes[1], products[0])).abs().item()
    return difference / scale if scale > 0 else 0.0


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
    symmetric : bool
        True when the operator is known to be symmetric (by construction, or
        checked once by :func:`as_operator`), so that its check is skipped.
        Default False: a user's operator is checked with a probe.
    """

    dim: int
    dtype: torch.dtype
    device: torch.device
    symmetric: bool = False

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

    def symmetry_defect(self) -> float:
        """How far the operator is from symmetric, relative to its scale (about ``eps`` or less when symmetric).

        A randomised probe costing two products:
        ``|u^T A v - v^T A u| / max(||A u||, ||A v||)`` for seeded random unit
        vectors ``u`` and ``v`` (the same on every call). Subclasses holding a
        matrix override it with the exact ``||A - A^T||_F / ||A||_F``.
        """
        return _probe_defect(self)

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

    def symmetry_defect(self) -> float:
        """Exactly ``||A - A^T||_F / ||A||_F`` (0 for the zero matrix)."""
        return _dense_defect(self.matrix)


def _as_product(product: Any, op: LinearOperator) -> torch.Tensor:
    """A product returned by a user's code (tensor, array, list) as a tensor on ``op``'s device and dtype.

    A complex product is a ``TypeError``: casting it would drop its imaginary part without a word.
    """
    tensor = torch.as_tensor(product)
    if tensor.is_complex():
        raise TypeError(f"the operator's products must be real (a symmetric real operator); got dtype {tensor.dtype}")
    return tensor.to(device=op.device, dtype=op.dtype)


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
        return _as_product(self.fn(vector), self)


class ScipyOperator(LinearOperator):
    """A :class:`scipy.sparse.linalg.LinearOperator` or a scipy sparse matrix, evaluated on the CPU."""

    def __init__(self, operator: Any, dtype: torch.dtype):
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

    def symmetry_defect(self) -> float:
        """Exactly ``||A - A^T||_F / ||A||_F`` for a sparse matrix; the probe for a scipy ``LinearOperator``."""
        return _sparse_defect(self.operator) if scipy.sparse.issparse(self.operator) else _probe_defect(self)


class ProtocolOperator(LinearOperator):
    """Any object with ``dim``, ``dtype``, ``device`` and ``matvec`` (duck typing), adapted.

    ``matmat`` is the object's own when it has one, else one ``matvec`` per
    column. Products may be tensors or anything :func:`torch.as_tensor`
    accepts. An object with ``symmetric = True`` is trusted to be symmetric.
    """

    def __init__(self, operator: Any):
        self.operator = operator
        self.dim = positive_int("operator.dim", operator.dim)
        self.dtype = resolve_dtype(operator.dtype, "operator.dtype")
        self.device = resolve_device(operator.device, "operator.device")
        self.symmetric = getattr(operator, "symmetric", False) is True

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        return _as_product(self.operator.matvec(vector), self)

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        own = getattr(self.operator, "matmat", None)
        return _as_product(own(block), self) if callable(own) else super().matmat(block)


def _require_symmetric(op: LinearOperator) -> None:
    """Raise ``ValueError`` when ``op.symmetry_defect()`` exceeds ``sqrt(eps)`` of ``op.dtype``."""
    defect, tolerance = op.symmetry_defect(), torch.finfo(op.dtype).eps ** 0.5
    if defect > tolerance:
        raise ValueError(
            f"operator must be symmetric; its relative symmetry defect is {defect:.3g}, above "
            f"sqrt(eps) = {tolerance:.3g} of {op.dtype}. Symmetrise it, e.g. with (A + A.T) / 2, "
            "or pass check_symmetric=False."
        )


def _wrap(operator: Any, dim: Optional[int], dtype: Optional[DTypeLike], device: Optional[DeviceLike]) -> LinearOperator:
    """``operator`` as a :class:`LinearOperator`, without checking symmetry (see :func:`as_operator`)."""
    if isinstance(operator, LinearOperator):
        return operator
    if isinstance(operator, (np.ndarray, torch.Tensor)):
        return _dense(operator, dtype, device)
    if isinstance(operator, sla.LinearOperator) or scipy.sparse.issparse(operator):
        if len(operator.shape) != 2 or operator.shape[0] != operator.shape[1]:
            raise ValueError(f"operator must be square; got shape {operator.shape}")
        _require_nonempty(operator.shape)
        target = dtype if dtype is not None else operator.dtype
        return ScipyOperator(operator, resolve_dtype(target, "dtype" if dtype is not None else "operator dtype"))
    if hasattr(operator, "matvec"):
        missing = [name for name in PROTOCOL if not hasattr(operator, name)]
        if missing:
            raise TypeError(
                f"operator has matvec but lacks {', '.join(missing)}; an operator needs {', '.join(PROTOCOL)}"
            )
        return ProtocolOperator(operator)
    if callable(operator):
        if dim is None:
            raise ValueError("dim must be given (an int >= 1) when operator is a callable")
        target = resolve_dtype(dtype if dtype is not None else torch.float64)
        return CallableOperator(operator, positive_int("dim", dim), target, resolve_device(device or "cpu"))
    raise TypeError(
        "operator must be a numpy array, torch tensor, scipy LinearOperator or sparse matrix, "
        "an object with dim, dtype, device and matvec, or a callable with dim=; "
        f"got {type(operator).__name__}"
    )


def _require_nonempty(shape: tuple) -> None:
    """``ValueError`` for a ``0 x 0`` operator: it has no spectrum to estimate."""
    if shape[0] == 0:
        raise ValueError(f"operator must be at least 1 x 1; got shape {tuple(shape)}")


def _dense(operator: Union[np.ndarray, torch.Tensor], dtype: Optional[DTypeLike], device: Optional[DeviceLike]) -> DenseOperator:
    """A dense ``(P, P)`` array or tensor, cast to ``dtype`` and moved to ``device`` when given."""
    matrix = torch.as_tensor(operator)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"operator must be a square 2-D matrix; got shape {tuple(matrix.shape)}")
    _require_nonempty(tuple(matrix.shape))
    target = resolve_dtype(dtype if dtype is not None else matrix.dtype, "operator dtype" if dtype is None else "dtype")
    return DenseOperator(matrix.to(device=resolve_device(device) if device is not None else matrix.device, dtype=target))


def as_operator(
    operator: Any,
    dim: Optional[int] = None,
    dtype: Optional[DTypeLike] = None,
    device: Optional[DeviceLike] = None,
    check_symmetric: bool = True,
) -> LinearOperator:
    """Wrap ``operator`` into a :class:`LinearOperator`, checking that it is symmetric.

    Parameters
    ----------
    operator : LinearOperator, ndarray, torch.Tensor, scipy LinearOperator, sparse matrix, protocol object or callable
        A dense ``(P, P)`` symmetric matrix, a scipy operator or sparse
        matrix, an existing curvwidgets operator (returned as it is), any
        object with ``dim``, ``dtype``, ``device`` and ``matvec`` (and
        optionally ``matmat``), or a function computing ``A @ v`` for a torch
        vector ``v`` of shape ``(P,)``.
    dim : int, optional
        ``P``; required for a callable, checked against the operator's size otherwise.
    dtype : float32 or float64, optional
        For a callable or scipy operator: the dtype of the vectors it takes
        (default: float64 for a callable, the operator's own for scipy). For a
        dense matrix: cast to it (default: keep the matrix's dtype).
    device : str or torch.device, optional
        For a callable: where its vectors live (default CPU). For a dense
        matrix: move it there (default: keep it where it is).
    check_symmetric : bool, default: True
        Reject the operator when :meth:`LinearOperator.symmetry_defect`
        exceeds ``sqrt(eps)`` of its dtype: exactly for dense and sparse
        matrices, with a probe of two products otherwise. Skipped for
        operators with ``symmetric = True`` (the package's Hessian and GGN);
        a wrapper made here is marked symmetric once it passes.

    Returns
    -------
    LinearOperator

    Raises
    ------
    ValueError
        A matrix that is not 2-D and square, or an operator that is not
        symmetric; a callable without ``dim``; ``dim`` not an int >= 1 or
        not the operator's size.
    TypeError
        An unsupported dtype, device or object; an object with ``matvec`` that
        lacks ``dim``, ``dtype`` or ``device``.

    Examples
    --------
    >>> import numpy as np
    >>> op = as_operator(np.diag([1.0, 2.0, 3.0]))
    >>> op.dim, op.dtype
    (3, torch.float64)
    >>> op @ np.ones(3)
    array([1., 2., 3.])
    """
    boolean("check_symmetric", check_symmetric)
    op = _wrap(operator, dim, dtype, device)
    if dim is not None and positive_int("dim", dim) != op.dim:
        raise ValueError(f"dim must be the operator's size {op.dim}; got {dim!r}")
    if check_symmetric and not op.symmetric:
        _require_symmetric(op)
        if op is not operator:
            op.symmetric = True
    return op
