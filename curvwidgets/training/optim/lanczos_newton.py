"""Stochastic Newton steps in a Lanczos Krylov space: saddle-free (Hessian) and Gauss-Newton (GGN).

At each step a few Lanczos iterations on the curvature of the current
mini-batch give Ritz pairs ``(lambda_i, u_i)``; the gradient is preconditioned
by the inverse curvature in their span (Granziol et al., "Deep Curvature
Suite", Section 2.2)::

    d = sum_i (u_i^T g) / c(lambda_i) u_i

with ``c(lambda) = |lambda| + damping`` for the Hessian (saddle-free Newton,
Dauphin et al., 2014) and ``c(lambda) = lambda + damping`` for the positive
semi-definite generalised Gauss-Newton matrix.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Optional, Type

import numpy as np
import torch
from torch import nn

from ...curvature.batches import Inputs
from ...curvature.data import world
from ...curvature.operators import GGN, CurvatureOperator, Hessian
from ...curvature.params import ParamsLike, select_parameters
from ...linalg.lanczos import lanczos
from ...losses import ModelLoss
from ... import _validate as check
from .base import CurvatureOptimizer, closure_loss, momentum_step

__all__ = ["LanczosGGN", "LanczosSFN"]

STARTS = ("gradient", "random")
RESIDUALS = ("gradient", "damping", "drop")
BACKENDS = ("auto", "forward-over-reverse", "forward-mode", "double-backward")


class _LanczosNewton(CurvatureOptimizer):
    r"""Shared machinery of :class:`LanczosSFN` and :class:`LanczosGGN`; see those for the update."""

    operator_class: ClassVar[Type[CurvatureOperator]]

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
        lr: float = 0.1,
        lanczos_steps: int = 10,
        damping: float = 0.1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        start: str = "gradient",
        residual: str = "gradient",
        params: ParamsLike = None,
        bn_mode: str = "train",
        backend: str = "auto",
        seed: int = 0,
    ):
        name = type(self).__name__
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} needs the model (an nn.Module); got {type(model).__name__}")
        if loss_fn is None:
            raise ValueError(f"{name} needs loss_fn (e.g. torch.nn.CrossEntropyLoss()) to build the mini-batch curvature")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets); got {type(loss_fn).__name__}")
        self._check_loss(loss_fn)
        check.choice("bn_mode", bn_mode, ("eval", "train"))
        allowed = ("auto", self.operator_class.preferred_backend, "double-backward")
        check.choice("backend", backend, allowed)
        self.layout = select_parameters(model, params)
        named = dict(model.named_parameters())
        tensors = [named[parameter] for parameter in self.layout.names]
        defaults = dict(
            lr=check.positive("lr", lr),
            lanczos_steps=check.positive_int("lanczos_steps", lanczos_steps),
            damping=check.positive("damping", damping),
            momentum=check.unit_interval("momentum", momentum),
            weight_decay=check.non_negative("weight_decay", weight_decay),
            start=check.choice("start", start, STARTS),
            residual=check.choice("residual", residual, RESIDUALS),
            seed=check.seed_value("seed", seed),
            backend=backend,  # kept in the group, so a checkpoint carries the backend "auto" chose
        )
        super().__init__(tensors, defaults)
        self.param_groups[0].setdefault("step", 0)
        self.model, self.loss_fn, self.bn_mode = model, loss_fn, bn_mode
        self.ritz_values: Optional[np.ndarray] = None

    def add_param_group(self, param_group: dict) -> None:
        if self.param_groups:
            raise ValueError(f"{type(self).__name__} keeps its parameters in one group (the layout of the curvature operator)")
        super().add_param_group(param_group)

    def _curvature(self, values: torch.Tensor, weight_decay: float, damping: float) -> torch.Tensor:
        """``c(lambda)`` for Ritz values ``lambda`` of the loss curvature (without the L2 term)."""
        raise NotImplementedError

    def _check_loss(self, loss_fn: Callable) -> None:
        """Refuse a ``loss_fn`` whose curvature this optimiser cannot form (every loss is fine for the Hessian)."""

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """One Newton step on the batch of the last :meth:`set_batch`, with the parameters' ``.grad`` as ``g``."""
        inputs, targets = self._take_batch()
        loss = closure_loss(closure)
        group = self.param_groups[0]
        params = group["params"]
        if all(p.grad is None for p in params):
            raise RuntimeError(f"{type(self).__name__}.step(): no parameter has a gradient; call loss.backward() first")
        gradient = self.layout.flatten([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
        theta = self.layout.flatten([p.detach() for p in params])
        if group["weight_decay"] != 0:
            gradient = gradient + group["weight_decay"] * theta
        direction = self._direction(group, gradient, inputs, targets)
        for param, piece in zip(params, self.layout.unflatten(direction)):
            momentum_step(self.state[param], param, piece, group)
        group["step"] += 1
        return loss

    def _direction(self, group: dict, gradient: torch.Tensor, inputs: Inputs, targets: torch.Tensor) -> torch.Tensor:
        """``d = U c(Lambda)^-1 U^T g`` plus the chosen treatment of ``g - U U^T g``; shape ``(P,)``."""
        if not bool(torch.any(gradient != 0)):
            self.ritz_values = None
            return torch.zeros_like(gradient)
        # every rank holds its own mini-batch at its own index, so the operator sums the ranks' batches;
        # a model computing its loss takes its inputs alone (ModelLoss)
        batch = inputs if isinstance(self.loss_fn, ModelLoss) else (inputs, targets)
        data = [batch] * world()[1]
        op = self.operator_class(self.model, self.loss_fn, data, params=list(group["params"]),
                                 bn_mode=self.bn_mode, backend=group["backend"])
        start = gradient.to(device=op.device, dtype=op.dtype) if group["start"] == "gradient" else None
        result = lanczos(op, steps=group["lanczos_steps"], start=start, seed=group["seed"] + group["step"],
                         store_vectors=True)
        if group["backend"] == "auto" and op.backend is not None:
            group["backend"] = op.backend  # time the backends once, not at every step
        count = int(result.num_steps[0])
        self.ritz_values = result.nodes(0).copy()
        vectors = result.ritz_vectors[0, :count].to(device=gradient.device, dtype=gradient.dtype)  # (m, P)
        values = torch.as_tensor(self.ritz_values, device=gradient.device, dtype=gradient.dtype)
        coefficients = vectors @ gradient
        curvature = self._curvature(values, group["weight_decay"], group["damping"])
        direction = vectors.T @ (coefficients / curvature)
        if group["residual"] != "drop":
            residual = gradient - vectors.T @ coefficients
            scale = 1.0 if group["residual"] == "gradient" else 1.0 / (group["weight_decay"] + group["damping"])
            direction += scale * residual
        return direction


_SHARED_DOC = r"""
    Each ``step()`` uses the mini-batch ``(x, y)`` of the last
    :meth:`~CurvatureOptimizer.set_batch` and ``g``, the flat gradient over
    the parameters (their ``.grad`` as left by the loop's ``loss.backward()``,
    in the order of ``model.named_parameters()``, zero for a parameter without
    one) plus ``weight_decay * theta``::

        C      = curvature of loss_fn(model(x), y) at theta               (P x P, never formed)
        (lambda_i, u_i), i = 1..m  = Ritz pairs of m = lanczos_steps Lanczos steps on C
        d      = sum_i (u_i^T g) / c(lambda_i) u_i  +  rho (g - sum_i (u_i^T g) u_i)
        v      <- momentum v + d           (v = d at the first step; no buffer when momentum = 0)
        theta  <- theta - lr v

    Lanczos starts from ``g`` by default (``start="gradient"``), so ``g``
    lies in the Krylov space ``span{g, C g, .., C^{m-1} g}`` and the residual
    ``g - sum_i (u_i^T g) u_i`` is zero up to rounding: ``d`` is the damped
    Newton step restricted to that space. With ``start="random"`` (a fresh
    seeded Gaussian vector each step) the residual is not zero, and
    ``residual`` chooses ``rho``: ``"gradient"`` (``rho = 1``, a plain
    gradient step of size ``lr`` there), ``"damping"`` (``rho = 1 / (weight_decay
    + damping)``, as if the curvature outside the space were zero) or
    ``"drop"`` (``rho = 0``). When ``m >= P`` the space is the whole
    parameter space and ``d = V c(Lambda)^-1 V^T g`` for the eigenpairs of
    ``C``.

    Parameters
    ----------
    model : nn.Module
    loss_fn : callable
        ``loss_fn(outputs, targets)``, batch mean (or sum when its
        ``reduction`` is ``"sum"``), as for :class:`~curvwidgets.curvature.operators.Hessian`;
        or (``LanczosSFN`` only) a :class:`~curvwidgets.losses.ModelLoss`, for
        a model that computes its loss from the batch's inputs. The inputs
        given to ``set_batch`` may be a tensor, a tuple or a mapping of tensors.
    lr : float, default: 0.1
        Step size; 1 is the damped Newton step, which on a mini-batch overshoots
        (an MLP on the embedded digits diverges in its first epoch at 1.0 and
        reaches 89% (GGN) / 81% (SFN) test accuracy at 0.1).
    lanczos_steps : int, default: 10
        Lanczos steps ``m`` (curvature-vector products on the batch) per step; at most ``P``.
    damping : float, default: 0.1
        Added to the curvature of each Ritz value, > 0.
    momentum : float, default: 0
    weight_decay : float, default: 0
        L2 penalty: ``weight_decay * theta`` is added to ``g`` and
        ``weight_decay`` to every eigenvalue of ``C``.
    start : {"gradient", "random"}, default: "gradient"
    residual : {"gradient", "damping", "drop"}, default: "gradient"
    params : optional
        Which parameters to optimise (glob patterns, a submodule, tensors; see
        :func:`~curvwidgets.curvature.params.select_parameters`); default all
        trainable ones.
    bn_mode : {"eval", "train"}, default: "train"
        BatchNorm statistics in the curvature products; ``"train"`` (each
        batch's statistics) matches the loss the loop differentiated. Dropout
        is off in the products either way.
    backend : str, default: "auto"
        Product backend of the operator; with ``"auto"`` it is chosen at the
        first step and kept.
    seed : int, default: 0
        Seed of the random start vectors (``seed + step``).

    Attributes
    ----------
    ritz_values : ndarray or None
        The Ritz values of the last step, ascending.

    Raises
    ------
    ValueError
        ``loss_fn`` missing (or a ``ModelLoss`` for ``LanczosGGN``), or an argument out of range (the message
        names it).
    RuntimeError
        ``step()`` without a prior ``set_batch``, or with no gradient.

    Examples
    --------
    >>> import torch
    >>> from curvwidgets.training.optim import LanczosGGN, LanczosSFN
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> loss_fn = torch.nn.CrossEntropyLoss()
    >>> optimizer = LanczosSFN(model, loss_fn, lanczos_steps=5)
    >>> inputs, targets = torch.randn(32, 4), torch.randint(0, 2, (32,))
    >>> loss_fn(model(inputs), targets).backward()
    >>> optimizer.set_batch(inputs, targets)  # before every step()
    >>> optimizer.step()
    >>> optimizer.ritz_values.shape
    (5,)

    Notes
    -----
    A step costs one gradient (the loop's) and ``m`` curvature-vector products
    on the batch, each about two to three gradients' worth, plus the Lanczos
    basis (``m x P``). Under ``torch.distributed`` each rank's batch enters
    the curvature (the products are summed over ranks), and ``g`` should be
    the all-reduced gradient (as DistributedDataParallel leaves it).
"""


class LanczosSFN(_LanczosNewton):
    __doc__ = r"""Saddle-free Newton in a Lanczos Krylov space of the mini-batch Hessian.

    The curvature is the Hessian ``H`` of the mini-batch loss
    (:class:`~curvwidgets.curvature.operators.Hessian`) and
    ``c(lambda) = |lambda + weight_decay| + damping``: directions of negative
    curvature are followed downhill instead of uphill, which lets the step
    escape saddle points (Dauphin et al., 2014).
    """ + _SHARED_DOC + r"""
    References
    ----------
    Y. Dauphin, R. Pascanu, C. Gulcehre, K. Cho, S. Ganguli and Y. Bengio,
    "Identifying and attacking the saddle point problem in high-dimensional
    non-convex optimization", NeurIPS 2014.
    D. Granziol et al. (MLRG Oxford), "Deep Curvature Suite", ICLR 2021 submission,
    https://openreview.net/forum?id=86t2GlfzFo, Section 2.2.
    """

    operator_class = Hessian

    def _curvature(self, values: torch.Tensor, weight_decay: float, damping: float) -> torch.Tensor:
        return (values + weight_decay).abs() + damping


class LanczosGGN(_LanczosNewton):
    __doc__ = r"""Gauss-Newton steps in a Lanczos Krylov space of the mini-batch generalised Gauss-Newton matrix.

    The curvature is ``G = J^T H_L J`` of the mini-batch
    (:class:`~curvwidgets.curvature.operators.GGN`), positive semi-definite
    for convex losses, and ``c(lambda) = max(lambda, 0) + weight_decay +
    damping`` (the clamp only removes rounding below zero).
    """ + _SHARED_DOC + r"""
    References
    ----------
    N. Schraudolph, "Fast Curvature Matrix-Vector Products for Second-Order
    Gradient Descent", Neural Computation 14(7), 2002.
    D. Granziol et al. (MLRG Oxford), "Deep Curvature Suite", Section 2.2.
    """

    operator_class = GGN

    def _check_loss(self, loss_fn: Callable) -> None:
        if isinstance(loss_fn, ModelLoss):
            raise ValueError(f"optimizer LanczosGGN needs the loss as a function of the model's outputs, "
                             f"loss_fn(outputs, targets), to form the Gauss-Newton matrix; a model computing its own "
                             f"loss ({loss_fn!r}) does not expose it. Use optimizer='LanczosSFN' (the Hessian) or "
                             "give that loss_fn and (inputs, targets) batches")

    def _curvature(self, values: torch.Tensor, weight_decay: float, damping: float) -> torch.Tensor:
        return values.clamp_min(0) + weight_decay + damping
