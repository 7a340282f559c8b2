"""Diagonals of curvature matrices: exact GGN diagonals at network scale, Hutchinson for any operator, Monte Carlo GGN.

- :func:`ggn_diagonal`: the exact diagonal of a :class:`~curvwidgets.curvature.GGN`
  in ``C`` backward passes per batch, ``C`` the outputs per sample (classes
  times positions for cross-entropy, the classes on axis 1 for
  ``nn.CrossEntropyLoss`` or last for
  :class:`~curvwidgets.losses.SequenceCrossEntropyLoss`). The output Hessian
  of each sample's loss is factored in closed form, ``H_n = S_n S_n^T``
  (:func:`~curvwidgets.curvature.output_hessian.output_hessian_factor`), so
  ``diag(G) = (1/W) sum_n sum_c (J_n^T s_nc)^2`` with one vector-Jacobian
  product per column ``s_nc``: per-sample gradients, not ``P x P`` storage.
- :func:`mc_ggn_diagonal`: what the paper calls Diag-GGN (Figure 6): for each
  sample ``n`` draw ``s_n`` with covariance ``H_n`` from the model's
  predictive distribution (``onehot(y) - p`` with ``y ~ p`` for
  cross-entropy, ``y - sigma`` with ``y ~ Bernoulli(sigma)`` for BCE with
  logits, a scaled Gaussian for MSE), then ``E[(J_n^T s_n)^2] =
  diag(J_n^T H_n J_n)``: ``num_mc`` backward passes per batch instead of ``C``.
- :func:`exact_diagonal`: ``P`` products with unit vectors, for any operator
  of a small model; :func:`hutchinson_diagonal`: unbiased for any operator.

The two GGN diagonals share one engine: per-sample vector-Jacobian products
with ``torch.func`` (``vmap`` over samples of ``vjp``, ``vmap`` over columns of
the pullback), ``chunk_size`` (sample, column) pairs at a time, so memory is
``chunk_size * P`` numbers (32 MiB of gradients by default): light enough for VGG-16.

All four follow the progress protocol (:mod:`curvwidgets.progress`): an
event after every unit of work, and a cancel raises
:class:`~curvwidgets.Cancelled` carrying the estimate so far.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch

from .._validate import boolean, check_cancel, check_progress, positive_int, seed_value
from ..linalg.operators import as_operator
from ..progress import CancelToken, ProgressCallback, report
from .batches import from_parts, parts_of
from .data import all_reduce_sum, naming_data
from .operators import GGN
from .output_hessian import OutputHessianFactor, check_factored_loss, counted_weight, output_hessian_factor

__all__ = ["exact_diagonal", "ggn_diagonal", "hutchinson_diagonal", "mc_ggn_diagonal"]

#: Per batch: the factor of its output Hessian and the batch index -> (columns per sample, columns(start, stop)).
ColumnSource = Callable[[OutputHessianFactor, int], Tuple[int, Callable[[int, int], torch.Tensor]]]
#: ``chunk_size=None`` in the GGN diagonals: as many (sample, column) pairs per pass as keep their float64
#: gradients under this many bytes, and at most MAX_CHUNK (a pass's fixed cost is then small against its work).
CHUNK_BYTES = 32 * 2**20
MAX_CHUNK = 1024


def exact_diagonal(op: Any, block_size: int = 32, *, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """``diag(A)`` from products with the unit vectors, ``block_size`` at a time.

    Exact, and costs ``P`` products (``P / block_size`` passes over the data
    for a curvature operator): for small models. For a
    :class:`~curvwidgets.curvature.GGN`, :func:`ggn_diagonal` gives the same
    diagonal (to rounding) in ``C`` backward passes per batch, ``C`` the
    outputs per sample, whatever ``P``.

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
                        progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                        with_error: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
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
    with_error : bool, default: False
        Also return each entry's standard error, ``std_j(z_j * (A z_j)) /
        sqrt(num_samples)`` over the probes (NaN for one probe).

    Returns
    -------
    torch.Tensor, shape (P,), on the operator's device
        The estimate; with ``with_error``, ``(estimate, standard_error)``.
    """
    check_progress(progress)
    check_cancel(cancel)
    boolean("with_error", with_error)
    op = as_operator(op)
    positive_int("num_samples", num_samples)
    positive_int("block_size", block_size)
    generator = torch.Generator().manual_seed(seed_value("seed", seed))
    total = torch.zeros(op.dim, dtype=torch.float64, device=op.device)
    squares = torch.zeros_like(total)
    starts = range(0, num_samples, block_size)
    for step, begin in enumerate(starts, start=1):
        done = min(begin + block_size, num_samples)
        probes = (torch.randint(0, 2, (op.dim, done - begin), generator=generator) * 2 - 1).to(op.device, op.dtype)
        samples = (probes * op.matmat(probes)).to(torch.float64)
        total += samples.sum(1)
        squares += samples.square().sum(1)
        report(progress, cancel, "hutchinson_diagonal", step, len(starts),
               partial=lambda: (total / done).to(op.dtype))
    estimate = total / num_samples
    if not with_error:
        return estimate.to(op.dtype)
    return estimate.to(op.dtype), _standard_error(total, squares, num_samples).to(op.dtype)


def _standard_error(total: torch.Tensor, squares: torch.Tensor, count: int) -> torch.Tensor:
    """Per entry, ``std / sqrt(count)`` of ``count`` samples from their sum and sum of squares (NaN for one)."""
    if count < 2:
        return torch.full_like(total, torch.nan)
    variance = ((squares - total.square() / count) / (count - 1)).clamp_min(0.0)
    return torch.sqrt(variance / count)


def ggn_diagonal(ggn: GGN, chunk_size: Optional[int] = None, *, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """The exact diagonal of a :class:`~curvwidgets.curvature.GGN` operator, in ``C`` backward passes per batch.

    ``diag(G) = (1/W) sum_n sum_c (J_n^T s_nc)^2``, ``s_nc`` the columns of
    the closed-form factor ``H_n = S_n S_n^T`` of sample ``n``'s output
    Hessian (:class:`~curvwidgets.curvature.output_hessian.OutputHessianFactor`:
    ``diag(sqrt p) - p sqrt(p)^T`` per position for cross-entropy,
    ``sqrt(2 / O) I`` for a mean MSE over ``O`` outputs per sample,
    ``sqrt(sigma (1 - sigma) / O)`` per output for BCE with logits), ``J_n``
    the Jacobian of its outputs and ``W`` the weight the operator divides by.
    Cross-entropy is ``nn.CrossEntropyLoss`` (classes on axis 1: logits
    ``(b, C)`` or ``(b, C, *positions)``, class-index or class-probability
    targets) or :class:`~curvwidgets.losses.SequenceCrossEntropyLoss`
    (classes last: a language model's logits ``(b, T, V)``, the mean over
    the tokens whose target is not its ``ignore_index``). Everything follows
    ``ggn``: its model, loss (class ``weight``, ``ignore_index``,
    ``label_smoothing``, ``pos_weight``, the reduction), data and
    ``num_samples`` subset, batch weighting (by counted targets, tokens for
    sequences), ``params``, ``bn_mode``, device and dtype; the result equals
    ``exact_diagonal(ggn)`` to rounding at a fraction of the cost: ``C``
    (classes times positions, or outputs per sample) vector-Jacobian products
    per sample, where ``exact_diagonal`` makes ``P`` operator products.

    With ``bn_mode="eval"`` the products are per-sample (``torch.func.vmap``
    of ``vjp`` over samples, a ``vmap`` over columns of its pullback), which
    assumes that samples do not interact in the model. With
    ``bn_mode="train"`` batch statistics couple the samples: each column of
    each sample is pulled back through the whole batch, ``b * C`` backward
    passes of a batch of ``b``.

    Parameters
    ----------
    ggn : GGN
        The operator whose diagonal is wanted.
    chunk_size : int, optional
        (sample, column) pairs pulled back at once (memory ``chunk_size * P``
        numbers): ``chunk_size // C`` samples with all their columns, or one
        sample with ``chunk_size`` of them. Default: as many as keep their
        float64 gradients, and their activations, under :data:`CHUNK_BYTES`
        (32 MiB) each, at most :data:`MAX_CHUNK`.
    progress, cancel
        The progress protocol: one event per batch of this rank
        (``stage="ggn_diagonal"``); the partial result is the diagonal over
        the batches of this rank so far (NaN before any counted sample).

    Returns
    -------
    torch.Tensor, shape (P,), on the operator's device, in its dtype

    Raises
    ------
    TypeError
        ``ggn`` is not a :class:`~curvwidgets.curvature.GGN`.
    ValueError
        ``loss_fn`` other than ``nn.CrossEntropyLoss``,
        ``cw.SequenceCrossEntropyLoss``, ``nn.MSELoss`` or
        ``nn.BCEWithLogitsLoss`` with ``reduction`` "mean" or "sum" (use
        :func:`hutchinson_diagonal` or :func:`exact_diagonal`), targets of
        a shape that loss does not read, or ``chunk_size`` < 1.

    Examples
    --------
    >>> import torch, curvwidgets as cw
    >>> from curvwidgets.curvature import ggn_diagonal
    >>> model = torch.nn.Linear(3, 1).double()
    >>> data = [(torch.full((4, 3), 2.0, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64))]
    >>> ggn_diagonal(cw.GGN(model, torch.nn.MSELoss(), data)).round(decimals=12)  # 2 x^2 (weights), 2 (bias)
    tensor([8., 8., 8., 2.], dtype=torch.float64)
    """
    _check_ggn(ggn)
    _check_loss(ggn, "ggn_diagonal factors")
    chunk_size = _chunk_size(chunk_size)
    check_progress(progress)
    check_cancel(cancel)
    return _factored_diagonal(ggn, lambda factor, index: (factor.rank, factor.columns), chunk_size, "ggn_diagonal",
                              progress, cancel)


def mc_ggn_diagonal(ggn: GGN, num_mc: int = 1, seed: int = 0, chunk_size: Optional[int] = None, *,
                    progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                    with_error: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Monte Carlo estimate of ``diag(G)`` for a :class:`~curvwidgets.curvature.GGN` operator.

    ``diag(G) ~ (1/W) sum_n mean_j (J_n^T s_nj)^2`` over ``num_mc`` draws
    ``s_nj`` per sample from the model's predictive distribution, scaled so
    that ``E[s_nj s_nj^T] = H_n`` (see the module docstring and
    :meth:`~curvwidgets.curvature.output_hessian.OutputHessianFactor.draw`):
    a class ``y ~ p`` for cross-entropy (per position, times the weight of
    the sample's target; ignored targets draw nothing; for
    :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` per token, the
    classes last), ``y ~ Bernoulli(sigma)``
    for BCE with logits, a Gaussian of variance ``2 / O`` (mean over ``O``
    outputs per sample) or 2 (sum) for MSE. Unbiased, exact in the limit
    ``num_mc -> infinity``, with the weighting and conventions of ``ggn`` as
    :func:`ggn_diagonal`; ``num_mc`` backward passes per sample instead of
    ``C``. The draws are seeded by ``seed`` and the batch index, so the
    estimate is the same on any number of ranks.

    Parameters
    ----------
    ggn : GGN
        The operator whose diagonal is wanted (its model, loss, data, params,
        subset, device and dtype are used).
    num_mc : int, default: 1
        Draws per sample.
    seed : int, default: 0
    chunk_size : int, optional
        (sample, draw) pairs whose gradients are computed at once, with
        ``torch.func.vmap`` (memory ``chunk_size * P`` numbers); default as
        in :func:`ggn_diagonal`.
    progress, cancel
        The progress protocol: one event per batch of this rank
        (``stage="mc_ggn_diagonal"``); the partial result is the estimate
        over the samples of this rank's batches so far.

    Returns
    -------
    torch.Tensor, shape (P,), on the operator's device, in its dtype

    Raises
    ------
    TypeError
        ``ggn`` is not a :class:`~curvwidgets.curvature.GGN`.
    ValueError
        ``bn_mode="train"`` (batch statistics couple the samples, so
        per-sample draws are not defined: use :func:`ggn_diagonal`), a loss
        other than cross-entropy (``nn.CrossEntropyLoss``,
        ``cw.SequenceCrossEntropyLoss``), MSE or BCE with logits, or
        cross-entropy with ``label_smoothing`` (use :func:`ggn_diagonal` or
        :func:`hutchinson_diagonal`).
    """
    _check_ggn(ggn)
    if ggn.bn_mode != "eval":
        raise ValueError("mc_ggn_diagonal needs bn_mode='eval': with batch statistics samples have no own gradient "
                         "(ggn_diagonal(ggn) computes the exact diagonal with batch statistics)")
    _check_loss(ggn, "mc_ggn_diagonal samples")
    if getattr(ggn.loss_fn, "label_smoothing", 0.0) > 0:
        raise ValueError(f"loss_fn must not smooth labels for mc_ggn_diagonal, which samples labels; got "
                         f"label_smoothing={ggn.loss_fn.label_smoothing}. Use ggn_diagonal(ggn) for the exact "
                         "diagonal, or hutchinson_diagonal(ggn, ...)")
    positive_int("num_mc", num_mc)
    seed_value("seed", seed)
    chunk_size = _chunk_size(chunk_size)
    check_progress(progress)
    check_cancel(cancel)
    boolean("with_error", with_error)

    def draws(only: Optional[int] = None) -> ColumnSource:
        """Every sample's ``num_mc`` draws as columns (scaled to average), or its draw ``only`` alone."""
        def source(factor: OutputHessianFactor, index: int) -> Tuple[int, Callable[[int, int], torch.Tensor]]:
            # Seeded per batch, so that the draws do not depend on how batches are shared over ranks.
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
            columns = torch.stack([factor.draw(generator) for _ in range(num_mc)])
            columns = columns / math.sqrt(num_mc) if only is None else columns[only : only + 1]
            return len(columns), lambda start, stop: columns[start:stop]
        return source

    if not with_error:
        return _factored_diagonal(ggn, draws(), chunk_size, "mc_ggn_diagonal", progress, cancel)
    estimates = torch.stack([_factored_diagonal(ggn, draws(draw), chunk_size, "mc_ggn_diagonal", progress, cancel)
                             .to(torch.float64) for draw in range(num_mc)])
    error = _standard_error(estimates.sum(0), estimates.square().sum(0), num_mc)
    return estimates.mean(0).to(ggn.dtype), error.to(ggn.dtype)


