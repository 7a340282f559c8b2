"""Curvature measured while a network trains: the sharpness, the trace and the gradient in the top eigenvectors.

``cw.train(..., monitor=cw.CurvatureMonitor(every=1))`` measures, after every
``every``-th epoch, on a fixed subset of the training data (the same samples
each time, in evaluation mode):

- the ``top`` largest eigenvalues of the Hessian (or GGN) of the loss, to
  ``tol`` relative (:func:`~curvwidgets.linalg.eigenpairs`), warm-started
  from the previous measurement's top eigenvector, so that a measurement
  costs a few products once the eigenvector moves slowly;
- the fraction of the full-subset gradient in the span of those
  eigenvectors, ``||V^T g||^2 / ||g||^2`` (Gur-Ari et al., 2018);
- optionally the trace (Hutch++, :func:`~curvwidgets.linalg.estimate_trace`)
  with its standard error.

Each measurement differentiates the subset once at the current weights and
keeps the graphs for all its products
(:class:`~curvwidgets.curvature.retained.RetainedProducts`; passes split by
memory, never by timing, so a resumed run measures bit for bit); the
gradient comes with them. The measurement touches no optimiser state, no BatchNorm buffer and no
global random stream (it runs inside :func:`torch.random.fork_rng`), so the
weights follow the same trajectory with the monitor on or off, bit for bit.
Cohen et al. (2021) find that full-batch gradient descent raises the sharpness
until about ``2 / eta`` and hovers there ("the edge of stability"): the rows
record the learning rate beside it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Optional

import torch
from torch import nn

from .._validate import choice, positive, positive_int, seed_value
from ..curvature.batches import concatenate, parts_of
from ..curvature.data import DataSource
from ..curvature.operators import CurvatureOperator
from ..curvature.retained import RetainedProducts
from ..curvature.spectrum import MATRICES, batches_of
from ..losses import ModelLoss
from ..linalg.eigen import eigenpairs
from ..linalg.trace import estimate_trace
from ..results import MONITOR_COLUMNS

__all__ = ["CurvatureMonitor", "CurvatureMeasurer", "empty_row"]

@dataclass(frozen=True)
class CurvatureMonitor:
    """What :func:`~curvwidgets.train` measures of the curvature during training, and how often.

    Parameters
    ----------
    every : int, default: 1
        Measure after every ``every``-th epoch (and after the last). With
        full-batch gradient descent (one batch per epoch) an epoch is a step.
    matrix : {"hessian", "ggn"}, default: "hessian"
    num_samples : int or None, default: 256
        The measurement subset: this many training samples drawn once with
        ``seed`` (None: all of them), from the data set's training split in
        a fixed order without augmentation, or from ``data``.
    top : int, default: 1
        Eigenvalues measured; the first is the sharpness (``sharpness_2`` ..
        are kept in the rows too).
    tol : float, default: 1e-4
        Relative residual to which each eigenvalue is computed.
    max_products : int, default: 200
        Budget of one eigenvalue measurement.
    trace_products : int, default: 0
        Products of a Hutch++ trace estimate (0: none).
    seed : int, default: 0
        Seed of the subset, the first start vector and the trace's probes.
    data : re-iterable of batches, optional
        Where to measure instead of the training split (needed when
        ``cw.train`` is given batches rather than a data set).
    """

    every: int = 1
    matrix: str = "hessian"
    num_samples: Optional[int] = 256
    top: int = 1
    tol: float = 1e-4
    max_products: int = 200
    trace_products: int = 0
    seed: int = 0
    data: Optional[Iterable] = None

    def __post_init__(self) -> None:
        positive_int("every", self.every)
        choice("matrix", self.matrix, tuple(MATRICES))
        if self.num_samples is not None:
            positive_int("num_samples", self.num_samples)
        positive_int("top", self.top)
        positive("tol", self.tol)
        positive_int("max_products", self.max_products)
        if self.trace_products != 0 and positive_int("trace_products", self.trace_products) < 3:
            raise ValueError(f"trace_products must be 0 (no trace) or at least 3 (Hutch++); got {self.trace_products}")
        seed_value("seed", self.seed)
        if self.data is not None and (isinstance(self.data, torch.Tensor) or not hasattr(self.data, "__iter__")):
            raise TypeError(f"data must be None or a re-iterable of batches; got {type(self.data).__name__}")

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether to measure after ``epoch`` (1-based) of ``epochs``."""
        return epoch % self.every == 0 or epoch == epochs

    def to_config(self) -> Dict[str, Any]:
        """The settings as plain values, for the history's config (``data`` as whether it was given)."""
        settings = asdict(self)
        settings["data"] = "given" if self.data is not None else "training split"
        return settings


