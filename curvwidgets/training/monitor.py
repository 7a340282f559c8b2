"""Curvature measured while a network trains: the sharpness, the trace and the gradient in the top eigenvectors.

``cw.train(..., monitor=cw.CurvatureMonitor(every=1))`` measures, after every
``every``-th epoch (``unit="step"``: after every ``every``-th optimiser step),
on a fixed subset of the training data (the same samples each time, in
evaluation mode):

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
until about ``2 / eta`` and hovers there ("the edge of stability"), and with
heavy-ball momentum ``beta`` until ``(2 + 2 beta) / eta``: every row and
measurement records the learning rate and the optimiser's
``stability_threshold`` (:mod:`~curvwidgets.training.stability`) beside it.

Where the measurements go:

- ``history.measurements``: one dict per measurement, in order, with
  ``step`` (optimiser steps of the run done, counted from 1 across epochs),
  ``epoch`` (the fractional epoch: ``epoch - 1 + steps done in it / its
  steps``, a whole number for ``unit="epoch"``), ``lr`` (the rate of the
  step just taken) and the monitor's columns (:data:`~curvwidgets.results.MONITOR_COLUMNS`).
  ``history.measured("sharpness")`` is one column of it. Saved with the
  history and kept in checkpoints: a resumed run's table is the
  uninterrupted run's, bit for bit.
- the epoch rows: each carries the last measurement taken during it (NaN
  columns in an epoch without one), so ``history["sharpness"]`` reads per epoch.
- the progress events: after each measurement one of stage ``"curvature"``,
  ``step`` the measurements so far, ``total`` those planned for the run (0
  when the training loader has no length and ``unit="step"``), ``partial``
  the history (its newest measurement last); a cancel is honoured there.

Measuring every few steps (``unit="step"``) shows what happens inside an
epoch, e.g. how the sharpness moves in the first steps of mini-batch SGD
against its threshold (``3.8 / eta`` for the default SGD's momentum 0.9)::

    history = cw.train("MLP", "digits", epochs=2,
                       monitor=cw.CurvatureMonitor(every=5, unit="step", num_samples=128))
    steps, sharpness = history.measured("epoch"), history.measured("sharpness")

A step measurement runs between two optimiser steps: in evaluation mode (the
modules' training flags are put back afterwards), outside autocast, with the
global random streams and the data loader's iteration left as they were. Its
seconds are not counted in the epoch's ``seconds``. Under several processes
(``torchrun``) every rank measures at the same step, as after an epoch (the
products sum over ranks); mid-epoch a BatchNorm's running statistics are the
rank's own (they are averaged over ranks only at the end of an epoch).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Iterator, Optional

import torch
from torch import nn

from .._validate import choice, positive, positive_int, seed_value
from ..progress import CancelToken, ProgressCallback, report
from ..curvature.batches import concatenate, parts_of
from ..curvature.data import DataSource
from ..curvature.operators import CurvatureOperator
from ..curvature.retained import RetainedProducts
from ..curvature.spectrum import MATRICES, batches_of
from ..losses import ModelLoss
from ..linalg.eigen import eigenpairs
from ..linalg.trace import estimate_trace
from ..results import MONITOR_COLUMNS, TrainingHistory
from .stability import stability_threshold

__all__ = ["CurvatureMonitor", "CurvatureMeasurer", "MonitorRun", "empty_row", "UNITS"]

#: What a monitor's ``every`` counts.
UNITS = ("epoch", "step")

@dataclass(frozen=True)
class CurvatureMonitor:
    """What :func:`~curvwidgets.train` measures of the curvature during training, and how often.

    Parameters
    ----------
    every : int, default: 1
        Measure after every ``every``-th epoch or step (see ``unit``), and
        after the last. With full-batch gradient descent (one batch per
        epoch) an epoch is a step.
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
    unit : {"epoch", "step"}, default: "epoch"
        What ``every`` counts: finished epochs, or optimiser steps (counted
        from 1 across the epochs of the run, a resumed run's included; the
        measurement then runs within the epoch, right after the step).
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
    unit: str = "epoch"

    def __post_init__(self) -> None:
        positive_int("every", self.every)
        choice("unit", self.unit, UNITS)
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
        """Whether to measure after ``epoch`` (1-based) of ``epochs`` (``unit="epoch"``; never for ``"step"``)."""
        return self.unit == "epoch" and (epoch % self.every == 0 or epoch == epochs)

    def due_step(self, step: int, last: bool = False) -> bool:
        """Whether to measure after optimiser step ``step`` (1-based, across epochs); ``last``: the run's last step."""
        return self.unit == "step" and (step % self.every == 0 or last)

    def planned(self, epochs: int, steps_per_epoch: Optional[int]) -> int:
        """Measurements of a run of ``epochs`` epochs of ``steps_per_epoch`` steps (0 where that is unknown: None).

        Examples
        --------
        >>> CurvatureMonitor(every=2).planned(5, None), CurvatureMonitor(every=4, unit="step").planned(3, 5)
        (3, 4)
        """
        if self.unit == "epoch":
            return epochs // self.every + (epochs % self.every != 0)
        if not steps_per_epoch:
            return 0
        steps = epochs * steps_per_epoch
        return steps // self.every + (steps % self.every != 0)

    def to_config(self) -> Dict[str, Any]:
        """The settings as plain values, for the history's config (``data`` as whether it was given)."""
        settings = asdict(self)
        settings["data"] = "given" if self.data is not None else "training split"
        return settings


