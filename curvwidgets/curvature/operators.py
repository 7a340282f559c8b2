"""Hessian and generalised Gauss-Newton operators of a model's mean loss over a data set.

Both are :class:`~curvwidgets.linalg.operators.LinearOperator` objects over a
flat vector of the selected parameters (see
:class:`~curvwidgets.curvature.params.ParameterLayout`), so ``cw.lanczos(H,
steps=100)`` works on them directly. The base class owns the data loop, the
model's state, input checks and the reduction over ranks; each subclass only
says how one batch's products are made, with forward-mode differentiation
where the model allows it and double backward otherwise.

A block of ``k`` vectors can share each pass's primal computation: forward
mode pushes several tangents through one forward pass with ``torch.func.vmap``,
double backward reuses one gradient graph. Whether that is cheaper per vector
than a loop of single products depends on the machine's kernels (a vmapped
convolution becomes a grouped one), so it is measured, not assumed: the first
product of each block width times the candidate :class:`Plan` objects (backend
and vectors per pass) on slices of its first batch and keeps the fastest
(:meth:`CurvatureOperator.plan_for`); the products made while timing are part
of that first product, so the choice costs only the slower candidates' excess. On the CPU, batches are also split into
passes of fewer samples so that no batched activation outgrows
:data:`CPU_PASS_BYTES` (see ``sample_chunk``): larger temporaries are fresh
memory from the kernel on every allocation, and zeroing their pages costs more
than the arithmetic (``benchmarks/README.md``, issue 11).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode

from .._validate import choice, device_value, positive_int, seed_value
from ..linalg.operators import LinearOperator, resolve_dtype
from .data import DataSource, all_reduce_sum, naming_data
from ..losses import ModelLoss
from .batches import Inputs, model_arguments, outputs_reader
from .output_hessian import counted_weight, output_hessian_product, reduction_of, splits_by_sample
from .params import ParamsLike, select_parameters

__all__ = ["CurvatureOperator", "Hessian", "GGN", "Plan", "KeptPass", "BN_MODES", "CPU_PASS_BYTES"]

BN_MODES = ("eval", "train")
#: A timed plan replaces the default one (the preferred backend, every vector of the block in one pass, up to
#: MAX_VECTORS_PER_PASS) only when it takes under this fraction of its time: near-ties do not follow timing noise.
SWITCH_MARGIN = 0.9
#: ... on at most this many samples of the first batch (on a GPU, whose speed needs wide batches, 16 times more),
#: each candidate this many times (the fastest kept: the first run of new shapes pays one-time costs)
TRIAL_SAMPLES = 32
TRIAL_ROUNDS = 2
RETIME_WITHIN = 1.25  # ... but a candidate over this multiple of the fastest's time is not timed again
#: The samples per pass of a timed budget replace the usual ones only under this fraction of their time:
#: each budget is timed on one pass, noisier than the vector plans' slices.
BUDGET_MARGIN = 0.75
MAX_VECTORS_PER_PASS = 16  # the widest pass "auto" tries: activation memory grows with it
#: ``sample_chunk="auto"`` on the CPU: the largest batched activation of a pass stays under this many
#: bytes, half of glibc's largest mmap threshold (32 MiB), above which every allocation is fresh memory.
CPU_PASS_BYTES = 16 * 2**20
#: ... but each pass also adds its k x P float64 products into the batch's total: on a model with many parameters
#: the budget grows to match those bytes, up to this many times CPU_PASS_BYTES (resnet18, P = 11 M, k = 8: 16 MiB
#: passes cost 1.7x whole batches of 128; benchmarks/README.md)
PASS_BYTES_GROWTH = 4
Tangents = Tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Plan:
    """How an operator computes products of a block of ``width`` vectors.

    Attributes
    ----------
    width : int
        The block width ``k`` it is for (the vectors of one ``matmat``).
    backend : str
        ``"double-backward"`` or the class's forward-mode backend.
    vectors_per_pass : int
        How many of the ``k`` vectors share one pass over a batch (``vmap``
        over tangents, or one gradient graph); 1 is a loop of single products.
    chosen_by : {"pinned", "timing", "fallback"}
        ``"pinned"``: the caller fixed ``backend`` and ``vector_chunk``.
        ``"timing"``: the fastest candidate on slices of the first batch.
        ``"fallback"``: forward mode failed for this model (see
        ``fallback_reason``), the rest was timed.
    seconds : dict of str to float
        Per candidate (``"<backend> x<vectors_per_pass>"``), the seconds per
        vector and sample it took on the trial slice; empty for a pinned plan.
    pass_bytes : int or None
        With ``sample_chunk="auto"`` on the CPU, the budget of a pass's
        largest batched activation that sets its samples per pass (see
        ``sample_chunk``), timed between the usual budget (see
        ``CurvatureOperator._pass_budget``) and half of it on the first
        batch's own work where that batch is large enough; None (the usual
        budget) where it was not timed.
    pass_seconds : dict of int to float
        Per budget timed, the seconds per vector and sample; empty if none was.
    cost : float
        Wall-clock seconds that choosing it cost beyond the products it
        made: the warm-ups, trials whose products were thrown away, and the
        slower candidates' time over the chosen one's rate (0 for a pinned
        plan).
    """

    width: int
    backend: str
    vectors_per_pass: int
    chosen_by: str
    seconds: Dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    pass_bytes: Optional[int] = None
    pass_seconds: Dict[int, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``"<backend> x<vectors_per_pass>"``, as in :attr:`seconds`."""
        return _label(self.backend, self.vectors_per_pass)

    def to_meta(self) -> Dict[str, object]:
        """Plain types, for a result's metadata."""
        return {"width": self.width, "backend": self.backend, "vectors_per_pass": self.vectors_per_pass,
                "chosen_by": self.chosen_by, "seconds_per_vector_sample": dict(self.seconds), "cost": self.cost,
                "pass_bytes": self.pass_bytes,
                "pass_seconds_per_vector_sample": {str(budget): value for budget, value in self.pass_seconds.items()}}


def _label(backend: str, vectors: int) -> str:
    return f"{backend} x{vectors}"


