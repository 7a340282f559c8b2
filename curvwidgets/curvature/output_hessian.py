"""Products with the Hessian of the loss with respect to the network outputs, ``H_L u``, and how a loss reduces a batch.

Closed forms for :class:`torch.nn.CrossEntropyLoss` (class-index targets, no
class weights or label smoothing) and :class:`torch.nn.MSELoss`; forward-over-
reverse autograd for any other twice-differentiable loss.

For the GGN diagonal, :func:`output_hessian_factor` writes a batch's output
Hessian as per-sample factors ``H_n = S_n S_n^T`` in closed form (cross-entropy
with any weights, ignored targets and label smoothing, and
:class:`~curvwidgets.losses.SequenceCrossEntropyLoss`, whose classes are last;
MSE; BCE with logits), and draws vectors of covariance ``H_n`` from the model's
predictive distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..losses import ModelLoss, SequenceCrossEntropyLoss
from .batches import Inputs, parts_of

__all__ = ["reduction_of", "counted_weight", "splits_by_sample", "output_hessian_product", "closed_form_kind",
           "OutputHessianFactor", "output_hessian_factor", "check_factored_loss"]

#: Losses whose batch value is the :func:`counted_weight`-weighted mean (or the sum) of per-sample terms.
SAMPLE_SEPARABLE_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.MSELoss, SequenceCrossEntropyLoss)


def reduction_of(loss_fn: Callable) -> str:
    """``"sum"`` when ``loss_fn`` sums over samples (its ``reduction`` attribute), else ``"mean"``."""
    return "sum" if getattr(loss_fn, "reduction", "mean") == "sum" else "mean"


def counted_weight(loss_fn: Callable, targets: torch.Tensor, inputs: Optional[Inputs] = None) -> float:
    """The total weight ``W_b`` of a batch's samples in ``loss_fn``: what its mean reduction divides by.

    ``len(targets)`` for most losses. For :class:`torch.nn.CrossEntropyLoss`
    and :class:`torch.nn.NLLLoss` with class-index targets, the sum of the
    class weights (1 without ``weight=``) of the targets that are not
    ``ignore_index``, as those losses count them. For
    :class:`~curvwidgets.losses.SequenceCrossEntropyLoss`, the number of
    tokens whose target is not its ``ignore_index`` (``targets.numel()``
    when none is). For :class:`~curvwidgets.losses.ModelLoss`, its ``count``
    of the batch's ``inputs``, or ``len(targets)``. Weighting the batch means
    by ``W_b`` makes their average the mean loss of one batch of every sample.

    Parameters
    ----------
    targets : Tensor, shape (b, ...)
    inputs : Tensor or StructuredInputs, optional
        The batch's inputs, read by a ``ModelLoss``'s ``count``.

    Returns
    -------
    float
        ``W_b >= 0``; 0 when every target of the batch is ignored.
    """
    if isinstance(loss_fn, SequenceCrossEntropyLoss):
        return float((targets != loss_fn.ignore_index).sum())
    if isinstance(loss_fn, ModelLoss):
        return loss_fn.weight(parts_of(inputs) if inputs is not None else None, len(targets))
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


# ---- the output Hessian as per-sample factors, for the GGN diagonal ------------------------------------------

#: Losses whose output Hessian :func:`output_hessian_factor` factors in closed form (``reduction`` "mean" or "sum").
FACTORED_LOSSES = (nn.CrossEntropyLoss, SequenceCrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss)


@dataclass(frozen=True)
class OutputHessianFactor:
    """One batch's output Hessian ``W_b H_L`` as per-sample factors ``H_n = S_n S_n^T``, and draws of covariance ``H_n``.

    ``W_b H_L`` is the Hessian, in the network outputs, of the batch's loss
    times its :func:`counted_weight` ``W_b`` (for ``reduction="sum"`` the
    Hessian of the loss itself): what :class:`~curvwidgets.curvature.GGN`
    weights a batch by, so that ``G = (1/W) sum_n J_n^T H_n J_n`` over every
    sample ``n``, ``W`` the sum of the ``W_b``. It is block diagonal by sample
    (and for cross-entropy by position), each block the covariance of the
    model's predictive distribution times ``scale``:

    - ``"categorical"`` (:class:`~torch.nn.CrossEntropyLoss`, classes on
      axis 1; :class:`~curvwidgets.losses.SequenceCrossEntropyLoss`, classes
      last): per sample and position ``scale * (diag(p) - p p^T)``, ``p``
      the softmax. Column ``(t, k)`` is ``sqrt(scale p_k) (e_k - p)`` at
      position ``t`` (``(diag(sqrt p) - p sqrt(p)^T)`` has these columns and
      times its transpose gives ``diag(p) - p p^T`` since ``sum p = 1``); a
      draw is ``sqrt(scale) (onehot(y) - p)``, ``y ~ Categorical(p)``.
    - ``"gaussian"`` (:class:`~torch.nn.MSELoss`): ``scale`` times the
      identity. Column ``j`` is ``sqrt(scale) e_j``; a draw ``sqrt(scale) z``,
      ``z ~ N(0, I)``.
    - ``"bernoulli"`` (:class:`~torch.nn.BCEWithLogitsLoss`): diagonal,
      ``scale * sigma (1 - sigma)``, ``sigma`` the sigmoid of the outputs.
      Column ``j`` is ``sqrt(scale sigma_j (1 - sigma_j)) e_j``; a draw
      ``sqrt(scale) (y - sigma)``, ``y ~ Bernoulli(sigma)``.

    Attributes
    ----------
    distribution : {"categorical", "gaussian", "bernoulli"}
    shape : torch.Size
        The batch's outputs, ``(b, ...)``, as the model returns them: the
        shape of :meth:`columns` and :meth:`draw` per column and draw.
    scale : Tensor
        ``"categorical"``: shape ``(b, *positions)`` (the outputs without
        their class axis); otherwise the outputs' shape.
    mean : Tensor or None
        The predictive mean: ``p`` with the classes on axis 1, shape
        ``(b, K, *positions)``, whatever ``class_dim``; ``sigma`` of the
        outputs' shape; None for ``"gaussian"``.
    class_dim : int
        ``"categorical"``: the axis of the outputs that holds the classes
        (>= 1; 1 for cross-entropy, the last for sequence cross-entropy).
    """

    distribution: str
    shape: torch.Size
    scale: torch.Tensor
    mean: Optional[torch.Tensor] = None
    class_dim: int = 1

    @property
    def rank(self) -> int:
        """Columns per sample: classes times positions for ``"categorical"``, outputs per sample otherwise."""
        return math.prod(self.shape[1:])

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """Columns ``start <= j < stop`` of every sample's ``S_n``, shape ``(stop - start, *shape)``.

        Column ``j`` of the result holds ``S_n[:, j]`` in the rows of sample ``n``.
        Categorical columns are ordered position-major: ``j = t * K + k``.
        """
        index = torch.arange(start, stop, device=self.scale.device)
        rows = torch.arange(len(index), device=index.device)
        count = self.shape[0]
        if self.distribution == "categorical":
            classes = self.mean.shape[1]
            probabilities = self.mean.reshape(count, classes, -1)  # (b, K, T)
            position, label = index // classes, index % classes
            root = torch.sqrt(self.scale.reshape(count, -1)[:, position] * probabilities[:, label, position]).T  # (m, b)
            unit = nn.functional.one_hot(label, classes).to(probabilities.dtype)[:, None, :]  # (m, 1, K)
            block = probabilities.new_zeros(len(index), count, classes, probabilities.shape[2])
            block[rows, :, :, position] = root[..., None] * (unit - probabilities[:, :, position].permute(2, 0, 1))
            return self._as_outputs(block.reshape(len(index), *self.mean.shape))
        root = torch.sqrt(self.entry_curvature()).reshape(count, -1)  # (b, O)
        block = root.new_zeros(len(index), count, root.shape[1])
        block[rows, :, index] = root[:, index].T
        return block.reshape(len(index), *self.shape)

    def entry_curvature(self) -> torch.Tensor:
        """``"gaussian"`` and ``"bernoulli"``: the diagonal of ``H_n``, the outputs' shape."""
        if self.distribution == "bernoulli":
            return self.scale * self.mean * (1 - self.mean)
        if self.distribution == "gaussian":
            return self.scale
        raise ValueError("entry_curvature is the diagonal of the gaussian and bernoulli factors; this one is categorical")

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One ``s`` per sample with ``E[s_n s_n^T] = H_n``, shape ``shape``, drawn on the CPU from ``generator``."""
        if self.distribution == "categorical":
            count, classes = self.mean.shape[:2]
            probabilities = self.mean.reshape(count, classes, -1)
            rows = probabilities.permute(0, 2, 1).reshape(-1, classes)  # (b * T, K)
            labels = torch.multinomial(rows.cpu().double(), 1, generator=generator)[:, 0].to(rows.device)
            unit = nn.functional.one_hot(labels, classes).to(rows.dtype).reshape(count, -1, classes).permute(0, 2, 1)
            root = torch.sqrt(self.scale.reshape(count, 1, -1))
            return self._as_outputs((root * (unit - probabilities)).reshape(self.mean.shape))
        if self.distribution == "bernoulli":
            labels = torch.bernoulli(self.mean.cpu().double(), generator=generator).to(self.mean.device, self.mean.dtype)
            return torch.sqrt(self.scale) * (labels - self.mean)
        noise = torch.randn(self.shape, generator=generator, dtype=torch.float64).to(self.scale.device, self.scale.dtype)
        return noise * torch.sqrt(self.scale)

    def _as_outputs(self, vectors: torch.Tensor) -> torch.Tensor:
        """Categorical vectors ``(..., b, K, *positions)``, classes moved to ``class_dim``: ``(..., *shape)``."""
        lead = vectors.ndim - self.mean.ndim
        return vectors.movedim(lead + 1, lead + self.class_dim)


def check_factored_loss(loss_fn: Callable) -> None:
    """``ValueError`` naming ``loss_fn`` unless :func:`output_hessian_factor` has a closed form for it."""
    reduction = getattr(loss_fn, "reduction", None)
    if isinstance(loss_fn, FACTORED_LOSSES) and reduction in ("mean", "sum"):
        return
    found = f"{type(loss_fn).__name__}(reduction={reduction!r})" if isinstance(loss_fn, nn.Module) else \
        f"a {type(loss_fn).__name__} (its reduction, weights and targets unknown)"
    raise ValueError(
        "loss_fn must be nn.CrossEntropyLoss, cw.SequenceCrossEntropyLoss, nn.MSELoss or nn.BCEWithLogitsLoss with "
        f"reduction 'mean' or 'sum' for a factored output Hessian; got {found}"
    )


def output_hessian_factor(loss_fn: Callable, outputs: torch.Tensor, targets: torch.Tensor) -> OutputHessianFactor:
    """``W_b H_L`` of one batch in closed form, as an :class:`OutputHessianFactor`.

    Follows the conventions of ``loss_fn`` exactly: for cross-entropy, class
    ``weight``, ``ignore_index`` and ``label_smoothing`` (a position of
    target ``y`` has ``scale = (1 - eps) w_y + (eps / K) sum_k w_k``, 0 when
    ignored; class-probability targets ``q`` have ``scale = sum_k w_k q'_k``
    with ``q' = (1 - eps) q + eps / K``, divided by the positions per sample
    under ``"mean"``); for
    :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` (classes last) as
    for ``nn.CrossEntropyLoss(ignore_index=...)`` of the outputs with their
    classes moved to axis 1 (``scale`` 1 per token, 0 when ignored); for
    MSE ``scale = 2 / O`` (``"mean"``, ``O`` outputs per sample) or 2
    (``"sum"``); for BCE with logits ``weight`` and ``pos_weight``
    (``scale = weight ((pos_weight - 1) y + 1)``, divided by ``O`` under
    ``"mean"``).

    Parameters
    ----------
    outputs : Tensor, shape (b, ...)
        Detached network outputs (cross-entropy: classes on axis 1;
        sequence cross-entropy: ``(b, *positions, K)``, classes last).
    targets : Tensor
        Class indices of shape ``(b, *positions)`` or class probabilities of
        the outputs' shape (cross-entropy); class indices of shape
        ``(b, *positions)`` (sequence cross-entropy); the outputs' shape (MSE,
        BCE).

    Raises
    ------
    ValueError
        A loss without a closed form (see :func:`check_factored_loss`), or
        targets of another shape than the loss's closed form reads.
    """
    check_factored_loss(loss_fn)
    outputs = outputs.detach()
    if isinstance(loss_fn, (nn.CrossEntropyLoss, SequenceCrossEntropyLoss)):
        return _categorical_factor(loss_fn, outputs, targets)
    if targets.shape != outputs.shape:
        raise ValueError(f"data must yield targets of the outputs' shape {tuple(outputs.shape)} for the factored "
                         f"output Hessian of {type(loss_fn).__name__}; got {tuple(targets.shape)}")
    divisor = outputs[0].numel() if loss_fn.reduction == "mean" else 1
    if isinstance(loss_fn, nn.MSELoss):
        return OutputHessianFactor("gaussian", outputs.shape, torch.full_like(outputs, 2.0 / divisor))
    scale = torch.ones_like(outputs)
    if loss_fn.pos_weight is not None:
        scale = scale * ((loss_fn.pos_weight.to(outputs) - 1) * targets.to(outputs.dtype) + 1)
    if loss_fn.weight is not None:
        scale = scale * loss_fn.weight.to(outputs)
    return OutputHessianFactor("bernoulli", outputs.shape, scale / divisor, torch.sigmoid(outputs))


def _categorical_factor(loss_fn: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> OutputHessianFactor:
    """Cross-entropy's factor, worked out with the classes on axis 1 (where ``nn.CrossEntropyLoss`` reads them).

    ``SequenceCrossEntropyLoss(ignore_index=i)`` of logits ``(b, *positions, K)``
    is ``nn.CrossEntropyLoss(ignore_index=i)`` of the logits with their last
    axis moved to 1, ``(b, K, *positions)``: that loss's scale and softmax, and
    the factor moves the classes back to the last axis in its columns and draws.
    """
    if outputs.ndim < 2:
        raise ValueError(f"model must return outputs with a class axis, (b, classes, ...), for the factored output "
                         f"Hessian of {type(loss_fn).__name__}; got {tuple(outputs.shape)}")
    class_dim = 1
    if isinstance(loss_fn, SequenceCrossEntropyLoss):
        _check_sequence_targets(outputs, targets)
        loss_fn, class_dim = nn.CrossEntropyLoss(ignore_index=loss_fn.ignore_index), outputs.ndim - 1
    class_first = outputs.movedim(class_dim, 1)
    return OutputHessianFactor("categorical", outputs.shape, _cross_entropy_scale(loss_fn, class_first, targets),
                               torch.softmax(class_first, dim=1), class_dim)


def _check_sequence_targets(outputs: torch.Tensor, targets: torch.Tensor) -> None:
    """``ValueError`` naming ``data`` unless ``targets`` are class indices of shape ``outputs.shape[:-1]``."""
    if targets.is_floating_point() or targets.shape != outputs.shape[:-1]:
        raise ValueError(f"data must yield class-index targets of shape {tuple(outputs.shape[:-1])} for logits of "
                         f"shape {tuple(outputs.shape)} (the factored output Hessian of SequenceCrossEntropyLoss); "
                         f"got {targets.dtype} of shape {tuple(targets.shape)}")


def _cross_entropy_scale(loss_fn: nn.CrossEntropyLoss, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per sample and position, the multiple of ``diag(p) - p p^T`` in ``W_b H_L``, shape ``(b, *positions)``.

    ``outputs``: shape ``(b, K, *positions)``, the classes on axis 1.
    """
    classes, smoothing = outputs.shape[1], loss_fn.label_smoothing
    weight = loss_fn.weight.to(outputs) if loss_fn.weight is not None else outputs.new_ones(classes)
    if targets.is_floating_point():  # class probabilities
        if targets.shape != outputs.shape:
            raise ValueError(f"data must yield class-probability targets of the outputs' shape {tuple(outputs.shape)} "
                             f"for the factored output Hessian of CrossEntropyLoss; got {tuple(targets.shape)}")
        smoothed = targets.to(outputs.dtype) * (1 - smoothing) + smoothing / classes
        scale = (smoothed * weight.reshape(1, classes, *[1] * (outputs.ndim - 2))).sum(1)
        return scale / math.prod(outputs.shape[2:]) if loss_fn.reduction == "mean" else scale
    if targets.shape != outputs.shape[:1] + outputs.shape[2:]:
        raise ValueError(f"data must yield class-index targets of shape {tuple(outputs.shape[:1] + outputs.shape[2:])} "
                         f"for outputs of shape {tuple(outputs.shape)} (the factored output Hessian of "
                         f"CrossEntropyLoss); got {tuple(targets.shape)}")
    counted = targets != loss_fn.ignore_index
    classes_of = torch.where(counted, targets, 0)
    return ((1 - smoothing) * weight[classes_of] + smoothing / classes * weight.sum()) * counted
