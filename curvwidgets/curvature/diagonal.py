"""Diagonals of curvature matrices: exact for small models, Hutchinson for any operator, Monte Carlo GGN.

The Monte Carlo GGN diagonal is what the paper calls Diag-GGN (Figure 6): for
each sample ``n`` draw ``s_n`` with covariance ``H_n``, the Hessian of that
sample's loss in the network outputs (``onehot(y) - p`` with ``y ~ p`` for
cross-entropy, a scaled Gaussian for MSE), then ``E[(J_n^T s_n)^2] =
diag(J_n^T H_n J_n)``. It needs per-sample gradients, not ``P x P`` storage, so
its memory is ``chunk_size * P`` numbers: light enough for VGG-16.

All three follow the progress protocol (:mod:`curvwidgets.progress`): an
event after every unit of work, and a cancel raises
:class:`~curvwidgets.Cancelled` carrying the estimate so far.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from .._validate import check_cancel, check_progress, positive_int, seed_value
from ..linalg.operators import as_operator
from ..progress import CancelToken, ProgressCallback, report
from .data import all_reduce_sum
from .operators import GGN
from .output_hessian import closed_form_kind

__all__ = ["exact_diagonal", "hutchinson_diagonal", "mc_ggn_diagonal"]


def exact_diagonal(op: Any, block_size: int = 32, *, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """``diag(A)`` from products with the unit vectors, ``block_size`` at a time.

    Exact, and costs ``P`` products (``P / block_size`` passes over the data
    for a curvature operator): for small models.

    Parameters
    ----------
    op : operator
        Anything :func:`~curvwidgets.linalg.operators.as_operator` takes.
    block_size : int, default: 32
    progress, cancel
        The progress protocol: one event per block (``stage="exact_diagonal"``);
        the partial result is the diagonal with NaN at the entries not yet computed.

    Returns
    -------
    torch.Tensor, shape (P,), on the operator's device
    """
    check_progress(progress)
    check_cancel(cancel)
    op = as_operator(op)
    positive_int("block_size", block_size)
    diagonal = torch.full((op.dim,), torch.nan, dtype=op.dtype, device=op.device)
    starts = range(0, op.dim, block_size)
    for step, begin in enumerate(starts, start=1):
        end = min(begin + block_size, op.dim)
        units = torch.zeros(op.dim, end - begin, dtype=op.dtype, device=op.device)
        units[torch.arange(begin, end), torch.arange(end - begin)] = 1
        diagonal[begin:end] = torch.diagonal(op.matmat(units)[begin:end])
        report(progress, cancel, "exact_diagonal", step, len(starts), partial=diagonal.clone)
    return diagonal


def hutchinson_diagonal(op: Any, num_samples: int, seed: int = 0, block_size: int = 16, *,
                        progress: Optional[ProgressCallback] = None,
                        cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """Hutchinson's estimate ``mean_j z_j * (A z_j)`` of ``diag(A)``, Rademacher ``z_j``.

    Unbiased for any symmetric operator; the variance of entry ``i`` is
    ``sum_{k != i} A_ik^2 / num_samples``. The probes are drawn on the CPU from
    ``seed`` and applied ``block_size`` at a time.

    Parameters
    ----------
    op : operator
        Anything :func:`~curvwidgets.linalg.operators.as_operator` takes.
    num_samples : int
        Probes ``z_j``.
    seed : int, default: 0
    block_size : int, default: 16
    progress, cancel
        The progress protocol: one event per block of probes
        (``stage="hutchinson_diagonal"``); the partial result is the estimate
        from the probes so far, itself an unbiased estimate.

    Returns
    -------
    torch.Tensor, shape (P,), on the operator's device
    """
    check_progress(progress)
    check_cancel(cancel)
    op = as_operator(op)
    positive_int("num_samples", num_samples)
    positive_int("block_size", block_size)
    generator = torch.Generator().manual_seed(seed_value("seed", seed))
    total = torch.zeros(op.dim, dtype=torch.float64, device=op.device)
    starts = range(0, num_samples, block_size)
    for step, begin in enumerate(starts, start=1):
        done = min(begin + block_size, num_samples)
        probes = (torch.randint(0, 2, (op.dim, done - begin), generator=generator) * 2 - 1).to(op.device, op.dtype)
        total += (probes * op.matmat(probes)).sum(1, dtype=torch.float64)
        report(progress, cancel, "hutchinson_diagonal", step, len(starts),
               partial=lambda: (total / done).to(op.dtype))
    return (total / num_samples).to(op.dtype)


def _output_noise(ggn: GGN, outputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample vectors ``s_n`` with ``E[s_n s_n^T] = H_n``, shape of ``outputs``."""
    kind = closed_form_kind(ggn.loss_fn, outputs, targets)
    if kind == "cross_entropy":
        probabilities = torch.softmax(outputs, dim=1)
        labels = torch.multinomial(probabilities.cpu().double(), 1, generator=generator)[:, 0].to(outputs.device)
        return nn.functional.one_hot(labels, outputs.shape[1]).to(outputs.dtype) - probabilities
    if kind == "mse":
        per_sample = outputs[0].numel() if ggn.loss_fn.reduction == "mean" else 1
        noise = torch.randn(outputs.shape, generator=generator, dtype=torch.float64).to(outputs.device, outputs.dtype)
        return noise * (2.0 / per_sample) ** 0.5
    raise ValueError(
        "mc_ggn_diagonal samples the output Hessian of nn.CrossEntropyLoss (class-index targets, no weights, "
        f"ignored targets or label smoothing) or nn.MSELoss; got {type(ggn.loss_fn).__name__}. Use "
        "hutchinson_diagonal(ggn, ...) instead."
    )


