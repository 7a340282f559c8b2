"""Input checks and start vectors shared by the iterative eigensolvers."""

from __future__ import annotations

from typing import Any, Optional

import torch

from .._validate import positive_int
from .operators import LinearOperator

DISTRIBUTIONS = ("gaussian", "rademacher")


def check_steps(steps: Any) -> int:
    """Return ``steps`` as an int, or raise ``ValueError`` unless it is an int >= 1."""
    return positive_int("steps", steps)


def start_vectors(
    op: LinearOperator,
    num_vectors: int,
    seed: int,
    distribution: str,
    start: Optional[Any],
) -> torch.Tensor:
    """Unit start vectors of shape ``(num_vectors, dim)`` on ``op``'s device and dtype.

    ``start`` (shape ``(dim,)`` or ``(n, dim)``) is used as given when not
    None. Otherwise the vectors are drawn on the CPU in float64 from a
    ``torch.Generator`` seeded with ``seed`` (so the same seed gives the same
    vectors on every device), with i.i.d. standard Gaussian or Rademacher
    (+-1) entries.
    """
    if start is not None:
        vectors = torch.as_tensor(start).detach()
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != op.dim:
            raise ValueError(f"start must have shape ({op.dim},) or (num_vectors, {op.dim}); got {tuple(torch.as_tensor(start).shape)}")
        if num_vectors not in (1, vectors.shape[0]):
            raise ValueError(f"num_vectors={num_vectors} disagrees with the {vectors.shape[0]} start vector(s) given")
        vectors = vectors.to(dtype=torch.float64, device="cpu")
    else:
        positive_int("num_vectors", num_vectors)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}; got {distribution!r}")
        generator = torch.Generator().manual_seed(int(seed))
        vectors = torch.randn(num_vectors, op.dim, generator=generator, dtype=torch.float64)
        if distribution == "rademacher":
            vectors = torch.sign(vectors)
    norms = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    if not torch.all(torch.isfinite(norms) & (norms > 0)):
        raise ValueError("start vectors must be finite and nonzero")
    return (vectors / norms).to(device=op.device, dtype=op.dtype)


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
        raise ValueError(f"{stage} step {step}: the operator product contains NaN or inf; stopped")
    return product.to(dtype=rows.dtype)
