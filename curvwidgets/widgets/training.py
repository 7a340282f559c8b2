"""Training, live: loss and accuracy per epoch, the batch losses of the epoch, the curvature, Start/Stop/resume,
checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import torch
import traitlets
from torch import nn

from .._validate import choice, device_value, integer, path_text, real
from ..progress import ProgressEvent
from ..results import TrainingHistory
from ..training import data as datasets
from ..training import models, optim, schedules
from ..training.loop import BatchLosses
from ..training.monitor import CurvatureMonitor
from ._sizes import sizes_for
from ._training_task import (MonitorSettings, TrainingSettings, TrainingSnapshot, default_lr, has_checkpoint,
                             holds_tokens, run_training)
from ._view import (controls_row, field_layout, finite_points, hold_sync, legend_html, linear_scale, log_scale,
                    log_ticks, nice_ticks, padded_log_range, padded_range, set_range, wide_html)
from .runner import TaskRunner

__all__ = ["TrainingWidget", "accuracy_title", "batch_points", "threshold_steps", "curvature_legend_html"]

TRAIN_COLOR, TEST_COLOR = "#1f77b4", "#ff7f0e"
SHARPNESS_COLOR, THRESHOLD_COLOR, OVERLAP_COLOR = "#2ca02c", "#d62728", "#9467bd"
#: The gradient overlap's axis: the fraction lies in [0, 1].
OVERLAP_RANGE = padded_range(np.array([0.0, 1.0]))
MATRIX_NAMES = {"hessian": "Hessian", "ggn": "GGN"}

Points = Tuple[np.ndarray, np.ndarray]


def batch_points(batch: Optional[BatchLosses]) -> Tuple[np.ndarray, np.ndarray]:
    """Where the batch losses of an epoch are drawn: at the fraction of the epochs done after each batch.

    Parameters
    ----------
    batch : BatchLosses or None

    Returns
    -------
    epochs : ndarray, shape (n,)
        ``epoch - 1 + i / batches`` for batch ``i = 1 .. n`` (``batches``:
        those of the whole epoch, or ``n`` when the loader has no length).
    losses : ndarray, shape (n,)
        ``batch.losses``. Both are empty for None.
    """
    if batch is None:
        return np.zeros(0), np.zeros(0)
    done = np.arange(1, len(batch.losses) + 1)
    return batch.epoch - 1 + done / (batch.batches or done.size), np.asarray(batch.losses, dtype=float)


#: The choices of the monitor's sliders (a monitor given with another value adds it): measure after every k-th epoch or
#: step; on a subset of this many training samples (or all of them, value 0)
MEASUREMENT_INTERVALS = (1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500, 1000)
SUBSET_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def _slider_options(choices: Tuple[int, ...], given: int, last: Optional[Tuple[str, int]] = None) -> List[Tuple[str, int]]:
    """``(label, value)`` pairs of a selection slider: ``choices`` and ``given`` (0 is ``last``'s), ascending."""
    values = sorted(set(choices) | ({given} if given else set()))
    return [(str(value), value) for value in values] + ([last] if last is not None else [])


def threshold_steps(epochs: np.ndarray, thresholds: np.ndarray, centred: bool = True) -> Points:
    """The stability line of the sharpness figure: a step at ``thresholds[i]`` across epoch ``epochs[i]``.

    Each step runs from ``epochs[i] - 1/2`` to ``epochs[i] + 1/2``, so the
    sharpness measured after an epoch (drawn at the epoch) sits in the middle
    of the step of the rate that epoch trained with, and the line follows the
    schedule. ``centred=False``: from ``epochs[i] - 1`` to ``epochs[i]``, the
    epoch itself, where the measurements of a step monitor taken during it
    lie (at their fractional epochs). An epoch without a finite threshold
    (rate 0, an adaptive optimiser) is left out.

    Parameters
    ----------
    epochs, thresholds : ndarray, shape (n,)
        A history's ``"epoch"`` column and its
        :meth:`~curvwidgets.results.TrainingHistory.stability_thresholds`
        (``2 / lr`` for plain gradient descent).
    centred : bool, default: True

    Returns
    -------
    x, y : ndarray, shape (2n,)
        The two ends of each step, in order.

    Examples
    --------
    >>> threshold_steps(np.array([1.0, 2.0]), np.array([20.0, 40.0]))
    (array([0.5, 1.5, 1.5, 2.5]), array([20., 20., 40., 40.]))
    >>> threshold_steps(np.array([1.0, 2.0]), np.array([20.0, 40.0]), centred=False)[0]
    array([0., 1., 1., 2.])
    """
    epochs, threshold = np.asarray(epochs, dtype=float), np.asarray(thresholds, dtype=float)
    low, high = (epochs - 0.5, epochs + 0.5) if centred else (epochs - 1.0, epochs)
    return finite_points(np.stack([low, high], axis=1).reshape(-1), np.repeat(threshold, 2))


def curvature_legend_html(monitor: Optional[Mapping[str, Any]] = None) -> str:
    """The legend below the curvature figures, naming the matrix and the subset of ``monitor``.

    Parameters
    ----------
    monitor : mapping, optional
        A history's ``config["monitor"]`` (:meth:`CurvatureMonitor.to_config`); default the Hessian on 256 samples.

    Examples
    --------
    >>> "top GGN eigenvalue on 64 samples" in curvature_legend_html({"matrix": "ggn", "num_samples": 64, "top": 1})
    True
    """
    settings = {**CurvatureMonitor().to_config(), **(monitor or {})}
    samples = "all samples" if settings["num_samples"] is None else f"{settings['num_samples']} samples"
    vectors = "eigenvector" if settings["top"] == 1 else f"{settings['top']} eigenvectors"
    return legend_html([
        (f"sharpness: top {MATRIX_NAMES.get(settings['matrix'], settings['matrix'])} eigenvalue on {samples}",
         SHARPNESS_COLOR, "line"),
        ("stability threshold of the optimiser's step: 2/η, (2+2β)/η with momentum β", THRESHOLD_COLOR, "dashed"),
        (f"gradient overlap: fraction of the gradient in the top {vectors}", OVERLAP_COLOR, "line")])


def accuracy_title(dataset: str) -> str:
    """The accuracy figure's title for the data set named ``dataset``: per token for windows of tokens.

    Examples
    --------
    >>> accuracy_title("digits"), accuracy_title("tinytext")
    ('top-1 accuracy', 'top-1 accuracy per token')
    """
    return "top-1 accuracy per token" if holds_tokens(dataset) else "top-1 accuracy"


class TrainingWidget(widgets.VBox):
    """Train a named model with :func:`curvwidgets.train`: Start/Stop, live curves, checkpoints, resume.

    A figure of the training and test loss against the epoch and one of their
    top-1 accuracy grow as each epoch ends; a third shows every batch loss of
    the epoch in progress against the fractional epoch; the checkpoints
    written so far are listed. The widget computes nothing itself: every
    number it draws comes from the run's :class:`~curvwidgets.TrainingHistory`
    and its ``"batch"`` progress events. The loss is the data set's own
    (:func:`curvwidgets.data.default_loss`): for ``tinytext`` the mean
    cross-entropy over every token, and the accuracy is per token (the
    figure's title says so).

    **measure curvature** (off by default: the run is then exactly
    ``cw.train`` without a monitor) hands :func:`curvwidgets.train` a
    :class:`~curvwidgets.CurvatureMonitor` measuring after every *every*-th
    epoch, or optimiser step (the menu beside it: *epochs* or *steps*), and
    after the last, on a fixed subset of *subset size* training samples (0:
    all). Two more figures then grow with the run: the sharpness (the top
    eigenvalue, a marker per measurement, at its fractional epoch:
    measurements every few steps fall within the epochs, on the epoch axis
    of the loss figure) on a logarithmic axis beside the dashed step line of
    each epoch's stability threshold (it follows the schedule; Cohen et al.
    (2021) find that full-batch gradient descent raises the sharpness to
    about 2/η; with SGD's momentum β the threshold is (2 + 2β)/η, as drawn;
    none for adaptive optimisers), and the gradient overlap, the
    fraction of the gradient in the top eigenvectors, on [0, 1]. They show
    while the box is ticked or the history shown holds measurements.
    The settings are disabled while a run goes (they are read when it starts).

    The language model ``TinyTransformer`` reads the token windows of
    ``tinytext``; every other model reads images. A model and data set that
    do not fit each other stop the run at once with an error in the widget
    naming what fits (see :func:`~curvwidgets.widgets._training_task.check_pairing`).

    **Train** starts a run; while it goes the button reads **Stop**. Stopping
    ends the run at the next batch and keeps the checkpoint of the last
    finished epoch in ``out_dir``. The **resume** box is ticked whenever
    ``out_dir`` holds a checkpoint (after a Stop, after a run, when a folder
    is typed): Train then continues from the latest checkpoint there, with
    the same results as a run never stopped; ``epochs`` may be raised to
    train longer. Untick it for a new run: a new run refuses a folder that
    holds checkpoints (it never overwrites another run's files), so give it
    another ``out_dir``.

    Parameters
    ----------
    data : DataSet, optional
        Train on this data set (``cw.data.load(...)``); the data set menu then
        shows its name and is disabled. Default: load the one picked in the
        menu (on ``device``, with ``seed``) when the run starts.
    model : str, default: "MLP"
        One of ``cw.models.names()``.
    dataset : str, default: "digits"
        One of ``cw.data.names()``; "digits", "synthetic" and "tinytext" need
        no download. Loaded at the widgets' sizes for a CPU
        (:data:`~curvwidgets.widgets._sizes.WIDGET_SIZES`): ``tinytext`` as
        400 training and 100 test windows in batches of 50, so that an epoch
        of ``TinyTransformer`` takes a fraction of a second; the others with
        ``cw.data.load``'s defaults. Pass ``data=cw.data.load(...)`` for other sizes.
    optimizer : str, default: "SGD"
        One of ``cw.optim.names()``.
    lr : float, optional
        Initial learning rate; default (and whenever another optimiser is
        picked) the one :func:`curvwidgets.train` gives that optimiser.
    epochs : int, default: 10
    schedule : str, default: "linear"
        One of ``cw.training.schedules.names()``; "linear" is the paper's eq. 19.
    swa_start : int, optional
        Epochs before stochastic weight averaging starts; None or 0 for none.
    swa_lr : float, default: 0.01
        The rate during SWA.
    out_dir : str, default: "runs/training"
        Where checkpoints and ``history.json`` go; empty for no files (then a run cannot be resumed).
    save_every : int, default: 1
        A checkpoint every this many epochs (and after the last).
    seed : int, default: 0
    device : str, optional
        Default: CUDA when available, else the CPU.
    monitor : CurvatureMonitor, optional
        Tick *measure curvature* and start its fields from this monitor's
        ``every``, ``unit`` and ``num_samples``; its other settings (matrix, ``tol``,
        ``top``, trace, seed, data) go to every run measured. Default: unticked,
        measuring (when ticked) as ``CurvatureMonitor()`` does.

    Attributes
    ----------
    result : TrainingHistory or None
        The history of the last run that finished or was stopped (then of its finished epochs).
    model : nn.Module or None
        The trained model (``result.model``): after a Stop, with the weights
        reached mid-epoch (the checkpoint holds those of the last finished epoch).
    dataset : DataSet or None
        The data set of the last run.
    checkpoints : list of str
        Trait: the checkpoint files written so far, oldest first, set on the UI
        thread at each drawn epoch and at the end of a run (``observe`` it).
    runner : TaskRunner
    model_name, dataset_name, optimizer_name, schedule_name : ipywidgets.Dropdown
    lr, swa_lr : ipywidgets.FloatText
    epochs, swa_start, save_every, seed : ipywidgets.IntText
    out_dir : ipywidgets.Text
    resume : ipywidgets.Checkbox
    measure_curvature : ipywidgets.Checkbox
    curvature_every, curvature_samples : ipywidgets.SelectionSlider
        The monitor's ``every`` (:data:`MEASUREMENT_INTERVALS`) and
        ``num_samples`` (:data:`SUBSET_SIZES`, or *all*: value 0), set before a
        run; disabled while the box is unticked. A ``monitor`` given with
        another value adds it to the choices.
    curvature_unit : ipywidgets.Dropdown
        The monitor's ``unit``: ``"epoch"`` (shown as *epochs*) or ``"step"`` (*steps*).
    train_loss_line, test_loss_line : bqplot.Lines
        ``x = history["epoch"]``, ``y = history["train_loss"]``, ``history["test_loss"]``
        (only the finite points: no test points without test data).
    train_accuracy_line, test_accuracy_line : bqplot.Lines
        ``y = history["train_top1"]``, ``history["test_top1"]`` (fractions).
    loss_figure, accuracy_figure : bqplot.Figure
        The accuracy figure is titled :func:`accuracy_title` of the data set picked ("per token" for ``tinytext``).
    legend : ipywidgets.HTML
        The colours of the training and test lines, below the two figures.
    sharpness_line : bqplot.Lines
        ``x, y = history.measured("epoch"), history.measured("sharpness")``:
        every measurement at its (fractional) epoch (finite and positive: the
        axis is logarithmic); for a history without a measurement table, the
        measured epochs of ``history["sharpness"]``.
    threshold_line : bqplot.Lines
        The stability threshold, dashed: ``threshold_steps`` of each epoch's
        (that of its row, or of its measurements for the epoch in progress); for a step
        monitor each step spans its epoch (``centred=False``).
    overlap_line : bqplot.Lines
        As ``sharpness_line``, of ``"gradient_overlap"``.
    sharpness_figure, overlap_figure : bqplot.Figure
    curvature_legend : ipywidgets.HTML
        :func:`curvature_legend_html` of the measurements drawn, or else of those the controls ask for.
    curvature_view : ipywidgets.VBox
        The two curvature figures and their legend; empty while *measure
        curvature* is unticked and the history shown holds no measurement
        (a bqplot figure must not be laid out in a hidden box).
    batch_loss_line : bqplot.Lines
        ``x, y = batch_points(batch)`` of the latest batch losses.
    checkpoint_list : ipywidgets.Select
        ``checkpoints``.
    final_summary : ipywidgets.HTML
        ``result.final``: the SWA figures, and the monitor's ``curvature_time_fraction``
        (its seconds over the training's); empty without either.
    """

    checkpoints = traitlets.List(traitlets.Unicode(), read_only=True,
                                 help="checkpoint files written so far, oldest first")

    def __init__(self, data: Optional[datasets.DataSet] = None, *, model: str = "MLP", dataset: str = "digits",
                 optimizer: str = "SGD", lr: Optional[float] = None, epochs: int = 10, schedule: str = "linear",
                 swa_start: Optional[int] = None, swa_lr: float = 0.01, out_dir: str = "runs/training",
                 save_every: int = 1, seed: int = 0, device: Optional[str] = None,
                 monitor: Optional[CurvatureMonitor] = None):
        if data is not None and not isinstance(data, datasets.DataSet):
            raise TypeError(f"data must be a DataSet (cw.data.load(...)) or None; got {type(data).__name__}")
        if monitor is not None and not isinstance(monitor, CurvatureMonitor):
            raise TypeError(f"monitor must be None or a cw.CurvatureMonitor; got {type(monitor).__name__}")
        # the fields hold any number (their range is checked when a run starts, the error shown in the widget)
        lr, swa_lr = None if lr is None else real("lr", lr), real("swa_lr", swa_lr)
        epochs, save_every, seed = integer("epochs", epochs), integer("save_every", save_every), integer("seed", seed)
        swa_start = None if swa_start is None else integer("swa_start", swa_start)
        out_dir = path_text("out_dir", out_dir, "a str or os.PathLike (empty for no files)")
        device_value("device", device)
        self.data, self.device = data, device
        self.model_name = widgets.Dropdown(options=models.names(), value=choice("model", model, models.names()),
                                           description="model", layout=field_layout("230px"))  # TinyTransformer whole
        self.dataset_name = widgets.Dropdown(
            options=(data.name,) if data is not None else datasets.names(),
            value=data.name if data is not None else choice("dataset", dataset, datasets.names()),
            description="data", layout=field_layout("200px"))
        self.optimizer_name = widgets.Dropdown(options=optim.names(),
                                               value=choice("optimizer", optimizer, optim.names()),
                                               description="optimiser", layout=field_layout("200px"))
        self.lr = widgets.FloatText(value=default_lr(optimizer) if lr is None else lr, description="lr",
                                    layout=field_layout("200px"))
        self.epochs = widgets.IntText(value=epochs, description="epochs", layout=field_layout("200px"))
        self.schedule_name = widgets.Dropdown(options=schedules.names(),
                                              value=choice("schedule", schedule, schedules.names()),
                                              description="schedule", layout=field_layout("200px"))
        self.swa_start = widgets.IntText(value=swa_start or 0, description="SWA from", layout=field_layout("200px"),
                                         tooltip="epochs before weight averaging starts; 0: no SWA")
        self.swa_lr = widgets.FloatText(value=swa_lr, description="SWA lr", layout=field_layout("200px"))
        self.out_dir = widgets.Text(value=out_dir, description="out_dir", placeholder="empty: no checkpoints",
                                    layout=field_layout("360px"))
        self.save_every = widgets.IntText(value=save_every, description="save every", layout=field_layout("200px"))
        self.seed = widgets.IntText(value=seed, description="seed", layout=field_layout("200px"))
        self.resume = widgets.Checkbox(value=has_checkpoint(out_dir), description="resume from out_dir",
                                       indent=False, layout=field_layout("auto"))
        self._build_monitor_controls(monitor)
        self.final_summary = widgets.HTML()
        self.runner = TaskRunner(on_run=self.run, description="Train", cancel_labels=("Stop", "Stopping"))
        self._loaded: Optional[Tuple[Tuple[str, int, str], datasets.DataSet]] = None
        self._planned_epochs = epochs if isinstance(epochs, int) else 1  # the epoch axes span the run
        self._running = False  # a run is going: the settings are disabled
        self._measured = False  # the history shown holds a curvature measurement
        self._shown_monitor: Optional[Mapping[str, Any]] = None  # the config["monitor"] of the history shown
        self._build_figures()
        self._refresh_controls()

        self.optimizer_name.observe(self._optimizer_picked, "value")
        self.dataset_name.observe(self._dataset_picked, "value")
        for control in (self.swa_start, self.measure_curvature):
            control.observe(lambda _change: self.runner.dispatch(self._refresh_controls), "value")
        self.curvature_samples.observe(lambda _change: self.runner.dispatch(self._refresh_legend), "value")
        self.measure_curvature.observe(lambda _change: self.runner.dispatch(self._refresh_curvature_view), "value")
        self.out_dir.observe(lambda _change: self.runner.dispatch(self._refresh_resume), "value")
        super().__init__([
            controls_row(self.model_name, self.dataset_name, self.optimizer_name, self.lr),
            controls_row(self.epochs, self.schedule_name, self.swa_start, self.swa_lr),
            controls_row(self.out_dir, self.save_every, self.seed, self.resume),
            controls_row(self.measure_curvature, self.curvature_every, self.curvature_unit, self.curvature_samples),
            self.runner,
            widgets.HBox([self.loss_figure, self.accuracy_figure]),
            self.legend,
            self.curvature_view,
            widgets.HBox([self.batch_figure, widgets.VBox([self.checkpoint_list, self.final_summary],
                                                          layout=widgets.Layout(width="40%"))]),
        ])

    def _build_monitor_controls(self, monitor: Optional[CurvatureMonitor]) -> None:
        """The *measure curvature* box and its fields, started from ``monitor`` (unticked without one)."""
        self._monitor_base = monitor if monitor is not None else CurvatureMonitor()
        wide_label = {"description_width": "initial"}
        self.measure_curvature = widgets.Checkbox(value=monitor is not None, description="measure curvature",
                                                  indent=False, layout=field_layout("auto"))
        self.curvature_every = widgets.SelectionSlider(
            options=_slider_options(MEASUREMENT_INTERVALS, self._monitor_base.every), value=self._monitor_base.every,
            description="every", style=wide_label, layout=field_layout("260px"), continuous_update=False,
            tooltip="measure after every k-th epoch or optimiser step (and after the last)")
        self.curvature_unit = widgets.Dropdown(options=(("epochs", "epoch"), ("steps", "step")),
                                               value=self._monitor_base.unit, layout=field_layout("90px"),
                                               tooltip="what 'every' counts: epochs, or optimiser steps (measured "
                                                       "within the epochs)")
        self.curvature_samples = widgets.SelectionSlider(
            options=_slider_options(SUBSET_SIZES, self._monitor_base.num_samples or 0, last=("all", 0)),
            value=self._monitor_base.num_samples or 0, description="subset size", style=wide_label,
            layout=field_layout("300px"), continuous_update=False,
            tooltip="training samples measured on, the same each time (all: the whole training split)")

    def _build_curvature_view(self) -> None:
        """The sharpness and overlap figures side by side over their legend, shown when they apply."""
        self.curvature_legend = wide_html()
        self._refresh_legend()
        self._curvature_parts = (widgets.HBox([self.sharpness_figure, self.overlap_figure]), self.curvature_legend)
        self.curvature_view = widgets.VBox([])
        self._refresh_curvature_view()

    def _build_figures(self) -> None:
        self._plots = (
            _epoch_plot("loss", _columns("train_loss", "test_loss")),
            _epoch_plot("top-1 accuracy", _columns("train_top1", "test_top1"),
                        title=accuracy_title(self.dataset_name.value)),
            _epoch_plot("top eigenvalue", _sharpness_points, title="sharpness and stability threshold",
                        styles=(dict(colors=[SHARPNESS_COLOR], marker="circle"),
                                dict(colors=[THRESHOLD_COLOR], line_style="dashed")),
                        log=True),
            _epoch_plot("‖Vᵀg‖² / ‖g‖²", _measurements("gradient_overlap"), title="gradient overlap",
                        styles=(dict(colors=[OVERLAP_COLOR], marker="circle"),), span=lambda *_: OVERLAP_RANGE))
        (self.loss_figure, (self.train_loss_line, self.test_loss_line)), \
            (self.accuracy_figure, (self.train_accuracy_line, self.test_accuracy_line)), \
            (self.sharpness_figure, (self.sharpness_line, self.threshold_line)), \
            (self.overlap_figure, (self.overlap_line,)) = [(plot.figure, plot.lines) for plot in self._plots]
        for plot in self._plots:  # empty, with the axes of the run planned (bqplot's own log ticks collide)
            plot.draw(TrainingHistory(), max(self._planned_epochs, 1))
        self._build_curvature_view()
        epoch, loss = linear_scale(), linear_scale()
        self.batch_loss_line = bq.Lines(x=[], y=[], scales={"x": epoch, "y": loss}, colors=[TRAIN_COLOR])
        self.batch_figure = bq.Figure(
            marks=[self.batch_loss_line], title="this epoch's batch losses",
            axes=[bq.Axis(scale=epoch, label="epoch"), bq.Axis(scale=loss, side="left", label="batch loss")],
            fig_margin={"top": 40, "bottom": 50, "left": 60, "right": 20},
            layout=widgets.Layout(width="58%", height="300px"))
        self.checkpoint_list = widgets.Select(options=[], rows=8, description="checkpoints",
                                              layout=widgets.Layout(width="95%"))
        self.legend = wide_html(legend_html([("train", TRAIN_COLOR, "line"), ("test", TEST_COLOR, "line")]))

    # -- public -----------------------------------------------------------------------------------------------------

    @property
    def result(self) -> Optional[TrainingHistory]:
        """The history of the last run that finished or was stopped, or None."""
        return self.runner.result

    @property
    def model(self) -> Optional[nn.Module]:
        """The model of :attr:`result` (None before a run)."""
        return None if self.result is None else self.result.model

    @property
    def dataset(self) -> Optional[datasets.DataSet]:
        """The data set given, or the one the last run loaded (None before)."""
        if self.data is not None:
            return self.data
        return None if self._loaded is None else self._loaded[1]

    @property
    def settings(self) -> TrainingSettings:
        """The run the controls describe now."""
        return TrainingSettings(
            model=self.model_name.value, dataset=self.dataset_name.value, optimizer=self.optimizer_name.value,
            lr=self.lr.value, epochs=self.epochs.value, schedule=self.schedule_name.value,
            swa_start=self.swa_start.value, swa_lr=self.swa_lr.value, out_dir=self.out_dir.value,
            save_every=self.save_every.value, seed=self.seed.value, resume=self.resume.value,
            monitor=MonitorSettings(self.curvature_every.value, self.curvature_samples.value, self._monitor_base,
                                    self.curvature_unit.value)
            if self.measure_curvature.value else None)

    def run(self, block: bool = False) -> bool:
        """Train as the controls say (see :meth:`TaskRunner.start`); Stop with :meth:`stop` or the button.

        Batch losses are sent at most every ``runner.min_interval`` seconds.
        The settings are disabled until the run ends. Returns False, starting
        nothing, while a run is going.
        """
        settings, interval = self.settings, self.runner.min_interval
        self._planned_epochs = settings.epochs if isinstance(settings.epochs, int) else 1

        def task(progress, cancel):
            return run_training(settings, self.data, self._load, self.device, interval, progress, cancel)

        return self.runner.start(task, on_progress=self._show_progress, on_done=self._show_final, block=block,
                                 on_start=lambda: self._lock_settings(True))

    def stop(self) -> bool:
        """Stop the run at its next batch, keeping the last finished epoch's checkpoint; False when none is going."""
        return self.runner.cancel()

    # -- drawing (UI thread only: through the runner's dispatcher) --------------------------------------------------

    def _load(self, name: str, seed: int, device: torch.device) -> datasets.DataSet:
        """The data set ``name`` at its widget sizes on ``device``, shuffled by ``seed``; the last one is kept."""
        key = (name, seed, str(device))
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = (key, datasets.load(name, device=device, seed=seed, **sizes_for(name).load))
        return self._loaded[1]

    def _show_progress(self, event: ProgressEvent) -> None:
        if isinstance(event.partial, TrainingSnapshot):
            if event.partial.history is not None:
                self._draw_history(event.partial.history)
            self._draw_batches(event.partial.batch)

    def _show_final(self, history: Optional[TrainingHistory]) -> None:
        self._draw_history(history if history is not None else TrainingHistory())
        self._refresh_resume()
        self._lock_settings(False)

    def _draw_history(self, history: TrainingHistory) -> None:
        """The curves of every epoch figure, the checkpoint list and the SWA figures of ``history``.

        The epoch axes span the run's epochs from the start; each value axis the values drawn.
        """
        last = max([self._planned_epochs, *history["epoch"].astype(int)])
        first = 0.0 if _measures_steps(history) else 0.5  # a step's measurement may come before epoch 1/2
        with hold_sync(*(line for plot in self._plots for line in plot.lines), self.checkpoint_list,
                       self.final_summary):
            for plot in self._plots:
                plot.draw(history, last, first)
            self.checkpoint_list.options = tuple(history.checkpoints)
            self.final_summary.value = " · ".join(f"{key} <b>{value:.4g}</b>" for key, value in history.final.items())
        self._measured = bool(np.isfinite(history["sharpness"]).any()
                              or np.isfinite(history.measured("sharpness")).any())
        self._shown_monitor = history.config.get("monitor")
        self._refresh_legend()
        self._refresh_curvature_view()
        if history.checkpoints != self.checkpoints:  # observers hear of new files only
            self.set_trait("checkpoints", list(history.checkpoints))

    def _draw_batches(self, batch: Optional[BatchLosses]) -> None:
        """The batch losses of the running epoch, on an axis spanning that whole epoch."""
        x, y = batch_points(batch)
        epoch_axis, loss_axis = self.batch_figure.axes
        with hold_sync(self.batch_loss_line):
            set_range(epoch_axis, batch.epoch - 1 if batch is not None else None,
                      batch.epoch if batch is not None else None)
            set_range(loss_axis, *padded_range(y))
            self.batch_loss_line.x, self.batch_loss_line.y = x, y

    def _refresh_resume(self) -> None:
        self.resume.value = has_checkpoint(self.out_dir.value)

    def _setting_controls(self) -> Tuple[widgets.DOMWidget, ...]:
        """Every control whose value a run reads when it starts."""
        return (self.model_name, self.dataset_name, self.optimizer_name, self.lr, self.epochs, self.schedule_name,
                self.swa_start, self.swa_lr, self.out_dir, self.save_every, self.seed, self.resume,
                self.measure_curvature, self.curvature_every, self.curvature_unit, self.curvature_samples)

    def _lock_settings(self, running: bool) -> None:
        self._running = running
        self._refresh_controls()

    def _refresh_controls(self) -> None:
        """The settings are enabled between runs only, and those that depend on another only where they apply."""
        measuring = self.measure_curvature.value
        idle = {id(self.dataset_name): self.data is None, id(self.swa_lr): self.swa_start.value != 0,
                id(self.curvature_every): measuring, id(self.curvature_unit): measuring,
                id(self.curvature_samples): measuring}
        controls = self._setting_controls()
        with hold_sync(*controls):
            for control in controls:
                control.disabled = self._running or not idle.get(id(control), True)

    def _refresh_legend(self) -> None:
        """The legend names the matrix and subset of the measurements drawn, or else of those the controls ask for."""
        asked = {**self._monitor_base.to_config(), "num_samples": self.curvature_samples.value or None}
        self.curvature_legend.value = curvature_legend_html(
            self._shown_monitor if self._measured and self._shown_monitor else asked)

    def _refresh_curvature_view(self) -> None:
        """The curvature figures show while the monitor is ticked or the history shown holds a measurement."""
        shown = self.measure_curvature.value or self._measured
        if shown != bool(self.curvature_view.children):
            self.curvature_view.children = self._curvature_parts if shown else ()

    def _optimizer_picked(self, change: dict) -> None:
        self.runner.dispatch(lambda: setattr(self.lr, "value", default_lr(change["new"])))

    def _dataset_picked(self, change: dict) -> None:
        self.runner.dispatch(lambda: setattr(self.accuracy_figure, "title", accuracy_title(change["new"])))



#: The training and test lines of the loss and accuracy figures.
TRAIN_TEST_STYLES = (dict(colors=[TRAIN_COLOR], marker="circle"), dict(colors=[TEST_COLOR], marker="circle"))
Span = Callable[..., Tuple[Optional[float], Optional[float]]]


@dataclass(frozen=True)
class _EpochPlot:
    """A figure against the epoch: its lines, what each draws of a history, and how its value axis spans them.

    Attributes
    ----------
    figure : bqplot.Figure
        Axes ``(epoch, value)``.
    lines : tuple of bqplot.Lines
    points : callable
        ``points(history)``: the ``(x, y)`` of each line.
    span : callable, default: padded_range
        ``span(*ys)``: the value axis's range, ``(None, None)`` for no data.
    ticks : callable, default: nice_ticks
        The value axis's ticks (:func:`~curvwidgets.widgets._view.log_ticks` on a log scale).
    empty : (float, float)
        The value axis's range without data.
    """

    figure: bq.Figure
    lines: Tuple[bq.Lines, ...]
    points: Callable[[TrainingHistory], Sequence[Points]]
    span: Span = padded_range
    ticks: Callable[[float, float, int], np.ndarray] = nice_ticks
    empty: Tuple[float, float] = (0.0, 1.0)

    def draw(self, history: TrainingHistory, last: int, first: float = 0.5) -> None:
        """Draw ``history`` with the epoch axis on ``[first, last + 0.5]`` (at most one tick per epoch)."""
        epoch_axis, value_axis = self.figure.axes
        points = self.points(history)
        set_range(epoch_axis, first, last + 0.5, count=min(last, 6))
        set_range(value_axis, *self.span(*(y for _x, y in points)), empty=self.empty, ticks=self.ticks)
        for line, (x, y) in zip(self.lines, points):
            line.x, line.y = x, y


def _epoch_plot(quantity: str, points: Callable[[TrainingHistory], Sequence[Points]], title: Optional[str] = None,
                styles: Sequence[Dict[str, Any]] = TRAIN_TEST_STYLES, log: bool = False,
                span: Optional[Span] = None) -> _EpochPlot:
    """A figure of ``quantity`` against the epoch with one empty line per style (``bqplot.Lines`` options), on
    shared scales, titled ``title`` (default: ``quantity``); ``log``: a logarithmic value axis."""
    epoch, value = linear_scale(), log_scale() if log else linear_scale()
    lines = tuple(bq.Lines(x=[], y=[], scales={"x": epoch, "y": value}, **style) for style in styles)
    figure = bq.Figure(marks=list(lines), title=title or quantity,
                       axes=[bq.Axis(scale=epoch, label="epoch"), bq.Axis(scale=value, side="left", label=quantity)],
                       fig_margin={"top": 40, "bottom": 50, "left": 60, "right": 20},
                       layout=widgets.Layout(width="49%", height="300px"))
    if log:
        return _EpochPlot(figure, lines, points, span or padded_log_range, log_ticks, (1.0, 10.0))
    return _EpochPlot(figure, lines, points, span or padded_range)


def _columns(*names: str) -> Callable[[TrainingHistory], Tuple[Points, ...]]:
    """The points of lines drawing the columns ``names`` of a history against the epoch (finite points only)."""
    return lambda history: tuple(finite_points(history["epoch"], history[name]) for name in names)


def _measurements(name: str) -> Callable[[TrainingHistory], Tuple[Points]]:
    """The points of a line drawing the monitor's column ``name`` (see :func:`_measured`)."""
    return lambda history: (_measured(history, name),)


def _measured(history: TrainingHistory, name: str) -> Points:
    """Every measurement of ``name`` at its fractional epoch (``history.measurements``), finite points only.

    A history without that table (saved before it was kept) gives its epoch rows' measurements.
    """
    if history.measurements:
        return finite_points(history.measured("epoch"), history.measured(name))
    return finite_points(history["epoch"], history[name])


def _measures_steps(history: TrainingHistory) -> bool:
    """Whether ``history`` comes from a monitor counting optimiser steps (measurements within the epochs)."""
    return (history.config.get("monitor") or {}).get("unit") == "step"


def _sharpness_points(history: TrainingHistory) -> Tuple[Points, Points]:
    """The measured sharpness (finite and positive: its axis is logarithmic) and the threshold steps of a history.

    The threshold of each epoch is its row's (:meth:`~curvwidgets.results.TrainingHistory.stability_thresholds`),
    or for the epoch in progress that of its measurements (each records the
    optimiser's at the step just taken).
    """
    x, y = _measured(history, "sharpness")
    thresholds = dict(zip(history["epoch"].astype(int).tolist(), history.stability_thresholds()))
    measured = [row for row in history.measurements if np.isfinite(row.get("epoch", np.nan)) and "lr" in row]
    for row, value in zip(measured, history.stability_thresholds(measured)):
        thresholds.setdefault(int(np.ceil(row["epoch"])), value)
    epochs = np.array(sorted(thresholds), dtype=float)
    threshold = threshold_steps(epochs, np.array([thresholds[int(epoch)] for epoch in epochs]),
                                centred=not _measures_steps(history))
    return (x[y > 0], y[y > 0]), threshold
