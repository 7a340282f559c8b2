"""What a batch may hold: a model's inputs as one tensor, a tuple or a mapping of tensors; its outputs with ``.logits``.

The curvature operators, ``loss_stats``, the diagonals and the landscapes
read every batch ``(inputs, targets)`` through this module:

- ``inputs`` is a tensor (``model(inputs)``), a tuple or list of tensors
  (``model(*inputs)``) or a mapping of names to tensors (``model(**inputs)``,
  as Hugging Face models take ``input_ids`` and ``attention_mask``); the first
  axis of every tensor indexes the samples, as it does for ``targets``;
- the model's output is a tensor, a mapping with ``"logits"``, or an object
  with a ``.logits`` tensor (a Hugging Face ``ModelOutput``): the logits are
  what the loss and the output Hessian see;
- with ``loss_fn=cw.ModelLoss()`` the model computes its loss itself: each
  batch is its inputs alone (any of the three forms, the labels among them),
  read with :func:`no_targets` standing for the targets, and the loss is read
  from the model's output (:meth:`~curvwidgets.losses.ModelLoss.loss_of`).

A model called in any other way (outputs in a tuple, arguments to rename)
takes an ``nn.Module`` wrapping it, whose ``forward`` takes the batch's
inputs and returns the logits or the loss: its parameters are the model's.

Several tensors travel as :class:`StructuredInputs`, which slices, splits,
joins and moves like one tensor (``len``, ``x[rows]``, ``x.split(n)``,
``x.to(device, dtype)``), so the code that cuts batches into passes does not
change; a plain tensor is left as it is (nothing added to the usual path).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..losses import ModelLoss

__all__ = ["StructuredInputs", "Inputs", "as_inputs", "model_arguments", "logits_of", "outputs_reader", "no_targets",
           "has_targets", "describe", "sample_shape", "sample_signatures", "concatenate", "parts_of", "from_parts",
           "moved"]


class StructuredInputs:
    """A model's inputs of several tensors, the samples along the first axis of each.

    Parameters
    ----------
    parts : tuple of Tensor, or mapping of str to Tensor
        Passed to the model as positional (a tuple) or keyword (a mapping) arguments.
    """

    def __init__(self, parts: Union[Tuple[torch.Tensor, ...], Mapping[str, torch.Tensor]]):
        self.parts = dict(parts) if isinstance(parts, Mapping) else tuple(parts)

    def tensors(self) -> Iterator[torch.Tensor]:
        """The tensors, in order."""
        return iter(self.parts.values() if isinstance(self.parts, dict) else self.parts)

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> "StructuredInputs":
        """The same structure with ``function`` applied to every tensor."""
        if isinstance(self.parts, dict):
            return StructuredInputs({name: function(tensor) for name, tensor in self.parts.items()})
        return StructuredInputs(tuple(function(tensor) for tensor in self.parts))

    def __len__(self) -> int:
        return len(next(self.tensors()))

    def __getitem__(self, rows: Any) -> "StructuredInputs":
        return self.map(lambda tensor: tensor[rows])

    def split(self, size: int) -> Tuple["StructuredInputs", ...]:
        """Consecutive pieces of at most ``size`` samples, as :meth:`torch.Tensor.split`."""
        return tuple(self[start : start + size] for start in range(0, len(self), size))

    def to(self, device: Union[torch.device, str, None] = None, dtype: Optional[torch.dtype] = None,
           non_blocking: bool = False) -> "StructuredInputs":
        """On ``device``; floating tensors cast to ``dtype`` when given (token ids and masks keep theirs)."""
        def move(tensor: torch.Tensor) -> torch.Tensor:
            tensor = tensor.to(device, non_blocking=non_blocking) if device is not None else tensor
            return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
        return self.map(move)

    def __repr__(self) -> str:
        return f"StructuredInputs({describe(self)})"


Inputs = Union[torch.Tensor, StructuredInputs]


def as_inputs(value: Any, where: str = "data") -> Inputs:
    """A batch's ``inputs`` as a tensor or :class:`StructuredInputs`; ``TypeError`` naming ``where`` otherwise.

    A tuple, list or mapping must hold tensors only, with as many samples
    (first axis) each: else ``TypeError`` or ``ValueError`` naming what was found.
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, StructuredInputs):
        return value
    if isinstance(value, Mapping) or (isinstance(value, (tuple, list)) and value):
        items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
        wrong = [f"{key!r}: {type(tensor).__name__}" for key, tensor in items if not isinstance(tensor, torch.Tensor)]
        if not items or wrong:
            raise TypeError(f"{where}: inputs given as a {type(value).__name__} must hold tensors only; got "
                            f"{', '.join(wrong) if wrong else 'an empty one'}")
        if any(tensor.ndim == 0 for _, tensor in items) or len({len(tensor) for _, tensor in items}) != 1:
            shapes = ", ".join(f"{key!r}: {tuple(tensor.shape)}" for key, tensor in items)
            raise ValueError(f"{where}: the tensors of the inputs must have as many samples (their first axis); "
                             f"got {shapes}")
        return StructuredInputs(dict(value) if isinstance(value, Mapping) else tuple(value))
    raise TypeError(f"{where}: inputs must be a tensor, a tuple of tensors or a mapping of names to tensors; got "
                    f"{type(value).__name__}")