def mc_ggn_diagonal(ggn: GGN, num_mc: int = 1, seed: int = 0, chunk_size: int = 32, *,
                    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """Monte Carlo estimate of ``diag(G)`` for a :class:`~curvwidgets.curvature.GGN` operator.

    ``diag(G) ~ (1/N) sum_n mean_j (J_n^T s_nj)^2`` over ``num_mc`` draws per
    sample (see the module docstring); unbiased, exact in the limit
    ``num_mc -> infinity``. The draws are seeded by ``seed`` and the batch
    index, so the estimate is the same on any number of ranks.

    Parameters
    ----------
    ggn : GGN
        The operator whose diagonal is wanted (its model, loss, data, params,
        subset, device and dtype are used).
    num_mc : int, default: 1
        Draws per sample.
    seed : int, default: 0
    chunk_size : int, default: 32
        (sample, draw) pairs whose gradients are computed at once, with
        ``torch.func.vmap`` (memory ``chunk_size * P`` numbers).
    progress, cancel
        The progress protocol: one event per batch of this rank
        (``stage="mc_ggn_diagonal"``); the partial result is the estimate
        over the samples of this rank's batches so far.

    Returns
    -------
    torch.Tensor, shape (P,), on the operator's device, in its dtype

    Raises
    ------
    ValueError
        ``bn_mode="train"`` (batch statistics couple the samples, so
        per-sample gradients are not defined), or a loss other than
        cross-entropy or MSE.
    """
    if not isinstance(ggn, GGN):
        raise TypeError(f"ggn must be a curvwidgets GGN operator; got {type(ggn).__name__}")
    if ggn.bn_mode != "eval":
        raise ValueError("mc_ggn_diagonal needs bn_mode='eval': with batch statistics samples have no own gradient")
    positive_int("num_mc", num_mc)
    seed_value("seed", seed)
    positive_int("chunk_size", chunk_size)
    check_progress(progress)
    check_cancel(cancel)
    total = torch.zeros(ggn.dim, dtype=torch.float64, device=ggn.device)
    count = torch.zeros((), dtype=torch.float64, device=ggn.device)
    num_batches = ggn.data.batch_count()
    with ggn.evaluation_mode():
        primals, constants = ggn.functional_state()

        def projected(values, sample, noise):
            outputs = ggn.outputs_function(constants, sample[None])(*values)
            return (outputs[0] * noise).sum()

        per_sample = torch.func.vmap(torch.func.grad(projected), in_dims=(None, 0, 0))
        for step, (index, inputs, targets) in enumerate(ggn.data.batches(ggn.device, ggn.dtype), start=1):
            # Seeded per batch, so that the draws do not depend on how batches are shared over ranks.
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
            count += len(inputs)
            with torch.no_grad():
                outputs = ggn.outputs_function(constants, inputs)(*primals)
            noise = torch.cat([_output_noise(ggn, outputs, targets, generator) for _ in range(num_mc)])
            repeated = inputs.expand(num_mc, *inputs.shape).reshape(num_mc * len(inputs), *inputs.shape[1:])
            for begin in range(0, len(noise), chunk_size):
                gradients = per_sample(primals, repeated[begin : begin + chunk_size], noise[begin : begin + chunk_size])
                flat = ggn.layout.flatten(gradients, batched=True).to(torch.float64)
                total += (flat**2).sum(1) / num_mc
            report(progress, cancel, "mc_ggn_diagonal", step, num_batches, partial=lambda: (total / count).to(ggn.dtype))
    all_reduce_sum(total)
    all_reduce_sum(count)
    return (total / count).to(ggn.dtype)