#: Subsets of at most this many samples are measured with each pass's graph kept for all products
#: (:class:`~curvwidgets.curvature.retained.RetainedProducts`, about 1.8x faster); larger ones (``num_samples=None``
#: on a whole training split) run the passes again for each product, holding one pass's graph at a time.
RETAINED_SAMPLES = 2048


class CurvatureMeasurer:
    """Takes the measurements of one run; holds the warm start (the last top eigenvector) between them."""

    def __init__(self, monitor: CurvatureMonitor, loss_fn: Any, data: Iterable):
        self.monitor, self.loss_fn, self.data = monitor, loss_fn, data
        self.start: Optional[torch.Tensor] = None  # the previous top eigenvector, shape (P,)
        self.operator: Optional[CurvatureOperator] = None  # built before the first measurement, on the subset
        self.samples = 0  # in the subset (this rank's)

    def prepare(self, model: nn.Module) -> CurvatureOperator:
        """The operator on the measurement subset, gathered once into one batch (it reads the current weights).

        :func:`~curvwidgets.train` calls it before the first epoch, so that
        reading the measurement data never interrupts an epoch's iteration of
        the same loader.
        """
        if self.operator is None:
            source = DataSource(batches_of(self.data), self.monitor.num_samples, self.monitor.seed,
                                inputs_only=isinstance(self.loss_fn, ModelLoss))
            device = next(model.parameters()).device
            pieces = [(inputs, targets) for _, inputs, targets in source.batches(device)]
            inputs, targets = concatenate([inputs for inputs, _ in pieces]), torch.cat([targets for _, targets in pieces])
            self.samples = len(targets)
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
            operator = self.prepare(model)
            if self.samples <= RETAINED_SAMPLES:
                operator = RetainedProducts(operator)  # every product reuses the passes' graphs
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




