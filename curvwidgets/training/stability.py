"""The largest sharpness at which an optimiser's step is stable on a quadratic: ``2 / eta`` and its momentum forms.

On a quadratic with curvature ``a`` along an eigenvector, gradient descent
``x <- x - eta a x`` is stable when ``a < 2 / eta``; Cohen et al. (2021)
find that full-batch training raises the sharpness (the top Hessian
eigenvalue) until about this threshold and hovers there. With momentum the
iteration keeps a second state and the threshold moves (their appendix): for
``torch.optim.SGD``'s heavy ball ``b <- beta b + (1 - d) g``,
``x <- x - eta b`` it is ``(2 + 2 beta) / (eta (1 - d))``, and with Nesterov
``(2 + 2 beta) / (eta (1 - d) (1 + 2 beta))``. Weight decay ``w`` adds ``w``
to every curvature of the step, so the loss's own sharpness may reach the
threshold minus ``w``. The default SGD of :func:`~curvwidgets.train`
(``momentum=0.9``) is stable up to ``3.8 / eta``, not ``2 / eta``.

Adaptive methods (Adam and its kin) precondition the step, so no threshold
of the loss's sharpness follows from the learning rate alone: NaN.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

__all__ = ["stability_threshold"]


def stability_threshold(optimizer: torch.optim.Optimizer) -> float:
    """The sharpness above which ``optimizer``'s next step is unstable on a quadratic (its first parameter group).

    ``(2 + 2 beta) / (eta (1 - d)) [/ (1 + 2 beta) with Nesterov] - w`` for
    ``torch.optim.SGD`` (``lr`` ``eta``, ``momentum`` ``beta``,
    ``dampening`` ``d``, ``nesterov``, ``weight_decay`` ``w``): ``2 / eta``
    without momentum. NaN for optimisers that precondition the step (Adam,
    AdamW, SWATS, K-FAC, the Lanczos optimisers) and at rate 0.

    Examples
    --------
    >>> import torch
    >>> weights = [torch.nn.Parameter(torch.zeros(1))]
    >>> stability_threshold(torch.optim.SGD(weights, lr=0.1))
    20.0
    >>> round(stability_threshold(torch.optim.SGD(weights, lr=0.1, momentum=0.9)), 10)
    38.0
    """
    return _threshold_of_group(optimizer.param_groups[0]) if _is_heavy_ball(optimizer) else math.nan


def _threshold_of_group(group: Mapping[str, Any]) -> float:
    """:func:`stability_threshold` of one heavy-ball parameter group (``lr``, ``momentum``, ...)."""
    rate, beta = float(group["lr"]), float(group.get("momentum", 0.0))
    damped = 1.0 - float(group.get("dampening", 0.0)) if beta > 0 else 1.0
    if rate <= 0 or damped <= 0:  # no step, or no gradient in it: no threshold
        return math.nan
    threshold = (2.0 + 2.0 * beta) / (rate * damped)
    if group.get("nesterov", False):
        threshold /= 1.0 + 2.0 * beta
    return threshold - float(group.get("weight_decay", 0.0))


def _is_heavy_ball(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the step is ``x <- x - lr * b`` with a heavy-ball buffer of raw gradients: ``torch.optim.SGD``."""
    return isinstance(optimizer, torch.optim.SGD)
