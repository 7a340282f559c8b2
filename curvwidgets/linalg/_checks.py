"""Input checks and start vectors shared by the linear-algebra layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from .._validate import choice, positive_int, real_array, seed_value

if TYPE_CHECKING:  # operators.py imports this module for its products' checks
    from .operators import LinearOperator

DISTRIBUTIONS = ("gaussian", "rademacher")


def check_steps(steps: Any) -> int:
    """Return ``steps`` as an int, or raise ``ValueError`` unless it is an int >= 1."""
    return positive_int("steps", steps)


def finite_vector(name: str, values: Any) -> np.ndarray:
    """``values`` as a non-empty finite 1-D float array, else ``ValueError`` naming ``name``."""
    array = real_array(name, values)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers; got shape {array.shape}")
    return array


def check_start(num_vectors: Any, seed: Any, distribution: Any) -> tuple[int, int, str]:
    """``(num_vectors, seed, distribution)`` checked, before any product is taken.

    Raises
    ------
    ValueError
        Unless ``num_vectors`` is an int >= 1, ``seed`` an int in ``[0, 2**63)``
        and ``distribution`` one of :data:`DISTRIBUTIONS`.
    """
    return positive_int("num_vectors", num_vectors), seed_value("seed", seed), choice("distribution", distribution, DISTRIBUTIONS)


def start_vectors(
    op: LinearOperator,
    num_vectors: int,
    seed: int,
    distribution: str,
    start: Optional[Any],
) -> torch.Tensor:
    """Unit start vectors of shape ``(num_vectors, dim)`` on ``op``'s device and dtype.

    ``start`` (shape ``(dim,)`` or ``(n, dim)``) is used as given when not
    None. Otherwise (after :func:`check_start`) the vectors are drawn on the CPU in float64 from a
    ``torch.Generator`` seeded with ``seed`` (so the same seed gives the same
    vectors on every device), with i.i.d. standard Gaussian or Rademacher
    (+-1) entries.
    """
    if start is not None:
        given = _real_tensor(start)
        vectors = given[None] if given.ndim == 1 else given
        if vectors.ndim != 2 or vectors.shape[1] != op.dim:
            raise ValueError(f"start must have shape ({op.dim},) or (num_vectors, {op.dim}); got {tuple(given.shape)}")
        if num_vectors not in (1, vectors.shape[0]):
            raise ValueError(f"num_vectors={num_vectors} disagrees with the {vectors.shape[0]} start vector(s) given")
        vectors = vectors.to(dtype=torch.float64, device="cpu")
    else:
        generator = torch.Generator().manual_seed(seed)
        vectors = torch.randn(num_vectors, op.dim, generator=generator, dtype=torch.float64)
        if distribution == "rademacher":
            vectors = torch.sign(vectors)
    norms = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    if not torch.all(torch.isfinite(norms) & (norms > 0)):
        raise ValueError("start must hold finite, nonzero vectors")
    return (vectors / norms).to(device=op.device, dtype=op.dtype)


def _real_tensor(start: Any) -> torch.Tensor:
    """``start`` as a detached real tensor, or ``TypeError`` naming ``start``."""
    try:
        tensor = torch.as_tensor(start).detach()
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"start must be a real array or tensor; got {type(start).__name__}") from error
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"start must be a real array or tensor; got dtype {tensor.dtype}")
    if tensor.is_meta:
        raise TypeError("start must be a real array or tensor holding numbers; got a tensor on the meta device")
    return tensor


class NonFiniteProduct(ValueError):
    """An operator product holding NaN or inf: the operator (or what it is built from) is not finite."""


def apply_operator(
    op: LinearOperator, rows: torch.Tensor, step: int, stage: str, check_finite: bool = True
) -> torch.Tensor:
    """``op`` applied to each row of ``rows`` (shape ``(n, dim)``), checked.

    ``check_finite=False`` skips the pass over the product that looks for
    NaN/inf, for callers that detect them more cheaply themselves.

    Raises
    ------
    ValueError
        When the operator returns the wrong shape, or NaN/inf; the message
        names the step (1-based) at which it happened.
    """
    product = (op.matvec(rows[0])[None] if rows.shape[0] == 1 else op.matmat(rows.T).T).detach()
    if tuple(product.shape) != tuple(rows.shape):
        expected = f"({op.dim},)" if rows.shape[0] == 1 else f"({op.dim}, {rows.shape[0]})"
        got = tuple(product.shape[1:]) if rows.shape[0] == 1 else tuple(product.T.shape)
        raise ValueError(f"{stage} step {step}: the operator product must have shape {expected}; got {got}")
    if check_finite and not bool(torch.isfinite(product).all()):
        raise NonFiniteProduct(f"{stage} step {step}: the operator product contains NaN or inf; stopped")
    return product.to(dtype=rows.dtype)
