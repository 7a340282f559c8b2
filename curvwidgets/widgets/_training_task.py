"""What :class:`~curvwidgets.widgets.TrainingWidget` computes: ``cw.train`` of a named model, resumable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

import torch

from .._validate import choice, non_negative_int, positive_int
from ..losses import SequenceCrossEntropyLoss
from ..progress import CancelToken, ProgressCallback, ProgressEvent
from ..results import TrainingHistory
from ..training import models, optim
from ..training import data as datasets
from ..training.checkpoint import checkpoint_epoch, latest_checkpoint
from ..training.data import DataSet
from ..training.distributed import default_device
from ..training.loop import BatchLosses, train
from ..training.monitor import UNITS, CurvatureMonitor

__all__ = ["TOKEN_MODELS", "MonitorSettings", "TrainingSettings", "TrainingSnapshot", "check_pairing", "default_lr",
           "has_checkpoint", "holds_tokens", "run_training"]

#: The named models that read windows of token ids ``(B, T)``; every other named model reads images ``(B, C, H, W)``.
TOKEN_MODELS = ("TinyTransformer",)


def default_lr(optimizer: str) -> float:
    """The learning rate :func:`curvwidgets.train` gives ``optimizer`` (a name of ``cw.optim.names()``) by default."""
    return optim.DEFAULTS[optimizer]["lr"]


def has_checkpoint(folder: str) -> bool:
    """Whether ``folder`` holds a ``checkpoint-XXXXX.pt`` file; False for an empty path or a missing folder."""
    if not folder.strip():
        return False
    try:
        latest_checkpoint(folder.strip())
    except FileNotFoundError:
        return False
    return True


def holds_tokens(dataset: str) -> bool:
    """Whether the data set named ``dataset`` holds windows of token ids (its default loss is per token).

    Examples
    --------
    >>> holds_tokens("tinytext"), holds_tokens("digits")
    (True, False)
    """
    return isinstance(datasets.default_loss(dataset), SequenceCrossEntropyLoss)


def check_pairing(model: str, dataset: str) -> None:
    """Refuse a named model that cannot read the named data set's inputs, saying what fits each.

    Raises
    ------
    ValueError
        An image model on token windows, or a token model (:data:`TOKEN_MODELS`) on images.
    """
    reads_tokens = models.canonical_name(model) in TOKEN_MODELS
    if reads_tokens == holds_tokens(dataset):
        return
    token_sets = [name for name in datasets.names() if holds_tokens(name)]
    if reads_tokens:
        raise ValueError(f"model and data do not fit: {model} reads windows of token ids (B, T), but {dataset} holds "
                         f"images (B, C, H, W); pick the data {' or '.join(token_sets)} for {model}, or an image "
                         f"model (MLP, SmallCNN, ...) for {dataset}")
    image_sets = [name for name in datasets.names() if name not in token_sets]
    raise ValueError(f"model and data do not fit: {model} reads images (B, C, H, W), but {dataset} holds windows of "
                     f"token ids (B, T); pick the model {' or '.join(TOKEN_MODELS)} for {dataset}, or an image data "
                     f"set ({', '.join(image_sets)}) for {model}")


@dataclass(frozen=True)
class MonitorSettings:
    """The curvature measurements of a run, as read from the widget's controls.

    Attributes
    ----------
    every : int
        Measure after every ``every``-th epoch or step (see ``unit``), and after the last.
    samples : int
        Size of the fixed subset of training samples measured on; 0 for all of them.
    base : CurvatureMonitor
        The monitor's other settings (matrix, tolerance, ``top``, trace, seed, data), kept as given.
    unit : {"epoch", "step"}, default: "epoch"
        What ``every`` counts: epochs, or optimiser steps (measured within the epochs).
    """

    every: int
    samples: int
    base: CurvatureMonitor = CurvatureMonitor()
    unit: str = "epoch"

    def monitor(self) -> CurvatureMonitor:
        """The :class:`~curvwidgets.CurvatureMonitor` handed to :func:`curvwidgets.train`.

        Raises
        ------
        ValueError
            ``every`` below 1 or ``samples`` below 0, named as the controls are.
        """
        unit = choice("curvature: unit", self.unit, UNITS)
        every = positive_int(f"curvature: every ({unit}s)", self.every)
        samples = non_negative_int("curvature: subset size", self.samples)
        return dataclasses.replace(self.base, every=every, num_samples=samples or None, unit=unit)


@dataclass(frozen=True)
class TrainingSettings:
    """One training run, as read from the widget's controls.

    Attributes
    ----------
    model, dataset, optimizer, schedule : str
        Names of ``cw.models.names()``, ``cw.data.names()``, ``cw.optim.names()``
        and ``cw.training.schedules.names()``.
    lr : float
        Initial learning rate (the optimiser's only option set here; the others
        keep :func:`curvwidgets.train`'s defaults).
    epochs : int
        Total epochs, counting those of a resumed run.
    swa_start : int
        Epochs before stochastic weight averaging starts; 0 for no SWA.
    swa_lr : float
        The constant rate during SWA (unused without it).
    out_dir : str
        Folder of the checkpoints and ``history.json``; empty for no files.
    save_every : int
        A checkpoint every this many epochs (and after the last).
    seed : int
    resume : bool
        Continue from the latest checkpoint in ``out_dir``. Without it a run
        refuses an ``out_dir`` that already holds checkpoints, so that it never
        overwrites the files of another run.
    monitor : MonitorSettings or None, default: None
        Measure the curvature during the run; None (the default) trains exactly as without a monitor.
    """

    model: str
    dataset: str
    optimizer: str
    lr: float
    epochs: int
    schedule: str
    swa_start: int
    swa_lr: float
    out_dir: str
    save_every: int
    seed: int
    resume: bool
    monitor: Optional[MonitorSettings] = None

    @property
    def folder(self) -> Optional[str]:
        """``out_dir`` without surrounding blanks, None when empty."""
        return self.out_dir.strip() or None

    def resume_from(self) -> Optional[str]:
        """The folder to continue from, or None for a new run.

        Raises
        ------
        ValueError
            ``resume`` without ``out_dir``; a new run into an ``out_dir`` that holds checkpoints.
        """
        if self.resume:
            if self.folder is None:
                raise ValueError("resume: set out_dir, the folder whose latest checkpoint the run continues")
            return self.folder
        if self.folder is not None and has_checkpoint(self.folder):
            raise ValueError(f"out_dir: {self.folder!r} already holds the checkpoints of a run; tick 'resume' to "
                             "continue it, or choose another folder for a new run")
        return None

    def options(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`curvwidgets.train` (all but model, data, device, progress and cancel)."""
        swa = self.swa_start != 0
        return dict(epochs=self.epochs, optimizer=self.optimizer, optimizer_kwargs={"lr": self.lr},
                    schedule=self.schedule, out_dir=self.folder, save_every=self.save_every if self.folder else None,
                    resume=self.resume_from(), seed=self.seed, swa_start=self.swa_start if swa else None,
                    swa_lr=self.swa_lr if swa else None,
                    monitor=self.monitor.monitor() if self.monitor is not None else None)


@dataclass(frozen=True)
class TrainingSnapshot:
    """The partial result of the widget's progress events: what the run has measured so far.

    Attributes
    ----------
    history : TrainingHistory or None
        A copy of the history after the last finished epoch (or SWA); empty
        at the start of a new run; None at the start of a resumed run (the
        resumed epochs are known once the next one ends).
    batch : BatchLosses or None
        Every batch loss so far of the epoch in progress (or just finished); None before the first batch.
    """

    history: Optional[TrainingHistory]
    batch: Optional[BatchLosses]


class _Snapshots:
    """The ``progress`` handed to :func:`curvwidgets.train`: each of its events goes on as one carrying a snapshot.

    ``"batch"`` and ``"curvature"`` events (a monitor's measurements, within
    the epochs for ``unit="step"``) become ``"train"`` events at the epochs
    finished, so that a progress bar counts epochs; every event carries both
    the latest history (its measurements included) and the latest batch
    losses, so the newest event alone is enough to draw (a throttled front
    end may skip the others).
    """

    def __init__(self, progress: ProgressCallback, epochs: int, history: Optional[TrainingHistory]):
        self.progress, self.epochs = progress, epochs
        self.latest = TrainingSnapshot(history, None)

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event.partial, BatchLosses):
            self.latest = dataclasses.replace(self.latest, batch=event.partial)
            event = ProgressEvent("train", event.partial.epoch - 1, self.epochs)
        else:
            self.latest = dataclasses.replace(self.latest, history=_copy(event.partial))
            if event.stage == "curvature":
                event = ProgressEvent("train", len(event.partial), self.epochs)
        self.progress(ProgressEvent(event.stage, event.step, event.total, self.latest))


