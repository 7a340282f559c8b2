"""A curvature operator frozen at the weights of now: each pass differentiated once, every product reusing it.

:class:`~curvwidgets.curvature.operators.Hessian` and
:class:`~curvwidgets.curvature.operators.GGN` read the model's weights at
every product, so each product runs the forward pass (and for the Hessian
the first reverse pass) again. Many products at the same weights (a Lanczos
run on a small measurement subset, as the training monitor takes after every
epoch) can keep those graphs instead: :class:`RetainedProducts` builds them
once per pass of the operator's data, and a product is then the remaining
reverse pass(es) alone, about a third cheaper per product on a CNN, and the
loss gradient comes with them (``benchmarks/README.md``). The price is memory:
the graphs of every pass are held at once, so it suits data of a few hundred
samples, not a training set.
"""

from __future__ import annotations

from typing import Callable, List, Tuple

import torch

from ..linalg.operators import LinearOperator
from .data import all_reduce_sum
from .operators import CurvatureOperator, KeptPass
from .output_hessian import reduction_of

__all__ = ["RetainedProducts"]


class RetainedProducts(LinearOperator):
    """``operator``'s products at the weights it has when this is made, its passes' graphs kept.

    The passes are those of ``operator`` with one vector per pass (its
    ``sample_chunk``, on the CPU split by memory alone, never by timing),
    in its ``bn_mode``; products sum over them as the operator's do
    (weighted by each pass's count for a mean loss) and reduce over ranks.
    Later changes of the model's weights are not seen: make a new one.

    Parameters
    ----------
    operator : CurvatureOperator
        A :class:`~curvwidgets.curvature.operators.Hessian` or
        :class:`~curvwidgets.curvature.operators.GGN`; its data are read once, here.

    Examples
    --------
    >>> import torch, curvwidgets as cw
    >>> from curvwidgets.curvature.retained import RetainedProducts
    >>> model = torch.nn.Linear(3, 1).double()
    >>> data = [(torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64))]
    >>> H = cw.Hessian(model, torch.nn.MSELoss(), data)
    >>> v = torch.randn(4, dtype=torch.float64)
    >>> torch.allclose(RetainedProducts(H) @ v, H @ v)
    True
    """

    symmetric = True

    def __init__(self, operator: CurvatureOperator):
        if not isinstance(operator, CurvatureOperator):
            raise TypeError(f"operator must be a cw.Hessian or cw.GGN; got {type(operator).__name__}")
        self.operator = operator
        self.dim, self.dtype, self.device = operator.dim, operator.dtype, operator.device
        self.scale_by_weight = reduction_of(operator.loss_fn) == "mean"
        self.passes: List[Tuple[float, KeptPass]] = []  # (W_p, the pass's kept graph)
        primals, constants = operator.functional_state()
        # the graphs outlive in-place updates of the weights: the selected ones and the others, as the buffers are
        primals = tuple(value.clone() for value in primals)
        constants = {name: value.clone() if value.is_floating_point() else value for name, value in constants.items()}
        with operator.evaluation_mode():
            for _, inputs, targets in operator._weighted_batches():
                with operator._diagnosing_data(inputs, targets):
                    for weight, part_inputs, part_targets in operator._passes(inputs, targets, 1):
                        kept = operator.keep_pass(operator.outputs_function(constants, part_inputs), primals,
                                                  part_targets)
                        self.passes.append((weight, kept))

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """``C @ vector`` for a flat vector of shape ``(dim,)``: one or two reverse passes per kept pass."""
        self.operator._check(vector, 1)
        return self.matmat(vector[:, None])[:, 0]

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        """``C @ block`` for ``block`` of shape ``(dim, k)``, one column at a time through the kept graphs."""
        self.operator._check(block, 2)
        tangents = self.operator.layout.unflatten(block)
        return self._of_all_data(lambda kept: self.operator.kept_products(kept, tangents), block.shape[1])

    def gradient(self) -> torch.Tensor:
        """The loss gradient over all of the operator's data at these weights, shape ``(dim,)``, float64.

        As :meth:`CurvatureOperator.gradient <curvwidgets.curvature.operators.CurvatureOperator.gradient>`
        (of the mean loss, or of the sum), from the kept graphs.
        """
        return self._of_all_data(lambda kept: tuple(piece[None] for piece in kept.loss_gradient()), 1,
                                 keep_float64=True)[:, 0]

    def _of_all_data(self, per_pass: Callable[[KeptPass], Tuple[torch.Tensor, ...]], width: int,
                     keep_float64: bool = False) -> torch.Tensor:
        """The sum over passes (and ranks) of ``W_p`` times ``per_pass``'s ``(width, *shape)`` pieces, as one ``(dim, width)``."""
        total = torch.zeros(width, self.dim, dtype=torch.float64, device=self.device)
        columns = total.split(self.operator.layout.sizes, dim=1)
        weight = torch.zeros((), dtype=torch.float64, device=self.device)
        for pass_weight, kept in self.passes:
            for piece, column in zip(per_pass(kept), columns):
                column.add_(piece.reshape(width, -1), alpha=pass_weight if self.scale_by_weight else 1.0)
            weight += pass_weight
        total = all_reduce_sum(total.T.contiguous())
        self.operator.check_total_weight(all_reduce_sum(weight))
        result = self.operator.of_all_data(total, weight)
        return result if keep_float64 else result.to(self.dtype)

    def __repr__(self) -> str:
        return f"RetainedProducts({self.operator!r}, passes={len(self.passes)})"
