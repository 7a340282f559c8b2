"""How ``cw.train`` reads its batches: through the curvature layer's adapter (:mod:`curvwidgets.curvature.batches`).

A training or test batch is ``(inputs, targets)``, ``inputs`` a tensor
(``model(inputs)``), a tuple of tensors (``model(*inputs)``) or a mapping of
names to tensors (``model(**inputs)``); the model returns its logits, a
mapping with ``"logits"`` or an object with ``.logits``. With
``loss_fn=cw.ModelLoss()`` a batch is the inputs alone and the model returns
its loss (:class:`~curvwidgets.losses.ModelLoss`).

A plain tensor batch takes the path it always took: ``inputs.to(device)``,
``model(inputs)``, ``loss_fn(outputs, targets)``, the same operations and so
the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Tuple

import torch
from torch import nn

from ..curvature.batches import Inputs, StructuredInputs, model_arguments, outputs_reader
from ..curvature.data import split_batch
from ..curvature.output_hessian import counted_weight, reduction_of
from ..losses import ModelLoss

__all__ = ["BatchReader", "top_hits", "update_batch_norm"]


class BatchReader:
    """The batches of one loss: read, moved to the device, fed to the model, weighted and scored.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(logits, targets)``, or a :class:`~curvwidgets.losses.ModelLoss`
        (each batch the inputs alone; the loss read from the model's output).
    device : torch.device
    channels_last : bool, default: False
        Every 4-d input tensor in the channels-last memory format.
    where : str, default: "data"
        Names the batches in errors (``split_batch``'s messages).
    """

    def __init__(self, loss_fn: Callable, device: torch.device, channels_last: bool = False, where: str = "data"):
        self.loss_fn, self.device, self.channels_last, self.where = loss_fn, device, channels_last, where
        self.inputs_only = isinstance(loss_fn, ModelLoss)
        self.read = outputs_reader(loss_fn)
        self.class_dim = getattr(loss_fn, "class_dim", 1)
        self.ignore_index = getattr(loss_fn, "ignore_index", None)  # nn.CrossEntropyLoss, NLLLoss, SequenceCrossEntropyLoss
        self.sum_reduced = self.inputs_only and reduction_of(loss_fn) == "sum"

    def batch(self, batch: Any) -> Tuple[Inputs, torch.Tensor]:
        """``(inputs, targets)`` on the device; ``TypeError``/``ValueError`` naming ``where`` when unreadable.

        With a ``ModelLoss`` the targets are the placeholder of shape ``(b, 0)``.
        """
        inputs, targets = split_batch(batch, self.inputs_only, self.where)
        inputs = inputs.to(self.device, non_blocking=True)  # a tensor or StructuredInputs alike
        if self.channels_last:
            inputs = inputs.map(_channels_last) if isinstance(inputs, StructuredInputs) else _channels_last(inputs)
        return inputs, targets.to(self.device, non_blocking=True)

    def loss(self, model: nn.Module, inputs: Inputs, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(loss, outputs)``: the model called on ``inputs``, ``outputs`` what the loss takes (logits, or its loss)."""
        args, kwargs = model_arguments(inputs)
        outputs = self.read(model(*args, **kwargs))
        return self.loss_fn(outputs, targets), outputs

    def weight(self, inputs: Inputs, targets: torch.Tensor) -> float:
        """What the batch counts in a mean loss over batches: a ``ModelLoss``'s count (or samples), else samples."""
        return counted_weight(self.loss_fn, targets, inputs) if self.inputs_only else len(targets)

    def weighted(self, loss: torch.Tensor, weight: float) -> torch.Tensor:
        """The batch's share of the summed loss (float64): ``loss * weight``, or ``loss`` for a summing ``ModelLoss``."""
        loss = loss.detach().double()
        return loss if self.sum_reduced else loss * weight

    def hits(self, outputs: torch.Tensor, targets: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-1 and top-``k`` hits of the batch and the targets scored (:func:`top_hits`); NaN hits without class targets.

        No class targets: a ``ModelLoss`` (no targets), or floating-point
        targets (regression, class probabilities); the samples are then the
        targets scored. Targets equal to the loss's ``ignore_index`` are not scored.
        """
        if self.inputs_only or targets.is_floating_point():
            nan = torch.full((), math.nan, dtype=torch.float64, device=targets.device)
            return nan, nan, torch.full((), float(len(targets)), dtype=torch.float64, device=targets.device)
        return top_hits(outputs, targets, self.class_dim, k, self.ignore_index)


def top_hits(outputs: torch.Tensor, targets: torch.Tensor, class_dim: int, k: int,
             ignore_index: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-1 and top-``k`` hits of a batch and the number of targets scored (float64 0-d tensors, on the device).

    ``outputs`` holds the classes on axis ``class_dim`` and ``targets`` the
    outputs' shape without it: ``(b,)``, or ``(b, *positions)`` (a token
    per position). Every target is scored but those equal to
    ``ignore_index``, so hits over scored targets is the accuracy per sample,
    or per token, that the loss counts.
    """
    top = outputs.topk(min(k, outputs.shape[class_dim]), dim=class_dim).indices.movedim(class_dim, -1)
    scored = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    hits = (top == targets[..., None]) & scored[..., None]
    return hits[..., 0].double().sum(), hits.any(-1).double().sum(), scored.double().sum()


@torch.no_grad()
def update_batch_norm(model: nn.Module, batches: Iterable, reader: BatchReader) -> None:
    """Fresh BatchNorm running statistics of ``model``: their cumulative average over one pass of ``batches``.

    What ``torch.optim.swa_utils.update_bn`` does, with the batches read by
    ``reader`` (inputs of any structure; a tensor moved and passed as there).
    Without BatchNorm layers the data is not read.
    """
    momenta = {module: module.momentum for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)}
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.reset_running_stats()
        module.momentum = None
    for batch in batches:
        args, kwargs = model_arguments(reader.batch(batch)[0])
        model(*args, **kwargs)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A 4-d tensor in the channels-last memory format; any other unchanged."""
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor
