"""K-FAC: Kronecker-factored approximate curvature for Linear and Conv2d layers.

Martens & Grosse (2015) approximate the Fisher block of a layer with weights
``W`` (``d_out x d_in``, the bias appended as a last column) by a Kronecker
product of two small matrices, the second moment ``A`` of the layer's inputs
and the second moment ``G`` of the gradients of the loss in its outputs;
Grosse & Martens (2016, "KFC") extend this to convolutions by treating each
spatial position of a patch as an input. Inverting the two factors separately
gives a cheap approximate natural-gradient step.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...curvature.data import all_reduce_sum, world
from ... import _validate as check
from .base import closure_loss, momentum_step

__all__ = ["KFAC"]


@dataclass(eq=False)
class _Layer:
    """A Linear or Conv2d layer that K-FAC preconditions."""

    name: str
    module: nn.Module
    weight: nn.Parameter
    bias: Optional[nn.Parameter]


@dataclass(eq=False)
class _BatchStatistics:
    """Sums over the forward and backward passes since the last step: ``sum a a^T`` and ``sum g g^T``."""

    activations: Optional[torch.Tensor] = None
    samples: int = 0
    gradients: Optional[torch.Tensor] = None
    rows: int = 0

    def add_activations(self, product: torch.Tensor, samples: int) -> None:
        self.activations = product if self.activations is None else self.activations + product
        self.samples += samples

    def add_gradients(self, product: torch.Tensor, rows: int) -> None:
        self.gradients = product if self.gradients is None else self.gradients + product
        self.rows += rows


class KFAC(torch.optim.Optimizer):
    r"""K-FAC preconditioned SGD with momentum for the Linear and Conv2d layers of a model.

    Forward hooks registered at construction record, for every
    ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``) layer, the layer inputs
    and (through a hook on the output tensor) the gradient of the loss in the
    outputs, during the training loop's own forward and backward passes, so
    the loop is the same as for SGD: ``loss.backward(); optimizer.step()``.

    **Factors.** For a batch of ``N`` samples, let ``a`` be the input rows of
    a layer (shape ``(R, d_in + 1)``, a column of ones appended when the layer
    has a bias): ``R = N`` rows for a Linear layer on ``(N, d_in)`` inputs;
    ``R = N T`` rows for a Conv2d layer, one per output position ``t`` of the
    ``T`` positions, each a flattened ``C k_h k_w`` input patch
    (``F.unfold``; Grosse & Martens, 2016), and likewise for a Linear layer on
    ``(N, ..., d_in)`` inputs. Let ``g = N dL/ds`` be the rows of the
    per-sample gradients in the layer outputs ``s`` (shape ``(R, d_out)``;
    ``L`` the batch-mean loss, so ``N dL/ds_n`` is the gradient of sample
    ``n``'s own loss). Then::

        A_batch = (1/N) sum_rows a a^T          shape (d_in + 1, d_in + 1)
        G_batch = (1/R) sum_rows g g^T          shape (d_out, d_out)

    so for a Linear layer ``A = E[a a^T]`` and ``G = E[g g^T]``, and for a
    convolution ``A`` sums over positions and ``G`` averages over them (the
    KFC approximation ``F ~ A kron G``). Every ``stat_every`` steps the
    factors are updated as running averages,
    ``A <- eps_k A + (1 - eps_k) A_batch`` with
    ``eps_k = min(1 - 1/k, stat_decay)`` at the ``k``-th update (Martens &
    Grosse, 2015, Section 5), so the first update sets ``A = A_batch``.

    **Update.** Every ``inverse_every`` steps (and at the first) the factors
    are eigendecomposed, ``A = Q_A diag(d_A) Q_A^T``, ``G = Q_G diag(d_G)
    Q_G^T``. With the layer gradient ``Gbar = [dL/dW, dL/db]`` (shape
    ``(d_out, d_in + 1)``, a convolution's weight flattened to
    ``(d_out, C k_h k_w)``) and the damping ``lambda`` split between the
    factors (factored Tikhonov damping, Martens & Grosse, 2015, Section 6.3)::

        pi      = sqrt( (tr(A) / (d_in + 1)) / (tr(G) / d_out) )     (1 when pi_damping=False)
        Delta   = (G + sqrt(lambda)/pi I)^-1  Gbar  (A + pi sqrt(lambda) I)^-1
                = Q_G [ (Q_G^T Gbar Q_A) / ((d_G + sqrt(lambda)/pi) (d_A + pi sqrt(lambda))^T) ] Q_A^T

    Other parameters (BatchNorm, embeddings, ...) take ``Delta = grad``.
    Then, for all parameters ``theta``::

        nu      = min(1, sqrt(kl_clip / (lr^2 sum_layers <Delta, Gbar>)))   (1 when kl_clip is None)
        Delta   <- nu Delta (K-FAC layers only) + weight_decay theta
        v       <- momentum v + Delta        (v = Delta at the first step)
        theta   <- theta - lr v

    Parameters
    ----------
    model : nn.Module
        The model; its Linear and Conv2d layers get hooks, and all its
        trainable parameters are optimised.
    lr : float, default: 0.01
    momentum : float, default: 0.9
        Heavy-ball momentum in ``[0, 1)``.
    weight_decay : float, default: 0
        L2 penalty, added to the update after preconditioning.
    damping : float, default: 1e-3
        Tikhonov damping ``lambda`` of the Fisher blocks.
    stat_decay : float, default: 0.95
        Upper bound of the running-average weight ``eps_k``.
    stat_every : int, default: 1
        Record the layer statistics at steps ``0, stat_every, 2 stat_every, ...``.
    inverse_every : int, default: 10
        Refresh the eigendecompositions every this many steps.
    kl_clip : float or None, default: 1e-3
        Bound on the approximate KL change ``lr^2 <Delta, Gbar>`` of a step
        (Ba, Grosse & Martens, 2017); None turns clipping off.
    pi_damping : bool, default: True
        Split the damping with the trace ratio ``pi``; False gives
        ``sqrt(lambda)`` to each factor.

    Notes
    -----
    The factors are those of the *empirical* Fisher: ``g`` comes from the
    loop's backward pass with the true targets, not from targets sampled from
    the model as in the paper, so that no extra backward pass is needed.
    ``g = N dL/ds`` assumes a loss averaged over the batch dimension (the
    default of torch losses); a summed loss only rescales ``G`` and so the
    effective damping. Statistics are recorded only for forward passes in
    training mode (``module.training``) with gradients enabled, so evaluation
    passes and the curvature operators of :mod:`curvwidgets.curvature` (which
    run the model in eval mode) leave them alone; a layer called several times
    in one step averages its statistics over the calls. Grouped convolutions,
    and layers whose bias is frozen while the weight trains, are not
    preconditioned (plain gradient). Under AMP loss scaling ``G`` carries the
    square of the scale, which changes the effective damping. The state dict holds the factors
    and eigendecompositions as tensors (per weight: ``"A"``, ``"G"``,
    ``"QA"``, ``"dA"``, ``"QG"``, ``"dG"``, ``"pi"``, ``"factor_updates"``),
    and the step counter as the group's ``"step"``. Under ``torch.distributed``
    the batch statistics are summed over ranks at each statistics step, so
    every rank keeps the same factors and takes the same step.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    >>> optimizer = KFAC(model, lr=0.1)
    >>> inputs, targets = torch.randn(32, 4), torch.randint(0, 2, (32,))
    >>> loss = torch.nn.functional.cross_entropy(model(inputs), targets)
    >>> loss.backward(); optimizer.step()  # the hooks saw the forward and backward passes
    >>> tuple(optimizer.state[model[0].weight]["A"].shape), tuple(optimizer.state[model[0].weight]["G"].shape)
    ((5, 5), (8, 8))

    References
    ----------
    J. Martens and R. Grosse, "Optimizing Neural Networks with
    Kronecker-factored Approximate Curvature", ICML 2015.
    R. Grosse and J. Martens, "A Kronecker-factored Approximate Fisher Matrix
    for Convolution Layers", ICML 2016.
    J. Ba, R. Grosse and J. Martens, "Distributed Second-Order Optimization
    using Kronecker-Factored Approximations", ICLR 2017.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        damping: float = 1e-3,
        stat_decay: float = 0.95,
        stat_every: int = 1,
        inverse_every: int = 10,
        kl_clip: Optional[float] = 1e-3,
        pi_damping: bool = True,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"KFAC needs the model (an nn.Module) to hook its layers; got {type(model).__name__}")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters (none with requires_grad=True)")
        defaults = dict(
            lr=check.positive("lr", lr),
            momentum=check.unit_interval("momentum", momentum),
            weight_decay=check.non_negative("weight_decay", weight_decay),
            damping=check.positive("damping", damping),
            stat_decay=check.unit_interval("stat_decay", stat_decay),
            stat_every=check.positive_int("stat_every", stat_every),
            inverse_every=check.positive_int("inverse_every", inverse_every),
            kl_clip=check.optional_positive("kl_clip", kl_clip),
            pi_damping=check.boolean("pi_damping", pi_damping),
        )
        super().__init__(params, defaults)
        self.layers: List[_Layer] = [
            _Layer(name, module, module.weight, module.bias)
            for name, module in model.named_modules()
            if _supported(module) and module.weight.requires_grad
            and (module.bias is None or module.bias.requires_grad)
        ]
        self._statistics: Dict[int, _BatchStatistics] = {}
        self._handles = []
        reference = weakref.ref(self)
        for index, layer in enumerate(self.layers):
            self._handles.append(layer.module.register_forward_hook(_make_forward_hook(reference, index)))

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self.param_groups[-1].setdefault("step", 0)

    def remove_hooks(self) -> None:
        """Remove the hooks from the model: no more statistics are recorded; the factors gathered so far stay in use."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---- recording ----------------------------------------------------------------------

    def _group_of(self, param: torch.Tensor) -> dict:
        for group in self.param_groups:
            if any(p is param for p in group["params"]):
                return group
        raise KeyError("parameter not in this optimiser")

    def _record_forward(self, index: int, module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> None:
        layer = self.layers[index]
        if module is not layer.module or not module.training or not torch.is_grad_enabled():
            return  # a copy of the layer (deepcopy of the model), evaluation, or no backward to come
        if not inputs or not isinstance(inputs[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            return
        if not output.requires_grad or _is_transformed(inputs[0]):
            return
        group = self._group_of(layer.weight)
        if group["step"] % group["stat_every"] != 0:
            return
        with torch.no_grad(), _full_precision(inputs[0].device):  # factors in the weights' dtype, even under autocast
            rows, samples = _activation_rows(layer, inputs[0].detach().to(layer.weight.dtype))
            statistics = self._statistics.setdefault(index, _BatchStatistics())
            statistics.add_activations(rows.T @ rows, samples)

        def record_gradient(gradient: torch.Tensor) -> None:
            with torch.no_grad(), _full_precision(gradient.device):
                per_sample = _gradient_rows(layer, gradient.detach().to(layer.weight.dtype)) * samples
                statistics.add_gradients(per_sample.T @ per_sample, per_sample.shape[0])

        output.register_hook(record_gradient)

    # ---- the step -----------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """One K-FAC step: update the factors, refresh their eigendecompositions when due, move the parameters."""
        loss = closure_loss(closure)
        if world()[1] > 1:
            self._reduce_statistics()
        directions: Dict[int, torch.Tensor] = {}
        for index, layer in enumerate(self.layers):
            group = self._group_of(layer.weight)
            state = self.state[layer.weight]
            self._update_factors(index, state, group)
            if "A" in state and (group["step"] % group["inverse_every"] == 0 or "QA" not in state):
                self._eigendecompose(state, group)
            if "QA" in state and layer.weight.grad is not None:
                directions[index] = self._precondition(layer, state, group)
        self._statistics.clear()
        scales = self._kl_scales(directions)
        preconditioned: Dict[int, torch.Tensor] = {}
        for index, direction in directions.items():
            layer = self.layers[index]
            weight_part, bias_part = _split(layer, direction * scales[id(self._group_of(layer.weight))])
            preconditioned[id(layer.weight)] = weight_part
            if layer.bias is not None and layer.bias.grad is not None:
                preconditioned[id(layer.bias)] = bias_part
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("KFAC does not support sparse gradients")
                update = preconditioned.get(id(param), param.grad)
                if group["weight_decay"] != 0:
                    update = update.add(param, alpha=group["weight_decay"])
                momentum_step(self.state[param], param, update, group)
            group["step"] += 1
        return loss

    def _reduce_statistics(self) -> None:
        """Sum the batch statistics over ranks, so that every rank holds the same factors.

        Every rank takes part for every layer at a statistics step (with zeros
        where it recorded nothing), so the collectives always pair up.
        """
        for index, layer in enumerate(self.layers):
            group = self._group_of(layer.weight)
            if group["step"] % group["stat_every"] != 0:
                continue
            statistics = self._statistics.setdefault(index, _BatchStatistics())
            width = layer.weight[0].numel() + (layer.bias is not None)
            zeros = layer.weight.new_zeros
            activations = statistics.activations if statistics.activations is not None else zeros(width, width)
            gradients = statistics.gradients if statistics.gradients is not None else zeros(len(layer.weight), len(layer.weight))
            counts = torch.tensor([statistics.samples, statistics.rows], dtype=torch.float64, device=layer.weight.device)
            for tensor in (activations, gradients, counts):
                all_reduce_sum(tensor)
            statistics.activations, statistics.gradients = activations, gradients
            statistics.samples, statistics.rows = (int(count) for count in counts.tolist())

    def _update_factors(self, index: int, state: dict, group: dict) -> None:
        statistics = self._statistics.get(index)
        if statistics is None or statistics.gradients is None or statistics.samples == 0 or statistics.rows == 0:
            return
        batch_a = statistics.activations / statistics.samples
        batch_g = statistics.gradients / statistics.rows
        updates = state.get("factor_updates", 0) + 1
        weight = min(1.0 - 1.0 / updates, group["stat_decay"])
        if "A" not in state:
            state["A"], state["G"] = batch_a.clone(), batch_g.clone()
        else:
            state["A"].mul_(weight).add_(batch_a, alpha=1 - weight)
            state["G"].mul_(weight).add_(batch_g, alpha=1 - weight)
        state["factor_updates"] = updates

    def _eigendecompose(self, state: dict, group: dict) -> None:
        for key in ("A", "G"):
            values, vectors = _symmetric_eigh(state[key])
            state["d" + key], state["Q" + key] = values, vectors
        trace_a = float(state["dA"].mean())
        trace_g = float(state["dG"].mean())
        usable = group["pi_damping"] and trace_a > 0 and trace_g > 0
        state["pi"] = math.sqrt(trace_a / trace_g) if usable else 1.0

    def _precondition(self, layer: _Layer, state: dict, group: dict) -> torch.Tensor:
        """``(G + gamma_G I)^-1 Gbar (A + gamma_A I)^-1`` for the layer gradient ``Gbar``, shape ``(d_out, d_in [+1])``."""
        gradient = _layer_gradient(layer)
        root = math.sqrt(group["damping"])
        pi = state["pi"]
        rotated = state["QG"].T @ gradient @ state["QA"]
        rotated /= (state["dG"] + root / pi)[:, None] * (state["dA"] + pi * root)[None, :]
        return state["QG"] @ rotated @ state["QA"].T

    def _kl_scales(self, directions: Dict[int, torch.Tensor]) -> Dict[int, float]:
        """Per group ``nu = min(1, sqrt(kl_clip / (lr^2 sum <Delta, Gbar>)))``, 1 without clipping."""
        scales: Dict[int, float] = {}
        for group in self.param_groups:
            scales[id(group)] = 1.0
            if group["kl_clip"] is None:
                continue
            inner = [
                (direction * _layer_gradient(self.layers[index])).sum()
                for index, direction in directions.items()
                if self._group_of(self.layers[index].weight) is group
            ]
            if not inner:
                continue
            total = float(torch.stack(inner).sum()) * group["lr"] ** 2
            if total > 0:
                scales[id(group)] = min(1.0, math.sqrt(group["kl_clip"] / total))
        return scales


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return isinstance(module, nn.Conv2d) and module.groups == 1


def _is_transformed(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is wrapped by a ``torch.func`` transform (vmap, grad, jvp): no statistics then."""
    functorch = getattr(torch._C, "_functorch", None)
    test = getattr(functorch, "is_functorch_wrapped_tensor", None)
    return bool(test(tensor)) if test is not None else False


