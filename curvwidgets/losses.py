"""Losses beyond ``torch.nn``: cross-entropy for sequence models whose logits put the vocabulary last."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import integer

__all__ = ["SequenceCrossEntropyLoss"]


class SequenceCrossEntropyLoss(nn.Module):
    """The mean cross-entropy over every position of a sequence: logits ``(B, T, V)``, targets ``(B, T)``.

    Language models (such as :class:`~curvwidgets.training.models.TinyTransformer`)
    return the vocabulary on the last axis, where :class:`torch.nn.CrossEntropyLoss`
    reads the classes on axis 1. This loss is
    ``F.cross_entropy(outputs.reshape(-1, V), targets.reshape(-1), ignore_index=ignore_index)``:
    the mean over the tokens of the batch whose target is not ``ignore_index``
    (padding, or a prompt that is not scored).

    Parameters
    ----------
    ignore_index : int, default: -100
        A target that is not a token and does not count, as in
        :class:`torch.nn.CrossEntropyLoss` (and Hugging Face labels).

    Attributes
    ----------
    ignore_index : int
    reduction : str
        Always ``"mean"``.
    class_dim : int
        ``-1``: the axis of the outputs that holds the classes. ``cw.train``
        reads it for the accuracy (the top output over this axis against the
        target, at every position).

    Notes
    -----
    The curvature code weights a batch by its number of counted tokens (``B T``
    when no target is ``ignore_index``;
    :func:`~curvwidgets.curvature.output_hessian.counted_weight`), so that
    ``cw.Hessian`` and ``cw.GGN`` are the curvature of the mean loss over
    every token of the data, and splits batches into passes of fewer
    sequences where that is faster.

    Examples
    --------
    >>> loss = SequenceCrossEntropyLoss()
    >>> float(loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.int64)))  # log 4
    1.3862943649291992
    """

    reduction = "mean"
    class_dim = -1

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = integer("ignore_index", ignore_index)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of logits ``(..., V)`` against targets of their shape less ``V``, over those counted."""
        if outputs.ndim < 2 or outputs.shape[:-1] != targets.shape:
            raise ValueError(f"SequenceCrossEntropyLoss needs logits (B, T, V) and targets (B, T); got "
                             f"{tuple(outputs.shape)} and {tuple(targets.shape)}")
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1),
                               ignore_index=self.ignore_index)
