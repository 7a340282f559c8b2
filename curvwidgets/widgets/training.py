"""Training, live: loss and accuracy per epoch, the batch losses of the epoch, Start/Stop/resume, checkpoints."""

from __future__ import annotations

from typing import Optional, Tuple

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
from ._sizes import sizes_for
from ._training_task import (TrainingSettings, TrainingSnapshot, default_lr, has_checkpoint, holds_tokens,
                             run_training)
from ._view import (controls_row, field_layout, finite_points, hold_sync, legend_html, linear_scale, padded_range,
                   set_range, wide_html)
from .runner import TaskRunner

__all__ = ["TrainingWidget", "accuracy_title", "batch_points"]

TRAIN_COLOR, TEST_COLOR = "#1f77b4", "#ff7f0e"


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
    train_loss_line, test_loss_line : bqplot.Lines
        ``x = history["epoch"]``, ``y = history["train_loss"]``, ``history["test_loss"]``
        (only the finite points: no test points without test data).
    train_accuracy_line, test_accuracy_line : bqplot.Lines
        ``y = history["train_top1"]``, ``history["test_top1"]`` (fractions).
    loss_figure, accuracy_figure : bqplot.Figure
        The accuracy figure is titled :func:`accuracy_title` of the data set picked ("per token" for ``tinytext``).
    legend : ipywidgets.HTML
        The colours of the training and test lines, below the two figures.
    batch_loss_line : bqplot.Lines
        ``x, y = batch_points(batch)`` of the latest batch losses.
    checkpoint_list : ipywidgets.Select
        ``checkpoints``.
    final_summary : ipywidgets.HTML
        ``result.final`` (the SWA figures), empty without SWA.
    """

    checkpoints = traitlets.List(traitlets.Unicode(), read_only=True,
                                 help="checkpoint files written so far, oldest first")

    def __init__(self, data: Optional[datasets.DataSet] = None, *, model: str = "MLP", dataset: str = "digits",
                 optimizer: str = "SGD", lr: Optional[float] = None, epochs: int = 10, schedule: str = "linear",
                 swa_start: Optional[int] = None, swa_lr: float = 0.01, out_dir: str = "runs/training",
                 save_every: int = 1, seed: int = 0, device: Optional[str] = None):
        if data is not None and not isinstance(data, datasets.DataSet):
            raise TypeError(f"data must be a DataSet (cw.data.load(...)) or None; got {type(data).__name__}")
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
            description="data", disabled=data is not None, layout=field_layout("200px"))
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
        self.swa_lr = widgets.FloatText(value=swa_lr, description="SWA lr", layout=field_layout("200px"),
                                        disabled=not swa_start)
        self.out_dir = widgets.Text(value=out_dir, description="out_dir", placeholder="empty: no checkpoints",
                                    layout=field_layout("360px"))
        self.save_every = widgets.IntText(value=save_every, description="save every", layout=field_layout("200px"))
        self.seed = widgets.IntText(value=seed, description="seed", layout=field_layout("200px"))
        self.resume = widgets.Checkbox(value=has_checkpoint(out_dir), description="resume from out_dir",
                                       indent=False, layout=field_layout("auto"))
        self.final_summary = widgets.HTML()
        self.runner = TaskRunner(on_run=self.run, description="Train", cancel_labels=("Stop", "Stopping"))
        self._loaded: Optional[Tuple[Tuple[str, int, str], datasets.DataSet]] = None
        self._planned_epochs = epochs if isinstance(epochs, int) else 1  # the epoch axes span the run
        self._build_figures()

        self.optimizer_name.observe(self._optimizer_picked, "value")
        self.dataset_name.observe(self._dataset_picked, "value")
        self.swa_start.observe(self._swa_toggled, "value")
        self.out_dir.observe(lambda _change: self.runner.dispatch(self._refresh_resume), "value")
        super().__init__([
            controls_row(self.model_name, self.dataset_name, self.optimizer_name, self.lr),
            controls_row(self.epochs, self.schedule_name, self.swa_start, self.swa_lr),
            controls_row(self.out_dir, self.save_every, self.seed, self.resume),
            self.runner,
            widgets.HBox([self.loss_figure, self.accuracy_figure]),
            self.legend,
            widgets.HBox([self.batch_figure, widgets.VBox([self.checkpoint_list, self.final_summary],
                                                          layout=widgets.Layout(width="40%"))]),
        ])

    def _build_figures(self) -> None:
        self.loss_figure, (self.train_loss_line, self.test_loss_line) = _epoch_figure("loss")
        self.accuracy_figure, (self.train_accuracy_line, self.test_accuracy_line) = _epoch_figure(
            "top-1 accuracy", accuracy_title(self.dataset_name.value))
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
            save_every=self.save_every.value, seed=self.seed.value, resume=self.resume.value)

    def run(self, block: bool = False) -> bool:
        """Train as the controls say (see :meth:`TaskRunner.start`); Stop with :meth:`stop` or the button.

        Batch losses are sent at most every ``runner.min_interval`` seconds.
        Returns False, starting nothing, while a run is going.
        """
        settings, interval = self.settings, self.runner.min_interval
        self._planned_epochs = settings.epochs if isinstance(settings.epochs, int) else 1

        def task(progress, cancel):
            return run_training(settings, self.data, self._load, self.device, interval, progress, cancel)

        return self.runner.start(task, on_progress=self._show_progress, on_done=self._show_final, block=block)

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

    def _draw_history(self, history: TrainingHistory) -> None:
        """Loss and accuracy curves, the checkpoint list and the SWA figures of ``history``.

        The epoch axes span the run's epochs from the start; each value axis the values drawn.
        """
        epochs = history["epoch"]
        last = max([self._planned_epochs, *epochs.astype(int)])
        pairs = (((self.train_loss_line, "train_loss"), (self.test_loss_line, "test_loss")),
                 ((self.train_accuracy_line, "train_top1"), (self.test_accuracy_line, "test_top1")))
        with hold_sync(self.train_loss_line, self.test_loss_line, self.train_accuracy_line, self.test_accuracy_line,
                       self.checkpoint_list, self.final_summary):
            for figure, ((first, first_column), (second, second_column)) in zip(
                    (self.loss_figure, self.accuracy_figure), pairs):
                epoch_axis, value_axis = figure.axes
                set_range(epoch_axis, 0.5, last + 0.5, count=min(last, 6))  # whole epochs: at most one tick each
                set_range(value_axis, *padded_range(history[first_column], history[second_column]))
                for line, column in ((first, first_column), (second, second_column)):
                    line.x, line.y = finite_points(epochs, history[column])
            self.checkpoint_list.options = tuple(history.checkpoints)
            self.final_summary.value = " · ".join(f"{key} <b>{value:.4g}</b>" for key, value in history.final.items())
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

    def _optimizer_picked(self, change: dict) -> None:
        self.runner.dispatch(lambda: setattr(self.lr, "value", default_lr(change["new"])))

    def _dataset_picked(self, change: dict) -> None:
        self.runner.dispatch(lambda: setattr(self.accuracy_figure, "title", accuracy_title(change["new"])))

    def _swa_toggled(self, change: dict) -> None:
        self.runner.dispatch(lambda: setattr(self.swa_lr, "disabled", change["new"] == 0))


def _epoch_figure(quantity: str, title: Optional[str] = None) -> Tuple[bq.Figure, Tuple[bq.Lines, bq.Lines]]:
    """A figure of ``quantity`` against the epoch with a training and a test line (empty), on shared scales.

    Titled ``title`` (default: ``quantity``).
    """
    epoch, value = linear_scale(), linear_scale()
    lines = tuple(bq.Lines(x=[], y=[], scales={"x": epoch, "y": value}, colors=[color], marker="circle")
                  for color in (TRAIN_COLOR, TEST_COLOR))
    figure = bq.Figure(marks=list(lines), title=title or quantity,
                       axes=[bq.Axis(scale=epoch, label="epoch"), bq.Axis(scale=value, side="left", label=quantity)],
                       fig_margin={"top": 40, "bottom": 50, "left": 60, "right": 20},
                       layout=widgets.Layout(width="49%", height="300px"))
    return figure, lines
