"""The data loop of curvature operators: batches moved to the device, shards per rank, seeded subsets.

A full-data curvature operator is the mean over every sample of ``data``, as
if the whole set were one batch (the operators weight each batch by what its
loss counts, see :func:`~curvwidgets.curvature.output_hessian.counted_weight`).
Under ``torch.distributed`` rank ``r`` of ``W`` takes the batches whose index
is ``r`` modulo ``W``; the operators sum over ranks with ``all_reduce``.

Every pass over ``data`` must see the same samples, or the operator is not one
matrix: each pass takes a fingerprint of its batches and compares it with the
first pass's, in order when the order matters (a subset, or BatchNorm using
batch statistics), as a multiset otherwise.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist

from .._validate import positive_int
from .batches import Inputs, as_inputs, describe, has_targets, moved, no_targets, sample_shape, sample_signatures

__all__ = ["DataSource", "world", "all_reduce_sum", "naming_data", "split_batch"]

Batch = Tuple[Inputs, torch.Tensor]
FINGERPRINT_RTOL = 1e-9  # fingerprints are sums of non-negative float64 terms: rounding stays far below this


def world() -> Tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless ``torch.distributed`` is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (a no-op in a single process); returns it."""
    if world()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def split_batch(batch: Any, inputs_only: bool = False, where: str = "data") -> Batch:
    """A batch as ``(inputs, targets)`` with as many samples (their first axis); inputs read by :func:`as_inputs`.

    With ``inputs_only`` (a model that computes its loss, see
    :class:`~curvwidgets.losses.ModelLoss`) the whole batch is the inputs and
    the targets are :func:`~curvwidgets.curvature.batches.no_targets`.
    ``where`` names the batch in errors.
    """
    if inputs_only:
        inputs = as_inputs(batch, where)
        if isinstance(inputs, torch.Tensor) and inputs.ndim == 0:
            raise ValueError(f"{where} must yield batches of samples along the first axis; got a scalar tensor")
        return inputs, no_targets(len(inputs), _device_of(inputs))
    if isinstance(batch, Mapping):
        raise TypeError(f"{where} must yield (inputs, targets) pairs; got a mapping with keys "
                        f"{sorted(map(str, batch))}: give ({{...inputs...}}, targets), or loss_fn=cw.ModelLoss() "
                        "when the model computes its loss from the batch")
    try:
        inputs, targets = batch
    except (TypeError, ValueError):
        raise TypeError(f"{where} must yield (inputs, targets) pairs; got a {type(batch).__name__}") from None
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{where} must yield targets as tensors; got ({type(inputs).__name__}, "
                        f"{type(targets).__name__})")
    inputs = as_inputs(inputs, where)
    if (isinstance(inputs, torch.Tensor) and inputs.ndim == 0) or targets.ndim == 0 or len(inputs) != len(targets):
        shapes = f"of shape {tuple(inputs.shape)}" if isinstance(inputs, torch.Tensor) else describe(inputs)
        raise ValueError(f"{where} must yield inputs and targets with as many samples (the first axis); got inputs "
                         f"{shapes} and targets of shape {tuple(targets.shape)}")
    return inputs, targets


def _device_of(inputs: Inputs) -> torch.device:
    return inputs.device if isinstance(inputs, torch.Tensor) else next(inputs.tensors()).device


@contextlib.contextmanager
def naming_data(inputs: Inputs, targets: torch.Tensor) -> Iterator[None]:
    """Run a model and loss on one batch; an error they raise on it becomes a ``ValueError`` naming ``data``.

    Inputs of another shape than the model takes, or targets outside the
    loss's classes, raise a ``RuntimeError`` or ``IndexError`` from deep inside
    torch; the ``ValueError`` says which batch (its shapes and dtypes) and
    keeps torch's message, chained. Running out of CUDA memory is not about
    the data and propagates unchanged.
    """
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, IndexError) as error:
        held = f" and targets of shape {tuple(targets.shape)} ({targets.dtype})" if has_targets(targets) else ""
        raise ValueError(f"data: the model or loss_fn failed on a batch of inputs {describe(inputs)}{held}: "
                         f"{type(error).__name__}: {error}") from error


