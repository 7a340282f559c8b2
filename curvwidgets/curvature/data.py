"""The data loop of curvature operators: batches moved to the device, shards per rank, seeded subsets.

A full-data curvature operator is the mean over every sample of ``data``,
weighted by batch size, exactly as if the whole set were one batch. Under
``torch.distributed`` rank ``r`` of ``W`` takes the batches whose index is
``r`` modulo ``W``; the operators sum over ranks with ``all_reduce``.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = ["DataSource", "world", "all_reduce_sum"]

Batch = Tuple[torch.Tensor, torch.Tensor]


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


def _split(batch: Any) -> Batch:
    try:
        inputs, targets = batch
    except (TypeError, ValueError):
        raise TypeError(f"data must yield (inputs, targets) pairs; got a {type(batch).__name__}") from None
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(f"data must yield pairs of tensors; got ({type(inputs).__name__}, {type(targets).__name__})")
    return inputs, targets


class DataSource:
    """A re-iterable of ``(inputs, targets)`` batches, sharded over ranks, optionally subsampled.

    Parameters
    ----------
    data : iterable of (Tensor, Tensor)
        Any re-iterable (a list of batches, a ``DataLoader``); the first axis
        of ``inputs`` and ``targets`` indexes samples.
    num_samples : int, optional
        Use a subset of this many samples, drawn without replacement with
        ``seed``. The subset is fixed by sample position, so ``data`` must
        iterate in the same order each time (no shuffling).
    seed : int, default: 0

    Raises
    ------
    ValueError
        Empty data; ``num_samples`` not in ``[1, number of samples]``.
    TypeError
        ``data`` not iterable, or not yielding pairs of tensors.
    """

    def __init__(self, data: Iterable, num_samples: Optional[int] = None, seed: int = 0):
        if isinstance(data, torch.Tensor) or not hasattr(data, "__iter__"):
            raise TypeError(f"data must be a re-iterable of (inputs, targets) batches; got {type(data).__name__}")
        if iter(data) is data:
            raise TypeError("data must be re-iterable (a list or DataLoader), not a one-shot iterator or generator")
        self.data = data
        first = next(iter(data), None)
        if first is None or len(_split(first)[0]) == 0:
            raise ValueError("data is empty: it yields no batch, or an empty first batch")
        self.selection: Optional[torch.Tensor] = None
        if num_samples is not None:
            total = sum(len(_split(batch)[0]) for batch in data)
            if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= total:
                raise ValueError(f"num_samples must be an int in [1, {total}] (the size of data); got {num_samples!r}")
            generator = torch.Generator().manual_seed(int(seed))
            self.selection = torch.randperm(total, generator=generator)[:num_samples].sort().values

    def batches(self, device: torch.device, dtype: Optional[torch.dtype] = None) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """This rank's batches as ``(index, inputs, targets)`` on ``device``.

        ``index`` is the batch's position in ``data`` (the same on every
        rank, so per-batch random draws can be seeded by it); floating
        inputs and targets are cast to ``dtype`` when given.
        """
        rank, size = world()
        offset = 0
        for index, batch in enumerate(self.data):
            inputs, targets = _split(batch)
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
            inputs = inputs.to(device, non_blocking=True)
            if dtype is not None and inputs.is_floating_point():
                inputs = inputs.to(dtype)
            targets = targets.to(device, non_blocking=True)
            if dtype is not None and targets.is_floating_point():
                targets = targets.to(dtype)
            yield index, inputs, targets