def model_arguments(inputs: Inputs) -> Tuple[tuple, Dict[str, torch.Tensor]]:
    """``(args, kwargs)`` the model is called with: ``(inputs,)``, ``inputs`` spread, or keyword arguments."""
    if isinstance(inputs, StructuredInputs):
        if isinstance(inputs.parts, dict):
            return (), inputs.parts
        return inputs.parts, {}
    return (inputs,), {}


def logits_of(outputs: Any) -> torch.Tensor:
    """The tensor the loss takes: ``outputs`` itself, ``outputs["logits"]`` or ``outputs.logits``.

    Raises
    ------
    TypeError
        Naming ``model`` and what it returned, when none of these is a tensor.
    """
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = outputs.get("logits") if isinstance(outputs, Mapping) else getattr(outputs, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    found = f"a mapping with keys {sorted(map(str, outputs))}" if isinstance(outputs, Mapping) else (
        f"a {type(outputs).__name__} without a .logits tensor")
    raise TypeError(f"model must return a tensor of outputs, a mapping with a 'logits' tensor or an object with a "
                    f".logits tensor (as Hugging Face models do); got {found}")


def outputs_reader(loss_fn: Callable) -> Callable[[Any], torch.Tensor]:
    """What ``loss_fn`` takes from the model's output: the loss for a :class:`~curvwidgets.losses.ModelLoss`,
    the logits (:func:`logits_of`) otherwise."""
    return loss_fn.loss_of if isinstance(loss_fn, ModelLoss) else logits_of


def no_targets(samples: int, device: Union[torch.device, str, None] = None) -> torch.Tensor:
    """The targets of a batch that holds none, shape ``(samples, 0)``: it slices, joins and moves as targets do."""
    return torch.zeros(samples, 0, device=device)


def has_targets(targets: torch.Tensor) -> bool:
    """False for :func:`no_targets`' placeholder (no entries per sample), True for real targets."""
    return not (targets.ndim == 2 and targets.shape[1] == 0)


def describe(inputs: Inputs) -> str:
    """The shapes and dtypes of ``inputs``, for messages.

    ``"of shape (8, 3, 32, 32) (torch.float32)"`` for a tensor;
    ``"{'input_ids': (8, 16) (torch.int64), ...}"`` for several.
    """
    if isinstance(inputs, StructuredInputs):
        keys = inputs.parts.keys() if isinstance(inputs.parts, dict) else range(len(inputs.parts))
        return "{" + ", ".join(f"{key!r}: {tuple(tensor.shape)} ({tensor.dtype})"
                               for key, tensor in zip(keys, inputs.tensors())) + "}"
    return f"of shape {tuple(inputs.shape)} ({inputs.dtype})"


def sample_shape(inputs: Inputs) -> Any:
    """The shape of one sample: ``inputs.shape[1:]``, or a tuple of them for several tensors."""
    if isinstance(inputs, StructuredInputs):
        return tuple(tensor.shape[1:] for tensor in inputs.tensors())
    return inputs.shape[1:]


def sample_signatures(inputs: Inputs) -> torch.Tensor:
    """One float64 number per sample, shape ``(b,)``: its entries dotted with a ramp, summed over the tensors."""
    if isinstance(inputs, StructuredInputs):
        return sum(sample_signatures(tensor) for tensor in inputs.tensors())
    flat = inputs.detach().reshape(inputs.shape[0], math.prod(inputs.shape[1:])).to(torch.float64)
    return flat @ torch.linspace(1.0, 2.0, flat.shape[1], dtype=torch.float64, device=flat.device)


def concatenate(pieces: Sequence[Inputs]) -> Inputs:
    """The samples of ``pieces`` (all tensors, or all of one structure) joined along the first axis."""
    first = pieces[0]
    if not isinstance(first, StructuredInputs):
        return torch.cat(list(pieces))
    if isinstance(first.parts, dict):
        return StructuredInputs({name: torch.cat([piece.parts[name] for piece in pieces]) for name in first.parts})
    return StructuredInputs(tuple(torch.cat(column) for column in zip(*(piece.parts for piece in pieces))))


def parts_of(inputs: Inputs) -> Any:
    """What ``torch.func.vmap`` maps over: the tensor, or the tuple or dict of tensors."""
    return inputs.parts if isinstance(inputs, StructuredInputs) else inputs


def from_parts(parts: Any) -> Inputs:
    """The inverse of :func:`parts_of`."""
    return parts if isinstance(parts, torch.Tensor) else StructuredInputs(parts)


def moved(inputs: Inputs, device: torch.device, dtype: Optional[torch.dtype] = None) -> Inputs:
    """``inputs`` on ``device``; floating tensors cast to ``dtype`` when given."""
    if isinstance(inputs, StructuredInputs):
        return inputs.to(device, dtype, non_blocking=True)
    inputs = inputs.to(device, non_blocking=True)
    return inputs.to(dtype) if dtype is not None and inputs.is_floating_point() else inputs