def _check_ggn(ggn: Any) -> None:
    if not isinstance(ggn, GGN):
        raise TypeError(f"ggn must be a curvwidgets GGN operator; got {type(ggn).__name__}")


def _chunk_size(chunk_size: Optional[int]) -> Optional[int]:
    """``chunk_size`` checked: None, or an int >= 1."""
    return None if chunk_size is None else positive_int("chunk_size", chunk_size)


def _automatic_chunk(ggn: GGN, inputs: torch.Tensor) -> int:
    """The (sample, column) pairs per pass whose float64 gradients, and whose activations, each fit :data:`CHUNK_BYTES`.

    A sample's activations are what it adds to the largest tensor of a forward pass (measured on two samples of
    ``inputs``, by the operator's own probe); at most :data:`MAX_CHUNK` pairs.
    """
    activation = ggn._bytes_per_sample(inputs) if len(inputs) > 1 else 0
    return max(1, min(MAX_CHUNK, CHUNK_BYTES // (8 * ggn.dim), CHUNK_BYTES // max(1, activation)))


def _check_loss(ggn: GGN, what: str) -> None:
    """``ValueError`` naming ``loss_fn`` (and the estimators that take any loss) when its output Hessian has no closed form."""
    try:
        check_factored_loss(ggn.loss_fn)
    except ValueError as error:
        raise ValueError(f"{error}: {what} the output Hessian of these losses only; for another loss use "
                         "hutchinson_diagonal(ggn, num_samples) or exact_diagonal(ggn)") from None


def _factored_diagonal(ggn: GGN, source: ColumnSource, chunk_size: Optional[int], stage: str,
                       progress: Optional[ProgressCallback], cancel: Optional[CancelToken]) -> torch.Tensor:
    """``sum_n sum_c (J_n^T s_nc)^2`` over the batches of ``ggn`` (``/ W`` for a mean loss), the columns from ``source``.

    ``source(factor, index)`` gives, for the batch of position ``index`` and
    the factor of its output Hessian, the number ``C`` of columns per sample
    and a function returning columns ``start <= c < stop`` of every sample,
    shape ``(stop - start, b, ...)``; ``chunk_size`` None is set at the first batch
    (:func:`_automatic_chunk`). Batches of weight 0 are skipped; ``W`` is
    the total :func:`~curvwidgets.curvature.output_hessian.counted_weight`,
    as :meth:`GGN.matmat` scales (:meth:`~CurvatureOperator.of_all_data`).
    """
    total = torch.zeros(ggn.dim, dtype=torch.float64, device=ggn.device)
    weight = torch.zeros((), dtype=torch.float64, device=ggn.device)
    num_batches = ggn.data.batch_count()
    square_sums = _per_sample_squares if ggn.bn_mode == "eval" else _batch_squares

    def estimate() -> torch.Tensor:
        return ggn.of_all_data(total, weight).to(ggn.dtype) if weight > 0 else torch.full_like(total, torch.nan,
                                                                                                dtype=ggn.dtype)

    with ggn.evaluation_mode():
        primals, constants = ggn.functional_state()
        for step, (index, inputs, targets) in enumerate(ggn.data.batches(ggn.device, ggn.dtype), start=1):
            batch_weight = counted_weight(ggn.loss_fn, targets)
            if batch_weight > 0:
                if chunk_size is None:
                    chunk_size = _automatic_chunk(ggn, inputs)
                weight += batch_weight
                total += square_sums(ggn, primals, constants, inputs, targets, source, index, chunk_size)
            report(progress, cancel, stage, step, num_batches, partial=estimate)
    all_reduce_sum(total)
    ggn.check_total_weight(all_reduce_sum(weight))
    return ggn.of_all_data(total, weight).to(ggn.dtype)


def _factor_of(ggn: GGN, outputs: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> OutputHessianFactor:
    """The batch's output-Hessian factor; the loss evaluated first, so that data it cannot take are named."""
    with naming_data(inputs, targets):
        ggn._loss(outputs, targets)
    return output_hessian_factor(ggn.loss_fn, outputs, targets)


def _per_sample_squares(ggn: GGN, primals, constants, inputs: torch.Tensor, targets: torch.Tensor,
                        source: ColumnSource, index: int, chunk_size: int) -> torch.Tensor:
    """``sum_n sum_c (J_n^T s_nc)^2`` over one batch, float64 ``(P,)``: per-sample pullbacks (samples independent)."""
    with torch.no_grad(), naming_data(inputs, targets):
        outputs = ggn.outputs_function(constants, inputs)(*primals)
    rank, columns = source(_factor_of(ggn, outputs, inputs, targets), index)

    def squares(values, sample, sample_columns):  # sample (...), sample_columns (m, ...): one sample's columns
        _, pullback = torch.func.vjp(ggn.outputs_function(constants, from_parts(sample)[None]), *values)
        gradients = torch.func.vmap(pullback)(sample_columns[:, None])
        return tuple(gradient.to(torch.float64).square().sum(0) for gradient in gradients)

    per_sample = torch.func.vmap(squares, in_dims=(None, 0, 1))
    width = min(rank, chunk_size)  # columns per pass, and as many samples as fill chunk_size pairs
    samples = max(1, chunk_size // width)
    total = torch.zeros(ggn.dim, dtype=torch.float64, device=ggn.device)
    for first in range(0, rank, width):
        block = columns(first, min(first + width, rank))  # (m, b, ...)
        for begin in range(0, len(inputs), samples):
            pieces = per_sample(primals, parts_of(inputs[begin:begin + samples]), block[:, begin:begin + samples])
            total += ggn.layout.flatten(tuple(piece.sum(0) for piece in pieces))
    return total


def _batch_squares(ggn: GGN, primals, constants, inputs: torch.Tensor, targets: torch.Tensor,
                   source: ColumnSource, index: int, chunk_size: int) -> torch.Tensor:
    """As :func:`_per_sample_squares` where samples interact (batch statistics): each (sample, column) through the batch."""
    leaves = tuple(value.detach().requires_grad_(True) for value in primals)
    with torch.enable_grad(), naming_data(inputs, targets):  # autograd: BatchNorm updates its running statistics
        outputs = ggn.outputs_function(constants, inputs)(*leaves)
    rank, columns = source(_factor_of(ggn, outputs.detach(), inputs, targets), index)
    count = len(inputs)
    total = torch.zeros(ggn.dim, dtype=torch.float64, device=ggn.device)
    for begin in range(0, rank * count, chunk_size):
        pairs = torch.arange(begin, min(begin + chunk_size, rank * count), device=outputs.device)
        column, sample = pairs // count, pairs % count  # column-major: few columns per chunk
        first = int(column[0])
        block = columns(first, int(column[-1]) + 1)
        vectors = outputs.new_zeros(len(pairs), *outputs.shape)
        vectors[torch.arange(len(pairs), device=outputs.device), sample] = block[column - first, sample]
        gradients = torch.autograd.grad(outputs, leaves, grad_outputs=vectors, retain_graph=True,
                                        is_grads_batched=True, allow_unused=True, materialize_grads=True)
        total += ggn.layout.flatten(tuple(gradient.to(torch.float64).square().sum(0) for gradient in gradients))
    return total