def _copy(history: TrainingHistory) -> TrainingHistory:
    """A copy whose rows, final figures and checkpoint list the running loop no longer changes."""
    return dataclasses.replace(history, rows=list(history.rows), final=dict(history.final),
                               checkpoints=list(history.checkpoints),
                               measurements=[dict(row) for row in history.measurements])


DataSource = Callable[[str, int, torch.device], DataSet]


def run_training(settings: TrainingSettings, data: Optional[DataSet], load: DataSource,
                 device: Union[str, torch.device, None], batch_interval: float, progress: ProgressCallback,
                 cancel: CancelToken) -> TrainingHistory:
    """Train as ``settings`` say, on ``data`` or on ``load(settings.dataset, settings.seed, device)``.

    Events: one ``"train"`` event once the data is loaded, at the epoch the
    run starts from (0, or the resumed checkpoint's: the runner counts the
    rate and ETA from there), then those of :func:`curvwidgets.train` with
    ``batch_interval``, each turned
    into an event whose partial is a :class:`TrainingSnapshot` (see
    :class:`_Snapshots`).

    Parameters
    ----------
    device : optional
        Where the data and the model go; default CUDA when available.
    batch_interval : float
        Seconds between two batch-loss events (``cw.train``'s ``batch_interval``).

    Raises
    ------
    ValueError
        A model that cannot read the data (:func:`check_pairing`, before the
        data is loaded); a bad setting (see :meth:`TrainingSettings.resume_from`
        and :func:`curvwidgets.train`).
    Cancelled
        ``.result`` is the history of the epochs finished (their checkpoint is in ``out_dir``).
    """
    check_pairing(settings.model, data.name if data is not None else settings.dataset)
    epochs = positive_int("epochs", settings.epochs)
    options = settings.options()
    device = torch.device(device) if device is not None else default_device()
    dataset = data if data is not None else load(settings.dataset, settings.seed, device)
    resume = options["resume"]
    start = 0 if resume is None else min(checkpoint_epoch(latest_checkpoint(resume)), epochs)
    snapshots = _Snapshots(progress, epochs, TrainingHistory() if resume is None else None)
    progress(ProgressEvent("train", start, epochs, snapshots.latest))  # a Stop is honoured at the first batch
    return train(settings.model, dataset, device=device, progress=snapshots, cancel=cancel,
                 batch_interval=batch_interval, **options)