@dataclass
class KeptPass:
    """One pass's differentiated computation at fixed weights, kept so that every product reuses it.

    ``leaves`` are the selected parameters' values the graph was built on,
    ``loss`` the pass's loss (a 0-d tensor with its graph). The Hessian keeps
    the loss ``gradient`` built with ``create_graph``; the GGN keeps the model
    ``outputs`` and the graph of ``transposed = J^T dummy``. See
    :class:`~curvwidgets.curvature.retained.RetainedProducts`.
    """

    leaves: Tuple[torch.Tensor, ...]
    targets: torch.Tensor
    loss: torch.Tensor
    gradient: Optional[Tuple[torch.Tensor, ...]] = None
    outputs: Optional[torch.Tensor] = None
    dummy: Optional[torch.Tensor] = None
    transposed: Optional[Tuple[torch.Tensor, ...]] = None

    def loss_gradient(self) -> Tuple[torch.Tensor, ...]:
        """The gradient of the pass's loss, detached: the kept one, or one more reverse pass through the kept graph."""
        if self.gradient is not None:
            return tuple(piece.detach() for piece in self.gradient)
        with torch.enable_grad():
            return torch.autograd.grad(self.loss, self.leaves, retain_graph=True, allow_unused=True,
                                       materialize_grads=True)