def _make_forward_hook(reference: "weakref.ref[KFAC]", index: int):
    def hook(module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> None:
        optimizer = reference()
        if optimizer is not None:
            optimizer._record_forward(index, module, inputs, output)

    return hook


def _activation_rows(layer: _Layer, inputs: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Input rows ``a`` (shape ``(R, d_in [+1])``) and the number of samples ``N``."""
    module = layer.module
    if isinstance(module, nn.Linear):
        samples = inputs.shape[0] if inputs.ndim > 1 else 1
        rows = inputs.reshape(-1, inputs.shape[-1])
    else:
        if inputs.ndim == 3:  # an unbatched (C, H, W) input
            inputs = inputs[None]
        samples = inputs.shape[0]
        padding = module.padding
        if module.padding_mode != "zeros" or isinstance(padding, str):
            mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
            inputs = F.pad(inputs, module._reversed_padding_repeated_twice, mode=mode)
            padding = 0
        patches = F.unfold(inputs, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (N T, C k_h k_w)
    if layer.bias is not None:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)
    return rows, samples


def _gradient_rows(layer: _Layer, gradient: torch.Tensor) -> torch.Tensor:
    """Output-gradient rows ``dL/ds`` of shape ``(R, d_out)``, in the order of :func:`_activation_rows`."""
    if isinstance(layer.module, nn.Linear):
        return gradient.reshape(-1, gradient.shape[-1])
    if gradient.ndim == 3:
        gradient = gradient[None]
    return gradient.permute(0, 2, 3, 1).reshape(-1, gradient.shape[1])


def _layer_gradient(layer: _Layer) -> torch.Tensor:
    """``Gbar = [dL/dW, dL/db]`` of shape ``(d_out, d_in [+1])`` (a missing bias gradient counts as 0)."""
    weight = layer.weight.grad.reshape(layer.weight.shape[0], -1)
    if layer.bias is None:
        return weight
    bias = layer.bias.grad if layer.bias.grad is not None else torch.zeros_like(layer.bias)
    return torch.cat([weight, bias[:, None]], dim=1)


def _split(layer: _Layer, direction: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Inverse of :func:`_layer_gradient`: the weight-shaped and bias-shaped parts of ``direction``."""
    if layer.bias is None:
        return direction.reshape(layer.weight.shape), None
    return direction[:, :-1].reshape(layer.weight.shape), direction[:, -1].contiguous()


def _full_precision(device: torch.device):
    """A context with autocast off on ``device`` (bf16 factors would lose the small eigenvalues and fail ``eigh``)."""
    return torch.autocast(device.type, enabled=False)


def _symmetric_eigh(matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (clamped at 0) and eigenvectors of a symmetric PSD factor; float64 if float32 fails."""
    symmetric = (matrix + matrix.T) / 2
    try:
        values, vectors = torch.linalg.eigh(symmetric)
    except torch.linalg.LinAlgError:
        values, vectors = torch.linalg.eigh(symmetric.double())
        values, vectors = values.to(matrix.dtype), vectors.to(matrix.dtype)
    return values.clamp_min(0), vectors