class MonitorRun:
    """The measurements of one training run: when they are due, the table they fill, their progress events.

    :func:`~curvwidgets.train` calls :meth:`start_epoch` before each epoch,
    :meth:`after_step` after each optimiser step (``unit="step"``) and
    :meth:`end_epoch` once the epoch is evaluated, and :meth:`send` once its
    row is recorded (the event of an end-of-epoch measurement waits for the
    row, so that a cancel there keeps the epoch).

    Parameters
    ----------
    measurer : CurvatureMeasurer
    history : TrainingHistory
        The run's history: each measurement is appended to ``history.measurements``.
    epochs : int
        Epochs of the run.
    steps_per_epoch : int or None
        The training loader's length (None: it has none; the fractional epoch
        of a step measurement is then filled in when its epoch ends).
    progress, cancel
        The run's progress protocol; ``cancel`` None under several processes
        (a cancel is agreed over the ranks at the end of an epoch there).
    """

    def __init__(self, measurer: CurvatureMeasurer, history: TrainingHistory, epochs: int,
                 steps_per_epoch: Optional[int], progress: Optional[ProgressCallback], cancel: Optional[CancelToken]):
        self.measurer, self.monitor, self.history = measurer, measurer.monitor, history
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.progress, self.cancel = progress, cancel
        self.planned = self.monitor.planned(epochs, steps_per_epoch)
        self.epoch = 0  # the epoch in progress, 1-based
        self.first_step = 0  # the run's steps done before it
        self.latest: Optional[Dict[str, float]] = None  # the epoch's last measurement
        self.seconds = 0.0  # wall-clock seconds of the epoch's step measurements
        self.unsent = False  # a measurement whose event waits for its epoch's row

    def prepare(self, model: nn.Module) -> None:
        """Gather the measurement subset now, before the first epoch (:meth:`CurvatureMeasurer.prepare`)."""
        with _kept_as_found(model, self.measurer.data):
            self.measurer.prepare(model)

    def start_epoch(self, epoch: int, steps_done: int) -> None:
        """Epoch ``epoch`` (1-based) begins, ``steps_done`` optimiser steps into the run."""
        self.epoch, self.first_step, self.latest, self.seconds = epoch, steps_done, None, 0.0

    def after_step(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer) -> None:
        """After the run's ``step``-th optimiser step by ``optimizer``: measure when due, and send its event.

        The modules' training flags are put back afterwards; the time taken
        is kept in :attr:`seconds` (the loop leaves it out of the epoch's).
        Weights that are no longer finite are not measured (here or at the
        epoch's end): the next step's loss reports the divergence
        (:class:`~curvwidgets.training.loop.TrainingDiverged`), as without a
        monitor; after the run's last step nothing does, as without one.

        Raises
        ------
        Cancelled
            When ``cancel`` is set at the event.
        """
        if not self.monitor.due_step(step) or not _finite(model):
            return
        began = time.perf_counter()
        self._measure(model, step, optimizer)
        self.seconds += time.perf_counter() - began
        self.send()

    def end_epoch(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer) -> Dict[str, float]:
        """The monitor's columns of the epoch's row: the epoch's last measurement, taken now when due (NaN: none).

        Due now: ``unit="epoch"`` as :meth:`CurvatureMonitor.due` says; ``unit="step"``
        after the run's last step unless it was measured already.
        """
        if self.steps_per_epoch is None:  # the epoch's steps are known now
            done = step - self.first_step
            for row in reversed(self.history.measurements):
                if row["step"] <= self.first_step:
                    break
                row["epoch"] = self.epoch - 1 + (row["step"] - self.first_step) / done
        last = self.epoch == self.epochs and (self.latest is None or self.latest["step"] != step)
        due = self.monitor.due(self.epoch, self.epochs) or (self.monitor.unit == "step" and last)
        if due and _finite(model):  # weights gone non-finite at the epoch's last step: no measurement, as mid-epoch
            self._measure(model, step, optimizer, fraction=float(self.epoch))
        if self.latest is None:
            return empty_row(self.monitor)
        return {name: value for name, value in self.latest.items() if name not in ("step", "epoch", "lr")}

    def send(self) -> None:
        """The ``"curvature"`` event of the newest measurement, if not sent yet; honours a cancel."""
        if self.unsent:
            self.unsent = False
            report(self.progress, self.cancel, "curvature", len(self.history.measurements), self.planned,
                   partial=lambda: self.history)

    def _measure(self, model: nn.Module, step: int, optimizer: torch.optim.Optimizer,
                 fraction: Optional[float] = None) -> None:
        """One measurement into the table; the modules' training flags and the data's generators kept as found."""
        if fraction is None:
            fraction = (self.epoch - 1 + (step - self.first_step) / self.steps_per_epoch
                        if self.steps_per_epoch else float("nan"))
        with _kept_as_found(model, self.measurer.data):
            row = self.measurer.measure(model)
        self.latest = {"step": step, "epoch": float(fraction), "lr": float(optimizer.param_groups[0]["lr"]),
                       "stability_threshold": stability_threshold(optimizer), **row}
        self.history.measurements.append(self.latest)
        self.unsent = True


@contextlib.contextmanager
def _kept_as_found(model: nn.Module, data: Any) -> Iterator[None]:
    """The modules' training flags and the generators of the measurement data put back as they were afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    generators = [(generator, generator.get_state()) for generator in _generators_of(data)]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for generator, state in generators:
            generator.set_state(state)


def _finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one synchronisation)."""
    flags = [torch.isfinite(parameter.detach()).all() for parameter in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _generators_of(data: Any) -> list:
    """The ``torch.Generator``s a loader (e.g. a ``DataLoader`` with ``generator=``) draws its order from.

    Reading the measurement data (at the first measurement) must not advance
    them: the same loader may hand out the training batches.
    """
    found = []
    for holder in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None),
                   getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        generator = getattr(holder, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not seen for seen in found):
            found.append(generator)
    return found
