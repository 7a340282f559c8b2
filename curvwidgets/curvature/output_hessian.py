"""Products with the Hessian of the loss with respect to the network outputs, ``H_L u``, and how a loss reduces a batch.

Closed forms for :class:`torch.nn.CrossEntropyLoss` (class-index targets, no
class weights or label smoothing) and :class:`torch.nn.MSELoss`; forward-over-
reverse autograd for any other twice-differentiable loss.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["reduction_of", "counted_weight", "splits_by_sample", "output_hessian_product", "closed_form_kind"]

#: Losses whose batch value is the :func:`counted_weight`-weighted mean (or the sum) of per-sample terms.
SAMPLE_SEPARABLE_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MSELoss)


def reduction_of(loss_fn: Callable) -> str:
    """``"sum"`` when ``loss_fn`` sums over samples (its ``reduction`` attribute), else ``"mean"``."""
    return "sum" if getattr(loss_fn, "reduction", "mean") == "sum" else "mean"


def counted_weight(loss_fn: Callable, targets: torch.Tensor) -> float:
    """The total weight ``W_b`` of a batch's samples in ``loss_fn``: what its mean reduction divides by.

    ``len(targets)`` for most losses. For :class:`torch.nn.CrossEntropyLoss`
    and :class:`torch.nn.NLLLoss` with class-index targets, the sum of the
    class weights (1 without ``weight=``) of the targets that are not
    ``ignore_index``, as those losses count them. Weighting the batch means by
    ``W_b`` makes their average the mean loss of one batch of every sample.

    Parameters
    ----------
    targets : Tensor, shape (b, ...)

    Returns
    -------
    float
        ``W_b >= 0``; 0 when every target of the batch is ignored.
    """
    if not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) or targets.is_floating_point():
        return float(len(targets))
    counted = targets != loss_fn.ignore_index
    if loss_fn.weight is None:
        return float(counted.sum())
    weights = loss_fn.weight.to(device=targets.device, dtype=torch.float64)
    classes = torch.where(counted, targets, 0).clamp(0, len(weights) - 1)  # out-of-range labels: the loss says so
    return float((weights[classes] * counted).sum())


def splits_by_sample(loss_fn: Callable) -> bool:
    """Whether ``loss_fn`` of a batch is the :func:`counted_weight`-weighted mean of its parts' losses.

    True for :data:`SAMPLE_SEPARABLE_LOSSES` with ``reduction="mean"`` or
    ``"sum"`` (then the sum of the parts'); a batch of such a loss may be
    split into passes of fewer samples without changing its curvature.
    False for any other callable, whose reduction is unknown.
    """
    return isinstance(loss_fn, SAMPLE_SEPARABLE_LOSSES) and loss_fn.reduction in ("mean", "sum")


def closed_form_kind(loss_fn: Callable, outputs: torch.Tensor, targets: torch.Tensor) -> str:
    """``"cross_entropy"``, ``"mse"`` or ``"autograd"``: how :func:`output_hessian_product` will work."""
    if isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.reduction in ("mean", "sum"):
        plain = loss_fn.weight is None and loss_fn.label_smoothing == 0.0
        indices = outputs.ndim == 2 and targets.ndim == 1 and not targets.is_floating_point()
        if plain and indices and not bool((targets == loss_fn.ignore_index).any()):
            return "cross_entropy"
    if isinstance(loss_fn, nn.MSELoss) and loss_fn.reduction in ("mean", "sum") and outputs.shape == targets.shape:
        return "mse"
    return "autograd"


def output_hessian_product(
    loss_fn: Callable, outputs: torch.Tensor, targets: torch.Tensor, direction: torch.Tensor
) -> torch.Tensor:
    """``H_L @ direction``, ``H_L`` the Hessian of ``loss_fn(outputs, targets)`` in ``outputs``.

    Parameters
    ----------
    outputs, direction : Tensor, same shape (batch, ...)
    targets : Tensor

    Raises
    ------
    ValueError
        When autograd cannot form the product (the loss is not twice
        differentiable in the outputs, or does not return a scalar).
    """
    kind = closed_form_kind(loss_fn, outputs, targets)
    if kind == "cross_entropy":
        probabilities = torch.softmax(outputs, dim=1)
        product = probabilities * direction - probabilities * (probabilities * direction).sum(1, keepdim=True)
        return product / outputs.shape[0] if loss_fn.reduction == "mean" else product
    if kind == "mse":
        return 2 * direction / (outputs.numel() if loss_fn.reduction == "mean" else 1)

    def cannot(reason: str) -> ValueError:
        return ValueError(
            "the GGN needs the Hessian of loss_fn with respect to the network outputs, which autograd "
            f"cannot form here ({reason}); use a twice-differentiable loss"
        )

    with torch.enable_grad():
        probe = loss_fn(outputs.detach().requires_grad_(True), targets)
    if not isinstance(probe, torch.Tensor) or probe.ndim != 0:
        raise ValueError("loss_fn must return a scalar tensor (use reduction='mean')")
    if not probe.requires_grad:
        raise cannot("the loss does not depend differentiably on the outputs")
    try:
        gradient = torch.func.grad(lambda values: loss_fn(values, targets))
        return torch.func.jvp(gradient, (outputs.detach(),), (direction,))[1]
    except (RuntimeError, NotImplementedError, TypeError) as error:
        raise cannot(f"{type(error).__name__}: {error}") from error
