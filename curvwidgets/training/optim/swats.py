"""SWATS: Adam that switches to SGD once its projected learning rate settles (Keskar & Socher, 2017)."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Tuple

import torch

from ... import _validate as check
from .base import closure_loss

__all__ = ["SWATS"]


class SWATS(torch.optim.Optimizer):
    r"""Adam until a projected SGD learning rate stabilises, then SGD with momentum at that rate.

    Each parameter group runs Algorithm 1 of Keskar & Socher (2017) on the
    concatenation ``x`` of its parameters (with :func:`~curvwidgets.training.optim.create`
    one group holds the whole model, as in the paper). At step ``k`` with
    gradient ``g_k`` (plus ``weight_decay * x``, an L2 term, in both phases)::

        Adam phase
            m_k = beta1 m_{k-1} + (1 - beta1) g_k
            a_k = beta2 a_{k-1} + (1 - beta2) g_k^2
            p_k = -lr / (1 - beta1^k) * m_k / (sqrt(a_k / (1 - beta2^k)) + eps)
            x_k = x_{k-1} + p_k                                  (torch.optim.Adam, exactly)
            if p_k^T g_k != 0:
                gamma_k  = p_k^T p_k / (-p_k^T g_k)              (the SGD rate whose step projects onto p_k)
                lambda_k = beta2 lambda_{k-1} + (1 - beta2) gamma_k
                Lambda_k = lambda_k / (1 - beta2^k)
                if k > 1 and |Lambda_k - gamma_k| < switch_tol and Lambda_k > 0:
                    switch to the SGD phase with sgd_lr = Lambda_k, v = 0
        SGD phase
            v_k = beta1 v_{k-1} + g_k
            x_k = x_{k-1} - (1 - beta1) * sgd_lr * (lr / lr_at_switch) * v_k

    Shapes: ``m``, ``a`` and ``v`` have the shapes of the parameters;
    ``gamma``, ``lambda`` and ``Lambda`` are scalars per group.

    Parameters
    ----------
    params : iterable of tensors or of dicts
        Parameters or parameter groups, as for any ``torch.optim.Optimizer``.
    lr : float, default: 1e-3
        Adam's step size ``lr``. After the switch, changes to a group's
        ``lr`` (a schedule) scale the learned SGD rate by ``lr / lr_at_switch``.
    betas : (float, float), default: (0.9, 0.999)
        ``beta1`` (Adam's first moment, and the SGD momentum) and ``beta2``
        (second moment, and the average of ``gamma``).
    eps : float, default: 1e-8
        Adam's denominator term, added as in ``torch.optim.Adam`` (after the
        bias correction of ``a``).
    weight_decay : float, default: 0
        L2 penalty added to the gradient in both phases.
    switch_tol : float, default: 1e-9
        The switch happens when ``|Lambda_k - gamma_k| < switch_tol`` (the
        paper's ``epsilon``). ``math.inf`` switches at step 2 (for tests);
        ``0`` never switches (Adam).

    Attributes
    ----------
    param_groups[i] : dict
        Besides the hyperparameters, each group keeps its state as plain
        Python values (so ``torch.load(..., weights_only=True)`` can read a
        checkpoint): ``"step"`` (int), ``"phase"`` (``"adam"`` or ``"sgd"``),
        ``"lambda_avg"`` (the running ``lambda_k``), ``"gamma"`` (the latest
        ``gamma_k``), ``"sgd_lr"`` (``Lambda`` at the switch, or None),
        ``"lr_at_switch"`` and ``"switch_step"`` (or None).

    Notes
    -----
    Deviations from the paper's Algorithm 1, both deliberate: ``eps`` enters
    as in ``torch.optim.Adam`` (``sqrt(a_k / (1 - beta2^k)) + eps`` instead of
    ``sqrt(a_k) + eps`` scaled), so that before the switch the steps are
    ``torch.optim.Adam``'s to rounding; and a group only switches to a
    positive ``Lambda_k`` (a negative projected rate would ascend). The paper
    uses one ``epsilon`` for both roles; here they are ``eps`` and
    ``switch_tol``.

    References
    ----------
    N. S. Keskar and R. Socher, "Improving Generalization Performance by
    Switching from Adam to SGD", arXiv:1712.07628, 2017 (Algorithm 1).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        switch_tol: float = 1e-9,
    ):
        defaults = dict(
            lr=check.positive("lr", lr),
            betas=check.betas("betas", betas),
            eps=check.non_negative("eps", eps),
            weight_decay=check.non_negative("weight_decay", weight_decay),
            switch_tol=_switch_tol(switch_tol),
        )
        super().__init__(params, defaults)  # calls add_param_group, which adds the state of each group

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        _initialise(self.param_groups[-1])

    @property
    def switched(self) -> bool:
        """Whether every parameter group is in the SGD phase."""
        return all(group["phase"] == "sgd" for group in self.param_groups)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """One SWATS step for every group; ``closure`` re-evaluates the loss, as for ``torch.optim``."""
        loss = closure_loss(closure)
        for group in self.param_groups:
            pairs = [(p, p.grad) for p in group["params"] if p.grad is not None]
            if not pairs:
                continue
            if any(grad.is_sparse for _, grad in pairs):
                raise RuntimeError("SWATS does not support sparse gradients")
            group["step"] += 1
            if group["phase"] == "sgd":
                self._sgd_step(group, pairs)
            else:
                self._adam_step(group, pairs)
        return loss

    def _gradient(self, group: dict, param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return grad.add(param, alpha=group["weight_decay"]) if group["weight_decay"] != 0 else grad

    def _sgd_step(self, group: dict, pairs) -> None:
        beta1 = group["betas"][0]
        rate = (1 - beta1) * group["sgd_lr"] * (group["lr"] / group["lr_at_switch"])
        for param, grad in pairs:
            grad = self._gradient(group, param, grad)
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            buffer = state["momentum_buffer"]
            buffer.mul_(beta1).add_(grad)
            param.add_(buffer, alpha=-rate)

    def _adam_step(self, group: dict, pairs) -> None:
        beta1, beta2 = group["betas"]
        k = group["step"]
        step_size = group["lr"] / (1 - beta1**k)
        bias_correction2_sqrt = (1 - beta2**k) ** 0.5
        step_norm_sq, step_dot_grad = [], []
        for param, grad in pairs:
            grad = self._gradient(group, param, grad)
            state = self.state[param]
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
            update = exp_avg.mul(-step_size).div_(denom)  # p_k, in the order of addcdiv_'s arithmetic
            param.add_(update)
            flat_update, flat_grad = update.reshape(-1).double(), grad.reshape(-1).double()
            step_norm_sq.append(torch.dot(flat_update, flat_update))
            step_dot_grad.append(torch.dot(flat_update, flat_grad))
        norm_sq, dot = torch.stack([torch.stack(step_norm_sq).sum(), torch.stack(step_dot_grad).sum()]).tolist()
        if dot == 0 or not math.isfinite(dot) or not math.isfinite(norm_sq):
            return
        gamma = norm_sq / -dot
        group["gamma"] = gamma
        group["lambda_avg"] = beta2 * group["lambda_avg"] + (1 - beta2) * gamma
        corrected = group["lambda_avg"] / (1 - beta2**k)
        if k > 1 and corrected > 0 and abs(corrected - gamma) < group["switch_tol"]:
            group.update(phase="sgd", sgd_lr=corrected, lr_at_switch=group["lr"], switch_step=k)
            for param in group["params"]:
                self.state[param]["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)


def _switch_tol(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"switch_tol must be a number >= 0 (math.inf allowed); got {value!r}")
    return float(value)


def _initialise(group: dict) -> None:
    """Give a new group its SWATS state (kept when a loaded state dict already has it)."""
    for key, value in (("step", 0), ("phase", "adam"), ("lambda_avg", 0.0), ("gamma", None),
                       ("sgd_lr", None), ("lr_at_switch", None), ("switch_step", None)):
        group.setdefault(key, value)