class CurvatureOperator(LinearOperator):
    """Base of curvature operators: the curvature of ``loss_fn`` over all of ``data`` as one batch.

    Parameters
    ----------
    model : nn.Module
    loss_fn : callable
        ``loss_fn(outputs, targets)`` returning a scalar. The operator is the
        curvature of this loss over every sample of ``data`` as if the whole
        set were one batch, as the user defined it: with ``reduction="mean"``
        (the default of torch's losses) the mean, batches weighted by their
        size, or for ``nn.CrossEntropyLoss`` and ``nn.NLLLoss`` by what they
        count (``ignore_index``, class ``weight``; see
        :func:`~curvwidgets.curvature.output_hessian.counted_weight`); with
        ``reduction="sum"`` the sum over every sample, not rescaled. A plain
        function is taken as a mean over its batch (a batch's loss divided by
        its number of samples); one that sums says so with an attribute,
        ``fn.reduction = "sum"``. A model that computes its own loss from
        the batch takes :class:`~curvwidgets.losses.ModelLoss` (not
        :class:`GGN`, which needs the loss of the outputs).
    data : re-iterable of (inputs, targets)
        A list of batches or a ``DataLoader``; batches are moved to ``device``.
        ``inputs`` may be a tensor, a tuple or a mapping of tensors, and the
        model's output a tensor or have ``.logits``
        (:mod:`~curvwidgets.curvature.batches`); with ``ModelLoss`` each batch
        is the inputs alone.
        Every pass must yield the same samples (and, with ``num_samples`` or
        ``bn_mode="train"``, the same batches in the same order): a pass that
        does not raises ``ValueError``.
    params : optional
        Which parameters (see :func:`~curvwidgets.curvature.params.select_parameters`).
    bn_mode : {"eval", "train"}, default: "eval"
        ``"eval"``: the model in eval mode, BatchNorm using running
        statistics. ``"train"``: BatchNorm using each batch's statistics (as
        the paper did), everything else in eval mode. Either way the model's
        parameters, buffers and ``training`` flags are left exactly as found.
    num_samples : int, optional
        Use a seeded subset of this many samples (``data`` must then iterate
        in a fixed order).
    seed : int, default: 0
        Seed of the subset.
    device : optional
        Where products run; default the model's device.
    dtype : optional
        float32 or float64; default the model's. A different dtype casts
        copies of the parameters and the inputs, never the model.
    vector_chunk : int or "auto", default: "auto"
        How many vectors of a ``matmat`` block share one pass (``vmap`` over
        tangents in forward mode, one gradient graph in double backward);
        activation memory grows with it. ``"auto"``: timed at the first
        product of each block width, one against the whole width (at most
        :data:`MAX_VECTORS_PER_PASS`), see :meth:`plan_for`.
    sample_chunk : int, "auto" or None, default: "auto"
        Samples per pass: each batch is split into passes of at most this
        many samples, whose products are summed, weighted as the loss counts
        them (the operator is unchanged: it is the mean over samples). An int
        asserts that the loss of a batch is that weighted mean of its parts'
        losses and that samples do not interact in the model (not allowed
        with ``bn_mode="train"``). None: whole batches. ``"auto"``: on the
        CPU, with ``bn_mode="eval"`` and a loss known to split by sample
        (:func:`~curvwidgets.curvature.output_hessian.splits_by_sample`), as
        many samples as keep one batched activation (the vectors of a pass
        times the samples times the bytes one sample adds to the largest
        tensor of a forward pass) under :data:`CPU_PASS_BYTES` (more on
        models with many parameters, up to :data:`PASS_BYTES_GROWTH` times:
        each pass adds ``k x P`` products into the batch's total), or half
        of that where it was timed faster on the first batch
        (:attr:`Plan.pass_bytes`);
        whole batches otherwise (on a GPU the caching allocator reuses memory).
    backend : {"auto", "double-backward"} or the class's forward-mode name, default: "auto"
        How products are differentiated. ``"auto"`` times both with the
        vectors per pass (:meth:`plan_for`); where the model does not support
        forward mode, double backward is used and the reason kept in
        ``fallback_reason``. Pin ``backend`` and ``vector_chunk`` for runs
        that must repeat bit for bit across machines (a timed choice may
        differ from one machine to another; all agree to rounding).

    Attributes
    ----------
    dim : int
        Number of selected parameters ``P``.
    layout : ParameterLayout
        Names and shapes of the selected parameters (``unflatten`` a vector).
    backend : str or None
        The backend of the last product: the pinned one, or with ``"auto"``
        ``None`` until the first product chooses one.
    plan : Plan or None
        How the last product was computed (None before the first).
    plans : dict of int to Plan
        The plan of each block width used so far, kept for the operator's
        life, so that repeated products agree bit for bit (the first of a
        width agrees with them to rounding: while it is timed, its first
        batch is summed in other pieces).
    fallback_reason : str or None
        Why the forward-mode backend was not used, when it was not.
    """

    symmetric = True  # by construction: as_operator skips its symmetry probe
    preferred_backend = "forward-mode"

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        data: Iterable,
        params: ParamsLike = None,
        bn_mode: str = "eval",
        num_samples: Optional[int] = None,
        seed: int = 0,
        device: Union[str, torch.device, None] = None,
        dtype: Optional[torch.dtype] = None,
        *,
        vector_chunk: Union[int, str] = "auto",
        sample_chunk: Union[int, str, None] = "auto",
        backend: str = "auto",
    ):
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets); got {type(loss_fn).__name__}")
        self.model, self.loss_fn, self.bn_mode = model, loss_fn, choice("bn_mode", bn_mode, BN_MODES)
        seed_value("seed", seed)
        self.vector_chunk = vector_chunk if vector_chunk == "auto" else _vector_chunk_value(vector_chunk)
        self._automatic = choice("backend", backend, ("auto", self.preferred_backend, "double-backward")) == "auto"
        self.layout = select_parameters(model, params)
        reference = next(p for name, p in model.named_parameters() if name == self.layout.names[0])
        self.dim = self.layout.dim
        self.device = device_value("device", device) if device is not None else reference.device
        self.dtype = resolve_dtype(dtype if dtype is not None else reference.dtype)
        self.data = DataSource(data, num_samples, seed, fixed_order=bn_mode == "train",
                               inputs_only=isinstance(loss_fn, ModelLoss))
        self.sample_chunk = _sample_chunk_value(sample_chunk, self.bn_mode)
        if self.sample_chunk == "auto":  # may a batch's samples be split, and are they (on the CPU)
            self._separable = self.bn_mode == "eval" and splits_by_sample(loss_fn)
            self._splits = self._separable and self.device.type == "cpu"
        else:
            self._separable = self._splits = self.sample_chunk is not None
        self._sample_bytes: Optional[int] = None  # probed at the first split batch
        self._pinned_backend: Optional[str] = None if self._automatic else backend
        self.plans: Dict[int, Plan] = {}
        self.plan: Optional[Plan] = None
        self.fallback_reason: Optional[str] = None
        self._data_checked = False  # a batch has gone through (_diagnosing_data)

    # ---- the public products ------------------------------------------------------------------

    def matvec(self, vector: torch.Tensor) -> torch.Tensor:
        """``C @ vector`` for a flat vector of shape ``(dim,)`` on ``device`` with ``dtype``."""
        self._check(vector, 1)
        return self.matmat(vector[:, None])[:, 0]

    def matmat(self, block: torch.Tensor) -> torch.Tensor:
        """``C @ block`` for ``block`` of shape ``(dim, k)``, in one pass over the data."""
        self._check(block, 2)
        total = torch.zeros(block.shape, dtype=torch.float64, device=self.device)
        weight = torch.zeros((), dtype=torch.float64, device=self.device)
        for batch_weight, product in self.batch_products(block):
            total += product
            weight += batch_weight
        all_reduce_sum(total)
        self.check_total_weight(all_reduce_sum(weight))
        return self.of_all_data(total, weight).to(self.dtype)

    def of_all_data(self, total: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The whole data's quantity from ``total``, the sum over batches of ``W_b`` times each batch mean's.

        ``total / weight`` (``weight`` the sum of the ``W_b``) for a loss
        whose ``reduction`` is ``"mean"``: the mean over every sample. For
        ``reduction="sum"`` the batches' products already are their sums'
        (``W_b`` times the mean's), and ``total`` is the sum's over every
        sample, unscaled: the curvature of the loss as the user defined it.
        """
        return total / weight if reduction_of(self.loss_fn) == "mean" else total

    def batch_products(self, block: torch.Tensor) -> Iterator[Tuple[float, torch.Tensor]]:
        """Per batch of this rank: ``(W_b, W_b * C_b @ block)``, ``C_b`` the batch's mean-loss curvature.

        ``W_b`` is the batch's weight in the loss
        (:func:`~curvwidgets.curvature.output_hessian.counted_weight`: its size
        unless the loss ignores or weights targets), so the sum of the
        products over batches divided by the sum of ``W_b`` is ``C @ block``.
        A summed loss's product already is ``W_b C_b @ block``. Batches of
        weight 0 are skipped. The products are float64, shape ``(dim, k)``,
        computed with the plan of width ``k``: the pinned one, the one kept,
        or at the first batch of the first block of that width one timed on
        that batch's own work (:meth:`plan_for`).
        """
        width = block.shape[1]
        with self.evaluation_mode():
            for weight, inputs, targets in self._weighted_batches():
                with self._diagnosing_data(inputs, targets):
                    if width in self.plans:
                        self.plan = self.plans[width]
                        product = self._product(self.plan, inputs, targets, block)
                    else:
                        product = self._planning_product(width, inputs, targets, block)
                yield weight, product

    def plan_for(self, width: int, inputs: torch.Tensor, targets: torch.Tensor) -> Plan:
        """The :class:`Plan` for blocks of ``width`` vectors: the one kept, the pinned one, or one timed now.

        Timing runs each candidate (the backends, with the block's vectors in
        one pass, up to :data:`MAX_VECTORS_PER_PASS`, or one at a time; see
        ``backend`` and ``vector_chunk``) :data:`TRIAL_ROUNDS` times, each on
        a slice of :data:`TRIAL_SAMPLES` samples of ``inputs`` (16 times more
        on a GPU), split into passes as the real work is (``sample_chunk``),
        after a warm-up of each backend on two samples, and keeps the
        cheapest per vector and sample (the best of its rounds); the default (preferred backend, widest pass)
        unless another takes under :data:`SWITCH_MARGIN` of its time. A loop
        of single products is a candidate, so a block never costs more per
        vector than that loop by more than timing noise.

        Inside :meth:`matmat` the slices are the first batch's own work:
        each candidate computes products that the block needs (distinct
        slices of samples, or distinct vectors of one slice), and the chosen
        plan completes the rest, so the choice costs only the warm-ups and
        the slower candidates' excess time (``Plan.cost``). Where the samples
        of a batch may not be split (``bn_mode="train"``, ``sample_chunk=None``,
        a loss that does not split by sample), or here, the trial products
        are thrown away.
        """
        if width not in self.plans:
            block = torch.randn(self.dim, width, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
            self._planning_product(width, inputs, targets, block.to(self.device), keep=False)
        self.plan = self.plans[width]
        return self.plan

    def _candidates(self, width: int) -> List[Tuple[str, int]]:
        """``(backend, vectors_per_pass)`` pairs for a block of ``width``, the default one first."""
        widest = min(width, MAX_VECTORS_PER_PASS)
        if self.vector_chunk == "auto":
            counts = [widest, 1] if widest > 1 else [1]  # the widest pass, or a loop of single products
        else:
            counts = [min(width, self.vector_chunk)]
        backends = [self._pinned_backend] if self._pinned_backend else [self.preferred_backend, "double-backward"]
        return [(backend, count) for backend in backends for count in counts]

    def _planning_product(self, width: int, inputs: torch.Tensor, targets: torch.Tensor, block: torch.Tensor,
                          keep: bool = True) -> torch.Tensor:
        """``W_b C_b @ block`` for the first batch of a width, choosing and keeping its plan on the way (:meth:`plan_for`).

        The candidates take the batch's slices of ``trial`` samples in turn,
        each the next ``vectors_per_pass`` vectors of the current slice that
        no candidate has computed (or the next slice), so that every product
        made while timing is part of the result when ``keep`` and the
        samples may be split. A candidate that finds no room is timed on
        the first slice and its products thrown away in the first round, and
        not timed again in the next.
        """
        candidates = self._candidates(width)
        if len(candidates) == 1:
            self.plans[width] = self.plan = Plan(width, *candidates[0], "pinned")
            return self._product(self.plan, inputs, targets, block)
        began = time.perf_counter()
        trial = min(len(inputs), TRIAL_SAMPLES * (1 if self.device.type == "cpu" else 16))
        slices = len(inputs) // trial if keep and self._separable else 0
        done = [0] * slices  # per slice, how many of its first vectors are computed
        product = torch.zeros(self.dim, width, dtype=torch.float64, device=self.device)
        for backend in dict.fromkeys(backend for backend, _ in candidates):  # a warm-up of each backend
            with contextlib.suppress(RuntimeError, NotImplementedError):  # failures are met again below
                self._timed(Plan(width, backend, 1, "trial"), inputs[:2], targets[:2],
                            self.layout.unflatten(block[:, :1]))
        seconds: Dict[Tuple[str, int], float] = {}
        spent: List[Tuple[float, int]] = []  # (seconds, vector-samples kept) of each trial
        failures: Dict[Tuple[str, int], str] = {}
        for position, (backend, count) in enumerate(candidates * TRIAL_ROUNDS):
            if (backend, 1) in failures or (backend, count) in failures:
                continue
            fastest = min(seconds.values(), default=math.inf)
            if position >= len(candidates) and seconds.get((backend, count), 0) > RETIME_WITHIN * fastest:
                continue  # clearly slower: not timed again
            where = next((index for index in range(slices) if done[index] + count <= width), None)
            if where is None and position >= len(candidates):
                continue  # timed already, and no products of the batch left to time it on
            start, first = (0, 0) if where is None else (where * trial, done[where])
            part = slice(start, start + trial)
            try:
                pushed, samples, elapsed = self._timed(Plan(width, backend, count, "trial"), inputs[part],
                                                       targets[part], self.layout.unflatten(block[:, first:first + count]))
            except (RuntimeError, NotImplementedError) as failed:
                if backend == "double-backward":
                    raise
                error, failures[backend, count] = failed, f"{type(failed).__name__}: {failed}"
                continue
            if samples:
                seconds[backend, count] = min(seconds.get((backend, count), math.inf), elapsed / (count * samples))
            if where is not None:
                product[:, first:first + count] += pushed
                done[where] += count
            spent.append((elapsed, count * samples if where is not None else 0))
        if failures and not seconds:  # a pinned forward mode that the model does not support
            raise error
        if failures:
            self.fallback_reason = next(iter(failures.values()))
        default = candidates[0]
        best = min(seconds, key=seconds.get, default=default)  # none timed: the slice's targets all ignored
        if default in seconds and seconds[best] >= SWITCH_MARGIN * seconds[default]:
            best = default
        forward_worked = any(backend != "double-backward" for backend, _ in seconds)
        timing = time.perf_counter() - began
        excess = timing - sum(seconds.get(best, 0.0) * cells for _, cells in spent)
        plan = self.plans[width] = self.plan = Plan(
            width, *best, "timing" if forward_worked or not failures else "fallback",
            {_label(*key): value for key, value in seconds.items()}, excess)
        if not keep:
            return product
        if not any(done):
            return self._product(plan, inputs, targets, block)
        used = max(index for index in range(slices) if done[index]) + 1
        for index in range(used):  # the vectors of each used slice that no candidate computed
            part = slice(index * trial, (index + 1) * trial)
            if done[index] < width:
                product[:, done[index]:] += self._product(plan, inputs[part], targets[part], block[:, done[index]:])
        if used * trial < len(inputs):
            product += self._budgeted_product(plan, inputs[used * trial:], targets[used * trial:], block)
        return product

    def _budgeted_product(self, plan: Plan, inputs: torch.Tensor, targets: torch.Tensor,
                          block: torch.Tensor) -> torch.Tensor:
        """``W C @ block`` over the rest of the first batch, timing the pass budgets on it; the plan kept gets the best.

        With ``sample_chunk="auto"`` on the CPU, one pass of each budget
        (the usual one, :meth:`_pass_budget`, and half of it, in that order, each on
        the next samples; one whose pass does not fit the samples left is
        not timed) makes its share of the products, and the rest follows the
        fastest per vector and sample: the usual budget unless another
        takes under :data:`BUDGET_MARGIN` of its time.
        """
        trials: Dict[int, int] = {}  # the budgets to time, and their samples per pass
        if self._splits and self.sample_chunk == "auto" and len(inputs) > 1:
            vectors = 1 if plan.backend == "double-backward" else plan.vectors_per_pass
            usual = self._pass_budget(vectors)
            for budget in (usual, usual // 2):
                size = self._samples_per_pass(inputs, vectors, budget)
                if sum(trials.values()) + size <= len(inputs) and size not in trials.values():
                    trials[budget] = size  # room left, and other passes than a budget already timed
        if len(trials) < 2:
            return self._product(plan, inputs, targets, block)
        product = torch.zeros(self.dim, block.shape[1], dtype=torch.float64, device=self.device)
        seconds: Dict[int, float] = {}
        spent: List[Tuple[float, int]] = []
        start = 0
        for budget, size in trials.items():
            candidate = self.plans[plan.width] = replace(plan, pass_bytes=budget)
            part, column, elapsed = slice(start, start + size), 0, 0.0
            for piece in torch.split(block, plan.vectors_per_pass, dim=1):
                pushed, samples, seconds_taken = self._timed(candidate, inputs[part], targets[part],
                                                             self.layout.unflatten(piece))
                product[:, column:column + piece.shape[1]] += pushed
                column, elapsed = column + piece.shape[1], elapsed + seconds_taken
            start += size
            if self.plans[plan.width] is not candidate:  # forward mode failed here: the plan fell back
                plan, seconds, spent = replace(self.plans[plan.width], pass_bytes=None), {}, []
                break
            if samples:
                seconds[budget] = elapsed / (block.shape[1] * samples)
                spent.append((elapsed, block.shape[1] * samples))
        best = min(seconds, key=seconds.get, default=None)
        if best is not None and seconds[best] >= BUDGET_MARGIN * seconds.get(usual, math.inf):
            best = usual
        excess = sum(elapsed - seconds[best] * cells for elapsed, cells in spent) if best is not None else 0.0
        plan = self.plans[plan.width] = self.plan = replace(plan, pass_bytes=best, pass_seconds=seconds,
                                                            cost=plan.cost + excess)
        if start < len(inputs):
            product += self._product(plan, inputs[start:], targets[start:], block)
        return product

    def batch_gradients(self) -> Iterator[Tuple[int, float, float, torch.Tensor]]:
        """Per batch of this rank: ``(n_b, W_b, loss_b, gradient_b)`` of the batch's mean loss.

        ``n_b`` is the number of samples, ``W_b`` the batch's weight (as in
        :meth:`batch_products`, whose batches these are); ``gradient_b`` is the
        flat float64 gradient (shape ``(dim,)``) over the selected parameters.
        A summed loss and its gradient are divided by ``W_b``.
        """
        per_weight = reduction_of(self.loss_fn) == "sum"
        with self.evaluation_mode():
            for weight, inputs, targets in self._weighted_batches():
                primals, constants = self.functional_state()
                leaves = _leaves(primals)
                with torch.enable_grad(), self._diagnosing_data(inputs, targets):
                    loss = self._loss(self.outputs_function(constants, inputs)(*leaves), targets)
                    gradient = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
                scale = 1.0 / weight if per_weight else 1.0
                flat = self.layout.flatten(gradient).to(torch.float64) * scale
                yield len(inputs), weight, loss.item() * scale, flat

    def gradient(self) -> torch.Tensor:
        """The loss gradient over all the data (and ranks) at the weights of now, float64, shape ``(dim,)``.

        Of the mean loss for ``reduction="mean"``, of the sum for ``"sum"``:
        the loss whose curvature the products are.
        """
        total = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        weight = torch.zeros((), dtype=torch.float64, device=self.device)
        for _, batch_weight, _, gradient in self.batch_gradients():
            total += batch_weight * gradient
            weight += batch_weight
        all_reduce_sum(total)
        self.check_total_weight(all_reduce_sum(weight))
        return self.of_all_data(total, weight)

    def check_total_weight(self, total: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``total``, the sum of ``W_b`` over every batch and rank, is 0."""
        if total.item() == 0:
            raise ValueError(
                f"loss_fn counts no target of data: every target is its ignore_index "
                f"({getattr(self.loss_fn, 'ignore_index', None)!r}) or of a class with weight 0"
            )

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype}, device={self.device}, "
                f"bn_mode={self.bn_mode!r}, backend={self.backend!r})")

    # ---- what subclasses provide ------------------------------------------------------------------

    def _forward_mode(self, function: Callable, primals: Tangents, inputs, targets, tangents: Tangents) -> Tangents:
        raise NotImplementedError

    def _double_backward(self, function: Callable, primals: Tangents, inputs, targets, tangents: Tangents) -> Tangents:
        raise NotImplementedError

    def keep_pass(self, function: Callable, primals: Tangents, targets: torch.Tensor) -> KeptPass:
        """The differentiated pass of ``function`` (the model's outputs in the parameters) at ``primals``, kept for products."""
        raise NotImplementedError

    def kept_products(self, kept: KeptPass, tangents: Tangents) -> Tangents:
        """The pass's products with the ``k`` stacked ``tangents``, shape ``(k, *parameter.shape)`` each, from ``kept``."""
        raise NotImplementedError

    # ---- shared machinery ---------------------------------------------------------------------

    def _product(self, plan: Plan, inputs: torch.Tensor, targets: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        """``W C @ block`` over these samples with ``plan``, float64 ``(dim, k)``: its vectors ``vectors_per_pass`` at a time."""
        parts = torch.split(block, plan.vectors_per_pass, dim=1)
        products = []
        for part in parts:
            pushed, _ = self._batch_product(inputs, targets, self.layout.unflatten(part), plan)
            plan = self.plans.get(plan.width, plan)  # a fallback may have replaced it
            products.append(pushed)
        return torch.cat(products, dim=1)

    def _batch_product(self, inputs: torch.Tensor, targets: torch.Tensor, tangents: Tangents,
                       plan: Plan) -> Tuple[torch.Tensor, int]:
        """``W C @ tangents`` over these samples with ``plan``, float64 ``(dim, k)``: the sum over its passes of ``W_p C_p @ tangents``.

        Also the number of samples in passes of nonzero weight (those run).
        """
        scale_by_weight = reduction_of(self.loss_fn) == "mean"
        count = tangents[0].shape[0]
        # (k, P), the layout of the products' pieces, each added in place: no float64 temporary of k x P per pass
        total = torch.zeros(count, self.dim, dtype=torch.float64, device=self.device)
        columns = total.split(self.layout.sizes, dim=1)
        # double backward makes one vector's product at a time from the shared graph: its memory does not grow with k
        vectors = 1 if plan.backend == "double-backward" else count
        primals, constants = self.functional_state()  # one copy of the state for all the batch's passes
        samples = 0
        for weight, part_inputs, part_targets in self._passes(inputs, targets, vectors, plan.pass_bytes):
            product, plan = self._with_plan(plan, primals, constants, part_inputs, part_targets, tangents)
            for piece, column in zip(product, columns):
                column.add_(piece.reshape(count, -1), alpha=weight if scale_by_weight else 1.0)
            samples += len(part_inputs)
        return total.T, samples

    def _passes(self, inputs: torch.Tensor, targets: torch.Tensor, vectors: int,
                budget: Optional[int] = None) -> Iterator[Tuple[float, torch.Tensor, torch.Tensor]]:
        """One batch as passes ``(W_p, inputs_p, targets_p)`` of ``sample_chunk`` samples; those of weight 0 left out."""
        size = self._samples_per_pass(inputs, vectors, budget) if self._splits else len(inputs)
        for part_inputs, part_targets in zip(inputs.split(size), targets.split(size)):
            weight = counted_weight(self.loss_fn, part_targets, part_inputs)
            if weight > 0:
                yield weight, part_inputs, part_targets

    def _samples_per_pass(self, inputs: torch.Tensor, vectors: int, budget: Optional[int] = None) -> int:
        """``sample_chunk``, or with ``"auto"`` the most samples whose ``vectors`` tangents fit ``budget`` bytes.

        ``budget`` defaults to :meth:`_pass_budget`.
        """
        if self.sample_chunk != "auto":
            return self.sample_chunk
        if len(inputs) == 1:
            return 1
        if self._sample_bytes is None:
            self._sample_bytes = self._bytes_per_sample(inputs)
        return max(1, (budget or self._pass_budget(vectors)) // max(1, vectors * self._sample_bytes))

    def _pass_budget(self, vectors: int) -> int:
        """The usual bytes of a pass's largest batched activation for ``vectors`` tangents.

        :data:`CPU_PASS_BYTES`, or the ``vectors x P`` float64 products that
        each pass adds into the batch's total where they are more (up to
        :data:`PASS_BYTES_GROWTH` times), so that the passes' arithmetic
        outweighs that fixed cost.
        """
        return max(CPU_PASS_BYTES, min(vectors * self.dim * 8, PASS_BYTES_GROWTH * CPU_PASS_BYTES))

    def _bytes_per_sample(self, inputs: torch.Tensor) -> int:
        """The most bytes that one sample adds to a tensor of the forward pass: forward passes of 1 and 2 samples compared.

        Tensors that do not grow with the batch (weights and their
        transforms) cancel out. ``inputs`` holds at least 2 samples.
        """
        primals, constants = self.functional_state()
        sizes = []
        for count in (1, 2):
            with torch.no_grad(), _TensorSizes() as recorder:
                self.outputs_function(constants, inputs[:count])(*primals)
            sizes.append(recorder.sizes)
        return max((two - one for one, two in zip(*sizes)), default=0)

    def _weighted_batches(self) -> Iterator[Tuple[float, torch.Tensor, torch.Tensor]]:
        """This rank's batches as ``(W_b, inputs, targets)``, leaving out those of weight 0 (their mean is 0/0)."""
        for _, inputs, targets in self.data.batches(self.device, self.dtype):
            weight = counted_weight(self.loss_fn, targets, inputs)
            if weight > 0:
                yield weight, inputs, targets

    @contextlib.contextmanager
    def _diagnosing_data(self, inputs: torch.Tensor, targets: torch.Tensor) -> Iterator[None]:
        """Around the operator's first batch: if it fails, a plain forward pass tells whether the data are to blame.

        Inputs the model cannot take, or targets the loss cannot, become a
        ``ValueError`` naming ``data`` and the batch's shapes
        (:func:`~curvwidgets.curvature.data.naming_data`); any other failure,
        such as a backend that cannot differentiate the model, propagates
        unchanged. Nothing is run when the batch succeeds.
        """
        if self._data_checked:
            yield
            return
        try:
            yield
        except torch.cuda.OutOfMemoryError:
            raise  # not about the data, and a diagnosis would need the memory again
        except (RuntimeError, IndexError):
            primals, constants = self.functional_state()
            try:
                with torch.no_grad(), naming_data(inputs, targets):
                    self._loss(self.outputs_function(constants, inputs)(*primals), targets)
            except ValueError:
                if self._automatic:  # the data, not forward mode, made the timing fail
                    self.fallback_reason = None
                raise
            raise
        self._data_checked = True

    def _check(self, tensor: torch.Tensor, ndim: int) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"vector must be a torch.Tensor; got {type(tensor).__name__} (use op @ array for numpy)")
        if tensor.ndim != ndim or tensor.shape[0] != self.dim:
            expected = f"({self.dim},)" if ndim == 1 else f"({self.dim}, k)"
            raise ValueError(f"vector must have shape {expected}; got {tuple(tensor.shape)}")
        if tensor.dtype != self.dtype:
            raise TypeError(f"vector must have dtype {self.dtype}; got {tensor.dtype}")
        if tensor.device != self.device:
            raise ValueError(f"vector must be on device {self.device}; got {tensor.device}")

    @contextlib.contextmanager
    def evaluation_mode(self) -> Iterator[None]:
        """Set the ``training`` flags for ``bn_mode``; restore every module's flag afterwards."""
        flags = [(module, module.training) for module in self.model.modules()]
        try:
            self.model.eval()
            if self.bn_mode == "train":
                for module in self.model.modules():
                    if isinstance(module, _BatchNorm):
                        module.train()
            yield
        finally:
            for module, flag in flags:
                module.training = flag

    def functional_state(self) -> Tuple[Tangents, Dict[str, torch.Tensor]]:
        """Detached copies of the selected parameters (primals) and of everything else (constants).

        Buffers are cloned so that BatchNorm in train mode updates the clones,
        never the model's running statistics.
        """
        selected = set(self.layout.names)
        named = dict(self.model.named_parameters())
        cast = lambda tensor: tensor.detach().to(device=self.device, dtype=self.dtype)  # noqa: E731
        constants = {name: cast(p) for name, p in named.items() if name not in selected}
        for name, buffer in self.model.named_buffers():
            moved = buffer.detach().to(self.device)
            constants[name] = (moved.to(self.dtype) if moved.is_floating_point() else moved).clone()
        return tuple(cast(named[name]) for name in self.layout.names), constants

    def outputs_function(self, constants: Dict[str, torch.Tensor], inputs: Inputs) -> Callable[..., torch.Tensor]:
        """What the loss takes of the model's output as a function of the selected parameters' values: the
        logits, or the loss itself for a ``ModelLoss`` (:func:`~curvwidgets.curvature.batches.outputs_reader`);
        ``inputs`` a tensor or several (:mod:`~curvwidgets.curvature.batches`)."""
        names = self.layout.names
        args, kwargs = model_arguments(inputs)
        read = outputs_reader(self.loss_fn)

        def outputs_of(*values: torch.Tensor) -> torch.Tensor:
            state = {**constants, **dict(zip(names, values))}
            return read(torch.func.functional_call(self.model, state, args, kwargs))

        return outputs_of

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.loss_fn(outputs, targets)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor (use reduction='mean'); got {shape}")
        return loss

    @property
    def backend(self) -> Optional[str]:
        """The backend of the last product (the pinned one before any); None before the first with ``"auto"``."""
        return self.plan.backend if self.plan is not None else self._pinned_backend

    def _method(self, backend: str) -> Callable:
        return self._double_backward if backend == "double-backward" else self._forward_mode

    def _with_plan(self, plan: Plan, primals, constants, inputs, targets, tangents) -> Tuple[Tangents, Plan]:
        """The pass's products with ``plan``, and the plan used: double backward where a kept forward mode fails here.

        Forward mode may work on the trial slice and fail on a later batch
        (another shape): with ``"auto"`` the kept plan then turns to double
        backward for good, the reason kept in ``fallback_reason``. A
        candidate being timed, or a pinned backend, raises instead.
        """
        try:
            return self._method(plan.backend)(self.outputs_function(constants, inputs), primals, inputs, targets,
                                              tangents), plan
        except (RuntimeError, NotImplementedError) as error:
            if not self._automatic or plan.backend == "double-backward" or self.plans.get(plan.width) is not plan:
                raise
            plan = self.plans[plan.width] = self.plan = Plan(plan.width, "double-backward", plan.vectors_per_pass,
                                                             "fallback", plan.seconds, plan.cost)
            self.fallback_reason = f"{type(error).__name__}: {error}"
            primals, constants = self.functional_state()  # a failed attempt may have touched the buffer clones
            return self._double_backward(self.outputs_function(constants, inputs), primals, inputs, targets,
                                         tangents), plan

    def _timed(self, plan: Plan, inputs, targets, tangents: Tangents) -> Tuple[torch.Tensor, int, float]:
        """:meth:`_batch_product` with ``plan``, and the seconds it took."""
        _synchronise(self.device)
        clock = time.perf_counter()
        product, samples = self._batch_product(inputs, targets, tangents, plan)
        _synchronise(self.device)
        return product, samples, time.perf_counter() - clock


def _vector_chunk_value(value: object) -> int:
    """``vector_chunk`` checked: ``"auto"`` or an int >= 1."""
    if isinstance(value, str):
        raise ValueError(f"vector_chunk must be 'auto' or an int >= 1; got {value!r}")
    return positive_int("vector_chunk", value)


def _sample_chunk_value(value: Union[int, str, None], bn_mode: str) -> Union[int, str, None]:
    """``sample_chunk`` checked: ``"auto"``, None, or an int >= 1 where ``bn_mode`` lets samples be split."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str):
        raise ValueError(f"sample_chunk must be 'auto', None or an int >= 1; got {value!r}")
    value = positive_int("sample_chunk", value)
    if bn_mode == "train":
        raise ValueError("sample_chunk must be 'auto' or None with bn_mode='train': batch statistics "
                         f"couple the samples of a batch; got {value!r}")
    return value


class _TensorSizes(TorchFunctionMode):
    """Records the bytes of every tensor that a torch function returns while active, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: List[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, (tuple, list)) else (result,):
            if isinstance(value, torch.Tensor):
                self.sizes.append(value.numel() * value.element_size())
        return result


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _columns(tangents: Tangents) -> Iterator[Tangents]:
    """The ``k`` tangent vectors of a batched tangent tuple, one at a time."""
    for column in range(tangents[0].shape[0]):
        yield tuple(tangent[column] for tangent in tangents)


def _stack(products: Sequence[Tangents]) -> Tangents:
    return tuple(torch.stack(pieces) for pieces in zip(*products))


def _vectorised(function: Callable[..., Tangents], tangents: Tangents) -> Tangents:
    """``function`` applied to each of the ``k`` stacked tangents: ``vmap`` for ``k > 1``, a plain call for one."""
    if tangents[0].shape[0] == 1:
        result = function(*(tangent[0] for tangent in tangents))
        return tuple(piece[None] for piece in result) if isinstance(result, tuple) else result[None]
    return torch.func.vmap(function)(*tangents)


def _pushed_forward(function: Callable[..., torch.Tensor], primals: Tangents, tangents: Tangents) -> Tuple[torch.Tensor, torch.Tensor]:
    """``function(*primals)`` and its ``k`` Jacobian-vector products, shape ``(k, *outputs.shape)``, in one pass."""
    if tangents[0].shape[0] == 1:
        outputs, pushed = torch.func.jvp(function, primals, tuple(tangent[0] for tangent in tangents))
        return outputs, pushed[None]
    return torch.func.vmap(lambda *column: torch.func.jvp(function, primals, column), out_dims=(None, 0))(*tangents)


def _leaves(primals: Tangents) -> Tangents:
    return tuple(value.detach().requires_grad_(True) for value in primals)


class Hessian(CurvatureOperator):
    """The Hessian of the mean loss with respect to the selected parameters.

    Products use forward-over-reverse differentiation (``torch.func.jvp`` of
    ``torch.func.grad``) or double backward (Pearlmutter's trick with two
    reverse passes): with ``backend="auto"`` the faster of the two on one
    vector and the first pass, and double backward wherever forward mode
    fails; ``backend`` says which was used. One product costs about three
    gradients' worth of arithmetic on convolutional networks; a block of ``k``
    shares the primal forward and backward passes, about ``2 + 1/k``
    gradients per vector (``benchmarks/README.md``). See
    :class:`CurvatureOperator` for the arguments.

    Examples
    --------
    >>> import torch, curvwidgets as cw
    >>> model = torch.nn.Linear(3, 1).double()
    >>> data = [(torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64))]
    >>> H = cw.Hessian(model, torch.nn.MSELoss(), data)
    >>> H.dim, (H @ torch.zeros(4, dtype=torch.float64)).abs().max().item()
    (4, 0.0)
    """

    preferred_backend = "forward-over-reverse"

    def _forward_mode(self, function, primals, inputs, targets, tangents):
        def loss_of(*values):
            return self._loss(function(*values), targets)

        gradient = torch.func.grad(loss_of, argnums=tuple(range(len(primals))))
        return _vectorised(lambda *column: torch.func.jvp(gradient, primals, column)[1], tangents)

    def _double_backward(self, function, primals, inputs, targets, tangents):
        return self.kept_products(self.keep_pass(function, primals, targets), tangents)

    def keep_pass(self, function, primals, targets) -> KeptPass:
        """The pass's loss gradient with its graph (``create_graph``): each product is then one more reverse pass."""
        leaves = _leaves(primals)
        with torch.enable_grad():
            loss = self._loss(function(*leaves), targets)
            gradient = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True, materialize_grads=True)
        return KeptPass(leaves, targets, loss, gradient=gradient)

    def kept_products(self, kept: KeptPass, tangents: Tangents) -> Tangents:
        with torch.enable_grad():
            products = [torch.autograd.grad(kept.gradient, kept.leaves, grad_outputs=column, retain_graph=True,
                                            allow_unused=True, materialize_grads=True)
                        for column in _columns(tangents)]
        return _stack([tuple(piece.detach() for piece in product) for product in products])


