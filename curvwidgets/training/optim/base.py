"""The base class of optimisers that need the current mini-batch, not only its gradient."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import torch

from ...curvature.batches import Inputs, StructuredInputs, as_inputs, describe

__all__ = ["CurvatureOptimizer", "closure_loss", "momentum_step"]

Batch = Tuple[Inputs, torch.Tensor]


class CurvatureOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose ``step()`` also uses the mini-batch behind the gradient.

    The training loop hands over each mini-batch with :meth:`set_batch` before
    calling ``step()``; the usual order is::

        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.set_batch(inputs, targets)
        optimizer.step()

    A batch is used by one step only: ``step()`` consumes it, so a second
    ``step()`` without a new :meth:`set_batch` raises ``RuntimeError`` rather
    than silently reusing stale data. Plain optimisers (SGD, Adam, K-FAC) are
    not ``CurvatureOptimizer`` instances, so a loop can test
    ``isinstance(optimizer, CurvatureOptimizer)`` to know whether to call
    :meth:`set_batch`.
    """

    def __init__(self, params: Iterable[Any], defaults: Dict[str, Any]):
        super().__init__(params, defaults)
        self._batch: Optional[Batch] = None

    def set_batch(self, inputs: Any, targets: torch.Tensor) -> None:
        """Keep ``(inputs, targets)`` for the next ``step()``.

        ``inputs`` is a tensor, a tuple or a mapping of tensors (the model is
        called as ``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)``:
        :mod:`~curvwidgets.curvature.batches`). For a loss the model computes
        itself (:class:`~curvwidgets.losses.ModelLoss`) ``targets`` is the
        placeholder :func:`~curvwidgets.curvature.batches.no_targets`.

        Raises
        ------
        TypeError
            ``inputs`` is not a tensor, tuple or mapping of tensors, or ``targets`` not a tensor.
        ValueError
            Empty inputs, or inputs and targets with different first dimensions.
        """
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"set_batch needs targets as a tensor; got {type(targets).__name__}")
        try:
            inputs = as_inputs(inputs, "set_batch")
        except TypeError:
            raise TypeError(f"set_batch needs tensors (inputs, targets), the inputs possibly a tuple or mapping of "
                            f"tensors; got ({type(inputs).__name__}, {type(targets).__name__})") from None
        if (isinstance(inputs, torch.Tensor) and inputs.ndim == 0) or len(inputs) == 0:
            raise ValueError("set_batch: inputs must hold at least one sample (first dimension >= 1)")
        if targets.ndim == 0 or len(targets) != len(inputs):
            shapes = f"{tuple(inputs.shape)}" if isinstance(inputs, torch.Tensor) else describe(inputs)
            raise ValueError(f"set_batch: inputs and targets must have the same number of samples; got {shapes} "
                             f"and {tuple(targets.shape)}")
        detached = inputs.map(torch.Tensor.detach) if isinstance(inputs, StructuredInputs) else inputs.detach()
        self._batch = (detached, targets.detach())

    def _take_batch(self) -> Batch:
        """The batch of the last :meth:`set_batch`, consumed; ``RuntimeError`` if there is none."""
        if self._batch is None:
            raise RuntimeError(
                f"{type(self).__name__}.step() needs the mini-batch: call optimizer.set_batch(inputs, targets) "
                "before every step()"
            )
        batch, self._batch = self._batch, None
        return batch


def closure_loss(closure: Optional[Callable[[], torch.Tensor]]) -> Optional[torch.Tensor]:
    """The loss of ``closure()`` evaluated with gradients on (the ``torch.optim`` convention), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def momentum_step(state: Dict[str, Any], param: torch.Tensor, update: torch.Tensor, group: Dict[str, Any]) -> None:
    """``param -= lr * b`` with the heavy-ball buffer ``b <- momentum * b + update`` (``b = update`` at first).

    Without momentum ``b`` is ``update``; this is ``torch.optim.SGD`` without
    dampening or Nesterov, applied to a preconditioned ``update``.
    """
    if group["momentum"] != 0:
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = update.clone()
        else:
            state["momentum_buffer"].mul_(group["momentum"]).add_(update)
        update = state["momentum_buffer"]
    param.add_(update, alpha=-group["lr"])