class CurvatureMeasurer:
    """Takes the measurements of one run; holds the warm start (the last top eigenvector) between them."""

    def __init__(self, monitor: CurvatureMonitor, loss_fn: Any, data: Iterable):
        self.monitor, self.loss_fn, self.data = monitor, loss_fn, data
        self.start: Optional[torch.Tensor] = None  # the previous top eigenvector, shape (P,)
        self.operator: Optional[CurvatureOperator] = None  # built at the first measurement, on the subset

    def _operator(self, model: nn.Module) -> CurvatureOperator:
        """The operator on the measurement subset, gathered once into one batch (it reads the current weights)."""
        if self.operator is None:
            source = DataSource(batches_of(self.data), self.monitor.num_samples, self.monitor.seed,
                                inputs_only=isinstance(self.loss_fn, ModelLoss))
            device = next(model.parameters()).device
            pieces = [(inputs, targets) for _, inputs, targets in source.batches(device)]
            inputs, targets = concatenate([inputs for inputs, _ in pieces]), torch.cat([targets for _, targets in pieces])
            batch = parts_of(inputs) if isinstance(self.loss_fn, ModelLoss) else (inputs, targets)
            # passes split by memory alone, never by timing: a resumed run must measure bit for bit
            self.operator = MATRICES[self.monitor.matrix](model, self.loss_fn, [batch], bn_mode="eval",
                                                          backend="double-backward", vector_chunk=1,
                                                          sample_chunk="auto")
        return self.operator

    def measure(self, model: nn.Module) -> Dict[str, float]:
        """The monitor's columns for ``model`` now; the global random streams are left as found."""
        monitor = self.monitor
        began = time.perf_counter()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            operator = RetainedProducts(self._operator(model))  # every product reuses the passes' graphs
            pairs = eigenpairs(operator, min(monitor.top, operator.dim), "largest", monitor.tol,
                               monitor.max_products, monitor.seed, start=self.start)
            self.start = pairs.vectors[:, -1].detach().clone()
            gradient = operator.gradient()
            basis = pairs.vectors.to(torch.float64)
            overlap = float((basis.T @ gradient).square().sum() / gradient.square().sum())
            products = pairs.products
            row = {"sharpness": float(pairs.values[-1]), "gradient_overlap": overlap,
                   "curvature_trace": float("nan"), "curvature_trace_se": float("nan")}
            row.update({f"sharpness_{rank}": float(value)
                        for rank, value in enumerate(pairs.values[::-1][1:], start=2)})
            if monitor.trace_products:
                trace = estimate_trace(operator, "hutch++", monitor.trace_products, seed=monitor.seed,
                                       check_symmetric=False)
                row.update(curvature_trace=trace.value, curvature_trace_se=trace.standard_error)
                products += trace.products
        row.update(curvature_products=float(products), curvature_seconds=time.perf_counter() - began)
        return row

    def state(self) -> Dict[str, Any]:
        """What a checkpoint keeps for the next measurement to be the same after a resume."""
        return {"start": None if self.start is None else self.start.detach().cpu()}

    def restore(self, state: Optional[Dict[str, Any]], device: torch.device) -> None:
        if state is not None and state.get("start") is not None:
            self.start = state["start"].to(device)


def empty_row(monitor: CurvatureMonitor) -> Dict[str, float]:
    """The monitor's columns of an epoch it does not measure: NaN."""
    row = {name: float("nan") for name in MONITOR_COLUMNS}
    row.update({f"sharpness_{rank}": float("nan") for rank in range(2, monitor.top + 1)})
    return row