class GGN(CurvatureOperator):
    """The generalised Gauss-Newton matrix ``J^T H_L J`` of the mean loss.

    ``J`` is the Jacobian of the network outputs in the selected parameters
    and ``H_L`` the Hessian of the loss in the outputs (closed form for
    cross-entropy and MSE, autograd otherwise; see
    :mod:`~curvwidgets.curvature.output_hessian`). A product is a
    Jacobian-vector product, ``H_L``, then a vector-Jacobian product; the
    result is symmetric positive semi-definite for convex losses. The
    Jacobian-vector product is forward mode (``backend="forward-mode"``) or two
    reverse passes (``"double-backward"``); ``"auto"`` picks as for
    :class:`Hessian`. In forward mode the ``k`` tangents of a block ride on
    one primal forward pass, which also records the pullback: about ``4/3 +
    1/(3k)`` gradients' worth of arithmetic per vector. See
    :class:`CurvatureOperator` for the arguments.
    """

    preferred_backend = "forward-mode"

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 data: Iterable, *args, **kwargs):
        if isinstance(loss_fn, ModelLoss):
            raise ValueError(f"loss_fn: the GGN needs the loss as a function of the model's outputs, "
                             f"loss_fn(outputs, targets); a model computing its own loss ({loss_fn!r}) does not "
                             "expose it. Give that function and (inputs, targets) batches, or use the Hessian")
        super().__init__(model, loss_fn, data, *args, **kwargs)

    def _output_products(self, outputs, targets, jacobian_products) -> Tangents:
        return [output_hessian_product(self.loss_fn, outputs, targets, product) for product in jacobian_products]

    def _forward_mode(self, function, primals, inputs, targets, tangents):
        # one forward pass carries the k tangents and records the graph of the pullback
        outputs, pullback, pushed = torch.func.vjp(
            lambda *values: _pushed_forward(function, values, tangents), *primals, has_aux=True)
        self._loss(outputs, targets)
        curved = torch.stack(self._output_products(outputs.detach(), targets, pushed))
        return _vectorised(pullback, (curved,))

    def _double_backward(self, function, primals, inputs, targets, tangents):
        return self.kept_products(self.keep_pass(function, primals, targets), tangents)

    def keep_pass(self, function, primals, targets) -> KeptPass:
        """The pass's outputs with their graph, and the graph of ``J^T u`` in a dummy ``u`` (for ``J v``, reverse over reverse)."""
        leaves = _leaves(primals)
        with torch.enable_grad():
            outputs = function(*leaves)
            loss = self._loss(outputs, targets)
            dummy = torch.zeros_like(outputs, requires_grad=True)
            transposed = torch.autograd.grad(outputs, leaves, grad_outputs=dummy, create_graph=True,
                                             allow_unused=True, materialize_grads=True)
        return KeptPass(leaves, targets, loss, outputs=outputs, dummy=dummy, transposed=transposed)

    def kept_products(self, kept: KeptPass, tangents: Tangents) -> Tangents:
        with torch.enable_grad():
            pushed = [torch.autograd.grad(kept.transposed, kept.dummy, grad_outputs=column, retain_graph=True)[0]
                      for column in _columns(tangents)]
            products = [
                torch.autograd.grad(kept.outputs, kept.leaves, grad_outputs=product, retain_graph=True,
                                    allow_unused=True, materialize_grads=True)
                for product in self._output_products(kept.outputs.detach(), kept.targets, pushed)
            ]
        return _stack([tuple(piece.detach() for piece in product) for product in products])