def _fingerprint(inputs: Inputs, targets: torch.Tensor) -> torch.Tensor:
    """A batch's fingerprint ``[b, sum|s_i|, sum s_i^2, sum i |s_i|]`` over its sample signatures ``s_i``.

    The first three entries do not depend on the order of the samples (so the
    sum over batches describes the multiset of samples), the last one does.
    All are sums of non-negative terms, so recomputing them from the same
    samples agrees to rounding (relative ``~1e-13``). Shape ``(4,)``, float64, on the CPU.
    """
    signatures = (sample_signatures(inputs) + sample_signatures(targets)).abs()
    positions = torch.arange(1, len(signatures) + 1, dtype=torch.float64, device=signatures.device)
    count = torch.tensor(float(len(signatures)), dtype=torch.float64, device=signatures.device)
    return torch.stack([count, signatures.sum(), (signatures * signatures).sum(), (positions * signatures).sum()]).cpu()


def _not_iterable_message(data: Any) -> str:
    from ..training.data import DataSet  # imported only to name the fix for a DataSet

    message = f"data must be a re-iterable of (inputs, targets) batches (a list or DataLoader); got {type(data).__name__}"
    if isinstance(data, DataSet):
        message += (": pass dataset.evaluation_loader('train'), its training split in a fixed order without "
                     "augmentation (dataset.train shuffles and augments)")
    return message


