"""Losses beyond ``torch.nn``: cross-entropy for sequence models whose logits put the vocabulary last, and the
loss a model computes itself from its batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import integer

__all__ = ["SequenceCrossEntropyLoss", "ModelLoss"]


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


class ModelLoss:
    """``loss_fn`` for a model that computes its own loss from the batch, as Hugging Face models do given ``labels``.

    With it, every batch of ``data`` is the model's inputs and nothing else:
    a tensor (``model(batch)``), a tuple (``model(*batch)``) or a mapping
    (``model(**batch)``, e.g. ``{"input_ids": ..., "labels": ...}``); the
    targets, if any, are among them. The model's output holds the loss: a
    scalar tensor, a mapping with ``"loss"`` or an object with ``.loss``.

    The curvature is that of this loss over all of ``data`` as one batch,
    as for any ``loss_fn``: the mean of the batches' losses weighted by what
    each batch counts (``count``; its samples by default), or their sum for
    ``reduction="sum"``. ``cw.Hessian``, ``cw.loss_stats``, the Hessian
    diagonals, ``cw.landscape`` and ``cw.train`` take it. The GGN
    (``cw.GGN``, ``cw.ggn_diagonal``) needs the loss as a function of the
    outputs, which such a model does not expose: give that function as
    ``loss_fn`` and ``(inputs, targets)`` batches instead.

    Parameters
    ----------
    loss : str or callable, default: "loss"
        Where the loss is in the model's output: the key of a mapping or the
        name of an attribute, or a function of the output returning the
        scalar loss. A scalar tensor output is the loss itself.
    reduction : {"mean", "sum"}, default: "mean"
        How the model's loss reduces its batch.
    count : callable, optional
        ``count(batch) -> number``: what the model's mean loss divides by in
        a batch (e.g. ``lambda b: (b["labels"] != -100).sum()`` for a token
        mean), so that batches of different sizes are weighted as one batch
        of all of them. By default the number of samples (the first axis).

    Examples
    --------
    >>> import torch, curvwidgets as cw
    >>> class Regression(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.linear = torch.nn.Linear(3, 1)
    ...     def forward(self, x, y):
    ...         return {"loss": torch.nn.functional.mse_loss(self.linear(x), y)}
    >>> data = [{"x": torch.randn(8, 3), "y": torch.randn(8, 1)}]
    >>> cw.Hessian(Regression(), cw.ModelLoss(), data).dim
    4
    """

    def __init__(self, loss: Union[str, Callable[[Any], torch.Tensor]] = "loss", reduction: str = "mean",
                 count: Optional[Callable[[Any], Any]] = None):
        if not (isinstance(loss, str) or callable(loss)):
            raise TypeError(f"loss must be the name of the loss in the model's output or a function of the output; "
                            f"got {type(loss).__name__}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
        if count is not None and not callable(count):
            raise TypeError(f"count must be None or callable as count(batch); got {type(count).__name__}")
        self.loss, self.reduction, self.count = loss, reduction, count

    def loss_of(self, outputs: Any) -> torch.Tensor:
        """The scalar loss in the model's ``outputs``; ``TypeError`` naming ``model`` when there is none."""
        if callable(self.loss):
            found, where = self.loss(outputs), "the loss function's value"
        elif isinstance(outputs, torch.Tensor):
            found, where = outputs, "the tensor it returned"
        else:
            found = outputs.get(self.loss) if isinstance(outputs, Mapping) else getattr(outputs, self.loss, None)
            where = f"{self.loss!r} of the {type(outputs).__name__} it returned"
        if not isinstance(found, torch.Tensor) or found.ndim != 0:
            what = f"of shape {tuple(found.shape)}" if isinstance(found, torch.Tensor) else type(found).__name__
            raise TypeError(f"model must return its scalar loss for loss_fn={self!r} (a scalar tensor, a mapping "
                            f"with 'loss' or an object with .loss); {where} is {what}")
        return found

    def weight(self, batch: Any, samples: int) -> float:
        """What ``batch`` (as ``data`` yielded it) counts in the mean over batches: ``count(batch)``, or ``samples``."""
        if self.count is None:
            return float(samples)
        counted = self.count(batch)
        return float(counted.item() if isinstance(counted, torch.Tensor) else counted)

    def __call__(self, loss: torch.Tensor, targets: Any = None) -> torch.Tensor:
        """The loss that :meth:`loss_of` read, unchanged (the batch holds no separate targets)."""
        return loss

    def __repr__(self) -> str:
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", "function")
        return f"ModelLoss(loss={loss!r}, reduction={self.reduction!r})"