class DataSource:
    """A re-iterable of ``(inputs, targets)`` batches, sharded over ranks, optionally subsampled.

    Parameters
    ----------
    data : iterable of (inputs, Tensor)
        Any re-iterable (a list of batches, a ``DataLoader``); the first axis
        of ``inputs`` (a tensor, or each tensor of a tuple or mapping: see
        :func:`~curvwidgets.curvature.batches.as_inputs`) and ``targets``
        indexes samples. Every pass must yield
        the same samples (no random augmentation).
    num_samples : int, optional
        Use a subset of this many samples, drawn without replacement with
        ``seed``. The subset is fixed by sample position, so ``data`` must
        iterate in the same order each time (no shuffling).
    seed : int, default: 0
    fixed_order : bool, default: False
        Require the same batches in the same order on every pass even without
        ``num_samples`` (as BatchNorm with batch statistics does).
    inputs_only : bool, default: False
        Each batch is the model's inputs alone, without targets (a model that
        computes its loss: :class:`~curvwidgets.losses.ModelLoss`).

    Raises
    ------
    ValueError
        Empty data; ``num_samples`` not in ``[1, number of samples]``; and,
        from :meth:`batches`, a pass whose samples (or, where the order
        matters, whose batches) differ from the first pass's.
    TypeError
        ``data`` not iterable (a ``DataSet``: use its ``evaluation_loader``),
        or not yielding pairs of tensors.
    """

    def __init__(self, data: Iterable, num_samples: Optional[int] = None, seed: int = 0, fixed_order: bool = False,
                 inputs_only: bool = False):
        if isinstance(data, torch.Tensor) or not hasattr(data, "__iter__"):
            raise TypeError(_not_iterable_message(data))
        if iter(data) is data:
            raise TypeError("data must be re-iterable (a list or DataLoader), not a one-shot iterator or generator")
        self.data, self.inputs_only = data, inputs_only
        first = next(iter(data), None)
        if first is None or len(self._split(first)[0]) == 0:
            raise ValueError("data is empty: it yields no batch, or an empty first batch")
        self.fixed_order = fixed_order or num_samples is not None
        self.selection: Optional[torch.Tensor] = None
        self._reference: Optional[torch.Tensor] = None  # the first pass's fingerprints, shape (batches, 4)
        if num_samples is not None:
            num_samples = positive_int("num_samples", num_samples)
            self._reference = torch.stack([_fingerprint(*self._split(batch)) for batch in data])
            total = int(self._reference[:, 0].sum())
            if num_samples > total:
                raise ValueError(f"num_samples must be an int in [1, {total}] (the size of data); got {num_samples!r}")
            generator = torch.Generator().manual_seed(int(seed))
            self.selection = torch.randperm(total, generator=generator)[:num_samples].sort().values

    def batches(self, device: torch.device, dtype: Optional[torch.dtype] = None) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """This rank's batches as ``(index, inputs, targets)`` on ``device``.

        ``index`` is the batch's position in ``data`` (the same on every
        rank, so per-batch random draws can be seeded by it); floating
        inputs and targets are cast to ``dtype`` when given. A pass that runs
        to its end is checked against the first one (see :class:`DataSource`).
        """
        rank, size = world()
        offset = 0
        prints: List[torch.Tensor] = []
        sample_shape = None
        for index, batch in enumerate(self.data):
            inputs, targets = self._split(batch)
            sample_shape = _same_sample_shape(sample_shape, inputs, index)
            prints.append(_fingerprint(inputs, targets))
            count = len(inputs)
            rows = None
            if self.selection is not None:
                lower, upper = torch.searchsorted(self.selection, torch.tensor([offset, offset + count]))
                rows = self.selection[lower:upper] - offset
            offset += count
            if index % size != rank or (rows is not None and rows.numel() == 0):
                continue
            if rows is not None:
                inputs, targets = inputs[rows], targets[rows]
            yield index, moved(inputs, device, dtype), moved(targets, device, dtype)
        self._compare(torch.stack(prints))

    def _split(self, batch: Any) -> Batch:
        return split_batch(batch, self.inputs_only)

    def batch_count(self) -> int:
        """How many batches :meth:`batches` yields on this rank (a pass over ``data`` if it has no ``len``)."""
        rank, size = world()
        if self.selection is not None:
            ends = torch.cumsum(self._reference[:, 0], 0).long()
            starts = ends - self._reference[:, 0].long()
            selected = torch.searchsorted(self.selection, ends) - torch.searchsorted(self.selection, starts)
            return sum(1 for index, rows in enumerate(selected.tolist()) if index % size == rank and rows > 0)
        try:
            total = len(self.data)
        except TypeError:
            total = sum(1 for _ in self.data)
        return len(range(rank, total, size))

    def _compare(self, prints: torch.Tensor) -> None:
        """Keep the first pass's fingerprints; raise if a later pass's differ."""
        if self._reference is None:
            self._reference = prints
            return
        reference = self._reference
        if not self.fixed_order:  # the multiset of samples: order-free entries summed over batches
            prints, reference = prints[:, :3].sum(0), reference[:, :3].sum(0)
        if prints.shape == reference.shape and torch.allclose(prints, reference, rtol=FINGERPRINT_RTOL, atol=0.0,
                                                              equal_nan=True):
            return
        if self.fixed_order:
            raise ValueError(
                "data must yield the same batches in the same order on every pass when num_samples= or "
                "bn_mode='train' is used, but this pass differed from the first: a shuffling DataLoader? "
                "Use shuffle=False (or a DataSet's evaluation_loader('train'))"
            )
        raise ValueError(
            "data must yield the same samples on every pass, but this pass differed from the first: random "
            "augmentation? A curvature operator needs fixed data (a DataSet's evaluation_loader('train'))"
        )


def _same_sample_shape(first: Any, inputs: Inputs, index: int) -> Any:
    """The shape of one input sample (:func:`sample_shape`); ``ValueError`` when it is not ``first`` (batch 0's)."""
    shape = sample_shape(inputs)
    if first is not None and shape != first:
        raise ValueError(f"data must yield inputs of one shape per sample; batch {index} has "
                         f"{tuple(shape)}, batch 0 has {tuple(first)}")
    return shape
