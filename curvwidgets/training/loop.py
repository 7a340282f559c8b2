"""The training loop: ``cw.train`` with per-epoch statistics, atomic checkpoints and exact resume.

One code path serves one process and ``torchrun``: with several processes the
model is wrapped in ``DistributedDataParallel``, each rank takes its slice of
every global batch, statistics are summed over ranks, BatchNorm running
statistics are averaged over ranks before each evaluation, and only rank 0
writes files (see :mod:`curvwidgets.training.distributed`).

Resuming is exact on CPU because nothing in an epoch depends on state that a
checkpoint does not hold: the data order and augmentation draws come from
``(seed, epoch)`` (``TensorLoader.set_epoch``), the learning rate is a
function of the epoch, and the checkpoint stores model, optimiser, the
averaged SWA weights and the torch random states (dropout).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._validate import boolean, device_value, non_negative, positive, positive_int, seed_value
from .._validate import writable_folder as checked_folder
from ..progress import Cancelled, CancelToken, ProgressCallback, ProgressEvent, check_protocol, report
from ..results import TrainingHistory
from . import data as datasets
from . import models, optim, schedules
from .checkpoint import checkpoint_name, load_checkpoint, load_model_state, save_checkpoint
from ..curvature.batches import Inputs
from ..curvature.data import all_reduce_sum, naming_data, split_batch
from ..losses import ModelLoss
from .batches import BatchReader, update_batch_norm
from .distributed import any_rank, average_buffers, default_device, join_process_group
from .monitor import CurvatureMeasurer, CurvatureMonitor, MonitorRun
from .stability import stability_threshold

__all__ = ["train", "evaluate", "BatchLosses", "TrainingDiverged",
           # the checks of train's arguments, which the paper's train_network makes before it loads any data
           "keyword_options", "optimizer_options", "swa_settings", "writable_folder"]

#: The settings a resumed run must share with the checkpoint's run (the argument that carries each).
RESUME_MUST_MATCH = {"optimizer": "optimizer", "seed": "seed", "schedule": "schedule",
                     "schedule_kwargs": "schedule_kwargs", "swa_start": "swa_start", "swa_lr": "swa_lr"}


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite; ``checkpoint`` is the last good one (or None)."""

    def __init__(self, message: str, epoch: int, checkpoint: Optional[str]):
        super().__init__(message)
        self.epoch, self.checkpoint = epoch, checkpoint


def train(
    model: Union[str, nn.Module],
    data: Union[str, "datasets.DataSet", Tuple[Iterable, Iterable]],
    epochs: int,
    optimizer: Union[str, torch.optim.Optimizer] = "SGD",
    optimizer_kwargs: Optional[Dict[str, Any]] = None,
    schedule: str = "linear",
    out_dir: Union[str, os.PathLike, None] = None,
    save_every: Optional[int] = None,
    resume: Union[str, os.PathLike, None] = None,
    device: Union[str, torch.device, None] = None,
    seed: int = 0,
    *,
    schedule_kwargs: Optional[Dict[str, Any]] = None,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    swa_start: Optional[int] = None,
    swa_lr: Optional[float] = None,
    amp: Optional[bool] = None,
    channels_last: Optional[bool] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    batch_interval: Optional[float] = None,
    monitor: Optional[CurvatureMonitor] = None,
) -> TrainingHistory:
    """Train ``model`` on ``data`` for ``epochs`` epochs.

    Parameters
    ----------
    model : str or nn.Module
        A name of :func:`curvwidgets.models.names` (built after seeding with
        ``seed``, for the data's classes and channels; ``TinyTransformer``
        with ``context`` the length ``T`` of the data's token windows) or any
        module, trained in place.
    data : str, DataSet or (train, test)
        A name of :func:`curvwidgets.data.names` (loaded with defaults, sharded
        over the processes), a :class:`~curvwidgets.training.data.DataSet`, or a
        pair of re-iterables of ``(inputs, targets)`` batches (a
        ``set_epoch(epoch)`` method, where present, is called before each
        epoch). Under several processes a DataSet must be loaded with this
        process's ``rank`` and ``world_size``. As for the curvature operators
        (:mod:`~curvwidgets.curvature.batches`), ``inputs`` may be a tensor
        (``model(inputs)``), a tuple of tensors (``model(*inputs)``) or a
        mapping of names to tensors (``model(**inputs)``, e.g. ``input_ids``
        and ``attention_mask``), the samples along the first axis of each; the
        model may return its logits, a mapping with ``"logits"`` or an object
        with ``.logits``. With ``loss_fn=cw.ModelLoss()`` each batch is the
        inputs alone (the labels among them). A batch that cannot be read is
        a ``TypeError`` or ``ValueError`` naming ``data`` (for lists, the
        first batch is read before any work).
    epochs : int
        Total epochs, counting those of a resumed run.
    optimizer : str or torch.optim.Optimizer
        A name of :func:`curvwidgets.optim.names`, built with ``optimizer_kwargs``,
        or an optimiser over ``model``'s parameters.
    optimizer_kwargs : dict, optional
        Options of a named optimiser; :data:`curvwidgets.optim.DEFAULTS` fills
        in the rest (SGD: ``lr=0.05, momentum=0.9, weight_decay=5e-4``; the
        optimiser's class defaults beyond those). ``history.config["optimizer_kwargs"]``
        records the options used (for a given optimiser, its ``defaults``).
    schedule : str
        A name of :func:`curvwidgets.training.schedules.names`; the rate of
        every parameter group is ``initial rate * schedule(epoch)``. ``"linear"``
        is the paper's eq. 19.
    out_dir : path, optional
        Where ``history.json`` (rewritten after every epoch) and checkpoints go;
        created when the first file is written. That files can be created
        there is checked before any work.
    save_every : int, optional
        A checkpoint every this many epochs, and always after the last (default:
        only the last). Needs ``out_dir``.
    resume : path, optional
        A checkpoint file or a folder (its latest checkpoint): continue from
        there. The optimiser and its options (``optimizer_kwargs`` after the
        defaults are filled in, the learning rate included), seed, schedule
        and SWA settings must be those of the checkpoint's run, else a
        ``ValueError`` names each that differs; ``epochs`` may grow, which
        stretches the schedule (it is laid over ``epochs``).
    device : optional
        Default: the module's device, or for a named model this process's GPU
        (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU.
    seed : int
        Seeds model initialisation (named models), data order and augmentation,
        and the global torch generator (dropout).
    schedule_kwargs : dict, optional
        Options of the schedule (e.g. ``final_ratio`` for ``"linear"``).
    loss_fn : callable, optional
        ``loss_fn(logits, targets)``. Default: the data set's loss (:func:`curvwidgets.data.default_loss`:
        :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` for
        ``tinytext``, whose models such as ``TinyTransformer`` return logits
        ``(B, T, V)``), else ``nn.CrossEntropyLoss()``. The accuracies
        take the top outputs over axis 1, or over the loss's ``class_dim``
        where it has one (``SequenceCrossEntropyLoss``: the last axis); a
        sample with several positions counts the fraction of its positions
        predicted right (for token windows of one length: the per-token accuracy).
        Floating-point targets (regression) have no classes: the accuracies
        are NaN. A model that computes its own loss takes
        :class:`~curvwidgets.losses.ModelLoss`: training minimises the loss
        in the model's output (a ``TypeError`` naming ``model`` when it has
        none), the mean losses weight the batches by its ``count`` (by
        default their samples) and the accuracies are NaN; the optimisers
        take it except ``LanczosGGN``, which needs the loss of the outputs
        (a ``ValueError`` naming ``optimizer``).
    swa_start, swa_lr : optional
        Both or neither: an int in ``[1, epochs)`` and a rate > 0.
        Stochastic weight averaging (Izmailov et al. 2018, ``torch.optim.swa_utils``):
        the schedule runs over the first ``swa_start`` epochs and ends at
        ``swa_lr`` (``"linear"``: ``final_ratio = swa_lr / lr``), then the rate
        stays at ``swa_lr`` and the weights after each later epoch are
        averaged. At the end the averaged weights get fresh BatchNorm
        statistics (one pass over the training data) and are copied into
        ``model``; ``history.final`` holds their test figures.
    amp, channels_last : bool, optional
        bfloat16 autocast and channels-last memory format (of the model and of
        every 4-d input tensor); default on for CUDA, off on CPU (where
        results are then unaffected).
    progress, cancel
        The progress protocol: one event per epoch (``stage="train"``) with the
        history, and with SWA one more (``stage="swa"``) after the averaged
        weights are in place. A monitor sends one event (``stage="curvature"``,
        the history) after each measurement: see ``monitor``. Cancelling (checked every batch in one process,
        at the end of each epoch, agreed over ranks, in several) writes a
        checkpoint of the last finished epoch when ``out_dir`` is set and raises
        :class:`~curvwidgets.Cancelled` carrying the history.
    monitor : CurvatureMonitor, optional
        Measure the curvature during training (:mod:`~curvwidgets.training.monitor`):
        after every ``monitor.every``-th epoch (``unit="step"``: optimiser
        step, counted across epochs), and after the last,
        ``history.measurements`` gets a row with the ``step``, the fractional
        ``epoch``, the ``lr``, ``sharpness`` (the top eigenvalue, warm-started
        from the last measurement), ``gradient_overlap``, ``curvature_trace``
        and the measurement's cost; each epoch's row carries the epoch's last
        measurement (NaN in the epochs without one) and every row the
        optimiser's ``stability_threshold`` (:mod:`~curvwidgets.training.stability`:
        ``2 / lr``; ``(2 + 2 momentum) / lr`` for SGD with momentum, the
        default; NaN for adaptive optimisers). Each measurement sends a
        ``"curvature"`` event (``step`` measurements of ``total`` planned, the
        history); a cancel is honoured there. ``history.final["curvature_time_fraction"]``
        is the measurements' time over the training's (a step measurement's
        time is left out of its epoch's ``seconds``). The weights follow the
        same trajectory as without it, bit for bit; checkpoints keep its warm
        start and the table, so a resumed run measures as an uninterrupted one.
    batch_interval : float, optional
        Also send ``"batch"`` events within each epoch (one process only), at
        most one every ``batch_interval`` seconds of wall time and one after
        the epoch's last batch: ``step`` batches of ``total`` done (0 when
        the loader has no length), ``partial`` a :class:`BatchLosses` of every
        batch of the epoch so far. The losses stay on the device between two
        events and are read in one synchronisation. Default None: no such
        events. 0 sends one per batch (a synchronisation each).

    Returns
    -------
    TrainingHistory
        Per-epoch rows (``HISTORY_COLUMNS``), ``final``, ``checkpoints`` and
        ``model``.

    Raises
    ------
    ValueError, TypeError
        A bad argument, named in the message; empty training or test data; an
        ``out_dir`` that cannot be written; a ``resume`` whose settings
        differ. All are raised before the first epoch, with nothing written.
    FileNotFoundError, CheckpointError
        ``resume`` does not exist, or is not a readable curvwidgets checkpoint.
    TimeoutError
        ``WORLD_SIZE`` > 1 in the environment but the process group cannot be
        joined (see :func:`~curvwidgets.training.distributed.join_process_group`).
    TrainingDiverged
        When an epoch's training loss is NaN or infinite; the last good
        checkpoint is on disk (when ``out_dir`` is set) and named in the error.
        Any other error in the middle of an epoch also leaves the last finished
        epoch's checkpoint on disk before it propagates.
    """
    epochs = positive_int("epochs", epochs)
    seed = seed_value("seed", seed)
    progress, cancel = check_protocol(progress, cancel)
    if batch_interval is not None:
        non_negative("batch_interval", batch_interval)
    if save_every is not None:
        positive_int("save_every", save_every)
    if save_every is not None and out_dir is None:
        raise ValueError("save_every needs out_dir (where the checkpoints go)")
    swa_start, swa_lr = swa_settings(swa_start, swa_lr, epochs)
    optimizer_kwargs = optimizer_options(optimizer, optimizer_kwargs)
    schedule_kwargs = keyword_options("schedule_kwargs", schedule_kwargs)
    for name, value in (("amp", amp), ("channels_last", channels_last)):
        if value is not None:
            boolean(name, value)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(outputs, targets); got {type(loss_fn).__name__}")
    if monitor is not None and not isinstance(monitor, CurvatureMonitor):
        raise TypeError(f"monitor must be None or a cw.CurvatureMonitor; got {type(monitor).__name__}")
    out_dir = writable_folder(out_dir)
    rank, world = join_process_group()
    device = _device_of(model, device)
    checkpoint = load_checkpoint(resume, map_location=device) if resume is not None else None
    dataset = datasets.load(data, device=device, seed=seed, rank=rank, world_size=world) if isinstance(data, str) else data
    train_batches, test_batches = _loaders(dataset, rank, world)
    _require_batches(train_batches, test_batches, world, device, isinstance(loss_fn, ModelLoss))
    torch.manual_seed(seed)
    architecture = None  # how to rebuild a named model from its checkpoint (cw.load_trained)
    if isinstance(model, str):
        if not isinstance(dataset, datasets.DataSet):
            raise ValueError(f"data must be a name or a DataSet when model is a name ({model!r}), so that its classes "
                             "and channels are known; or pass a module from cw.models.create")
        architecture = {"name": models.canonical_name(model), "num_classes": dataset.num_classes,
                        "in_channels": dataset.input_shape[0]}
        if architecture["name"] == "TinyTransformer":  # its position embedding spans the data's windows (T,)
            architecture["options"] = {"context": dataset.input_shape[-1]}
        model = models.create(model, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0],
                              **architecture.get("options", {}))
    model = model.to(device)
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    channels_last = cuda if channels_last is None else channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn if loss_fn is not None else datasets.default_loss(dataset)
    optimizer_name, optimizer, optimizer_kwargs = _optimizer(optimizer, optimizer_kwargs, model, loss_fn)
    initial_rates = [group["lr"] for group in optimizer.param_groups]
    swa = _SWA(model, swa_start, swa_lr) if swa_start is not None else None
    if swa is not None and isinstance(schedule, str) and schedule.lower() in ("linear", "cosine"):
        if swa.lr > initial_rates[0]:
            raise ValueError(f"swa_lr ({swa.lr}) must not exceed the initial learning rate ({initial_rates[0]}): the "
                             f"{schedule!r} schedule decays to it")
        schedule_kwargs.setdefault("final_ratio", swa.lr / initial_rates[0])
    rates = schedules.create(schedule, swa.start if swa is not None else epochs, **schedule_kwargs)
    config = {"model": type(model).__name__, "architecture": architecture, "data": getattr(dataset, "name", "custom"),
              "validation": getattr(dataset, "validation", False),
              "data_options": dict(getattr(dataset, "options", {})), "epochs": epochs,
              "optimizer": optimizer_name, "optimizer_kwargs": _plain(optimizer_kwargs), "schedule": rates.name,
              "schedule_kwargs": _plain(rates.options), "seed": seed, "swa_start": swa_start, "swa_lr": swa_lr,
              "world_size": world, "device": str(device), "amp": amp,
              "monitor": monitor.to_config() if monitor is not None else None}
    measurer = _measurer(monitor, loss_fn, dataset)
    steps_per_epoch = len(train_batches) if hasattr(train_batches, "__len__") else None
    run = _Run(model, optimizer, rates, initial_rates, swa, TrainingHistory(config=config, model=model),
               out_dir if rank == 0 else None, measurer)
    if checkpoint is not None:
        run.restore(checkpoint, epochs, steps_per_epoch)
    monitoring = None if measurer is None else MonitorRun(measurer, run.history, epochs, steps_per_epoch, progress,
                                                          cancel if world == 1 else None)
    run.monitoring = monitoring
    if monitoring is not None:
        monitoring.prepare(model)  # the subset is read now, not in the middle of an epoch
    network = DistributedDataParallel(model, device_ids=[device.index] if cuda else None) if world > 1 else model
    try:
        for epoch in range(len(run.history), epochs):
            run.set_rate(epoch)
            for batches in (train_batches, test_batches):
                if hasattr(batches, "set_epoch"):
                    batches.set_epoch(epoch)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            if monitoring is not None:
                monitoring.start_epoch(epoch + 1, run.steps)
            began = time.perf_counter()
            batch_losses = (_BatchReporter(progress, batch_interval, epoch + 1, train_batches)
                            if progress is not None and batch_interval is not None and world == 1 else None)
            sums = _train_epoch(network, optimizer, loss_fn, train_batches, device, amp, channels_last,
                                cancel if world == 1 else None, batch_losses, run.step_taken)
            totals = all_reduce_sum(sums)  # loss * W, top-1 hits, targets scored, W, samples
            finite = bool(torch.isfinite(totals[0]))  # waits for the device: the epoch's work is done
            seconds = time.perf_counter() - began - (monitoring.seconds if monitoring is not None else 0.0)
            if totals[4] == 0:
                raise ValueError("data: the training batches hold no samples (each batch is empty)")
            if not finite:
                checkpoint = run.keep_last_good()
                raise TrainingDiverged(f"training loss became {totals[0].item()} in epoch {epoch + 1}; last good "
                                       f"checkpoint: {checkpoint or 'none (no out_dir, or no epoch finished)'}",
                                       epoch + 1, checkpoint)
            if swa is not None and epoch >= swa.start:
                swa.average(model)
            average_buffers(model)
            test = evaluate(network, loss_fn, test_batches, device, amp, channels_last)
            curvature = {} if monitoring is None else {**monitoring.end_epoch(model, run.steps, optimizer),
                                                       "stability_threshold": stability_threshold(optimizer)}
            run.history.rows.append({
                "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(totals[0] / totals[3]), "train_top1": float(totals[1] / totals[2]),
                "test_loss": test["loss"], "test_top1": test["top1"], "test_top5": test["top5"],
                "seconds": seconds, "images_per_second": float(totals[4]) / seconds,
                "peak_memory_bytes": float(_peak_memory(device)), **_weight_norms(model), **curvature})
            if monitor is not None:
                run.history.final["curvature_time_fraction"] = _curvature_fraction(run.history)
            run.epoch_finished(epochs, save_every)
            if monitoring is not None:
                monitoring.send()  # a cancel here keeps the epoch: its checkpoint is written (or held) already
            if world > 1 and any_rank(cancel is not None and cancel.is_set(), device):
                raise Cancelled(None, epoch + 1, "train")
            report(progress, cancel if world == 1 else None, "train", epoch + 1, epochs, partial=lambda: run.history)
        if swa is not None and not run.history.final:
            if hasattr(train_batches, "set_epoch"):  # the same batches for the BatchNorm update after a resume
                train_batches.set_epoch(epochs - 1)
            swa.finish(model, train_batches, BatchReader(loss_fn, device))
            test = evaluate(network, loss_fn, test_batches, device, amp, channels_last)
            run.history.final.update({"swa_test_loss": test["loss"], "swa_test_top1": test["top1"],
                                      "swa_test_top5": test["top5"], "swa_epochs_averaged": float(swa.averaged.n_averaged)})
            run.save()
            report(progress, cancel if world == 1 else None, "swa", 1, 1, partial=lambda: run.history)
    except Cancelled:
        run.keep_last_good()
        raise Cancelled(run.history, len(run.history), "train") from None
    except BaseException:
        run.keep_last_good()  # an error mid-epoch (out of memory, interrupt) still leaves the last finished epoch
        raise
    return run.history


class _Run:
    """The state of one training run that checkpoints hold, and the writing of its files."""

    def __init__(self, model, optimizer, rates, initial_rates, swa, history: TrainingHistory, out_dir,
                 measurer: Optional[CurvatureMeasurer] = None):
        self.model, self.optimizer, self.rates, self.initial_rates = model, optimizer, rates, initial_rates
        self.swa, self.history, self.measurer = swa, history, measurer
        self.out_dir = Path(out_dir) if out_dir is not None else None  # None on ranks other than 0
        self.last_good: Optional[Dict[str, Any]] = None  # the last finished epoch when it is not on disk
        self.steps = 0  # optimiser steps done in the run (a resumed run's included)
        self.monitoring: Optional[MonitorRun] = None  # measures after the steps of a step monitor

    def step_taken(self) -> None:
        """After each optimiser step: count it, and let a step monitor measure when due."""
        self.steps += 1
        if self.monitoring is not None and self.monitoring.monitor.unit == "step":
            self.monitoring.after_step(self.model, self.steps, self.optimizer)

    def set_rate(self, epoch: int) -> None:
        """Every group's rate for ``epoch``: its initial rate times the schedule, or ``swa_lr`` once SWA runs."""
        swa_rate = self.swa.lr if self.swa is not None and epoch >= self.swa.start else None
        for group, initial in zip(self.optimizer.param_groups, self.initial_rates):
            group["lr"] = swa_rate if swa_rate is not None else initial * self.rates(epoch)

    def state(self) -> Dict[str, Any]:
        """The checkpoint of the epochs finished so far."""
        return {"epoch": len(self.history), "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": {"name": self.rates.name, "epochs": self.rates.epochs, "options": _plain(self.rates.options)},
                "rng": _rng_state(self.model), "swa": self.swa.state() if self.swa is not None else None,
                "history": self.history.to_dict(), "config": self.history.config,
                "monitor": self.measurer.state() if self.measurer is not None else None, "steps": self.steps}

    def write(self, checkpoint: Dict[str, Any]) -> str:
        """Write ``checkpoint`` into ``out_dir``; the history inside it lists the file itself."""
        path = os.fspath(self.out_dir / checkpoint_name(checkpoint["epoch"]))
        if path not in self.history.checkpoints:
            self.history.checkpoints.append(path)
        checkpoint["history"]["checkpoints"] = list(self.history.checkpoints)
        save_checkpoint(checkpoint, self.out_dir)
        return path

    def save(self) -> None:
        """Write the checkpoint of the epochs finished so far and the history (rank 0 with ``out_dir`` only)."""
        if self.out_dir is not None:
            self.write(self.state())
            self.last_good = None
            self.history.save(self.out_dir / "history.json")

    def epoch_finished(self, epochs: int, save_every: Optional[int]) -> None:
        """Checkpoint when due; otherwise hold a CPU copy of the state for a cancel or divergence to write."""
        if self.out_dir is None:
            return
        finished = len(self.history)
        last = finished == epochs and self.swa is None  # with SWA the last checkpoint follows its finish
        if last or (save_every is not None and finished % save_every == 0):
            self.save()
        else:
            self.last_good = _cpu_copy(self.state())
            self.history.save(self.out_dir / "history.json")

    def keep_last_good(self) -> Optional[str]:
        """The checkpoint of the last finished epoch, written now if it is only held in memory."""
        finished = len(self.history)
        if self.out_dir is None or finished == 0:
            return None
        if self.last_good is not None and self.last_good["epoch"] == finished:
            self.write(self.last_good)
            self.last_good = None
        name = checkpoint_name(finished)
        return next((path for path in reversed(self.history.checkpoints) if Path(path).name == name), None)

    def restore(self, checkpoint: Dict[str, Any], epochs: int, steps_per_epoch: Optional[int] = None) -> None:
        """Continue from ``checkpoint``: model, optimiser, SWA weights, random states, history and step count.

        A checkpoint without a step count (written before it was kept) counts
        ``steps_per_epoch`` per finished epoch (0 without a length).
        """
        source = checkpoint["path"]
        for key, argument in RESUME_MUST_MATCH.items():
            saved, given = checkpoint["config"].get(key), self.history.config[key]
            if _plain(saved) != _plain(given):
                raise ValueError(f"resume: {argument}={given!r} differs from the checkpoint's run ({saved!r}, in "
                                 f"{source!r}); resume with the same {argument}")
        saved = _plain(checkpoint["config"].get("optimizer_kwargs") or {})
        differing = _differences(self.history.config["optimizer_kwargs"], saved)
        if differing:
            raise ValueError(f"resume: optimizer_kwargs differ from the checkpoint's run ({source!r}) in "
                             f"{differing}; a resumed run keeps its optimiser settings: resume with "
                             f"optimizer_kwargs={saved!r}")
        finished = int(checkpoint["epoch"])
        if finished > epochs:
            raise ValueError(f"resume: the checkpoint has {finished} epochs finished, more than epochs={epochs}")
        load_model_state(self.model, checkpoint["model"], source)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as error:
            raise ValueError(f"resume: the optimiser state in {source!r} does not fit this optimiser "
                             f"({type(self.optimizer).__name__}): {error}") from error
        if self.swa is not None:
            self.swa.restore(checkpoint["swa"])
        _set_rng_state(checkpoint["rng"], self.model)
        if self.measurer is not None:
            self.measurer.restore(checkpoint.get("monitor"), next(self.model.parameters()).device)
        steps = checkpoint.get("steps")
        valid = isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0
        self.steps = steps if valid else finished * (steps_per_epoch or 0)
        saved = TrainingHistory.from_dict(checkpoint["history"])
        self.history.rows[:] = saved.rows
        self.history.measurements[:] = saved.measurements
        self.history.final.update(saved.final)
        self.history.checkpoints[:] = [path for path in saved.checkpoints if path != source] + [source]
        if self.out_dir is not None:  # a cancel before the next checkpoint re-writes this one into out_dir
            self.last_good = {key: value for key, value in checkpoint.items() if key not in ("path", "format", "version")}


def _measurer(monitor: Optional[CurvatureMonitor], loss_fn, dataset) -> Optional[CurvatureMeasurer]:
    """The measurer of ``monitor`` on its data, or the data set's training split; None without a monitor."""
    if monitor is None:
        return None
    if monitor.data is None and not isinstance(dataset, datasets.DataSet):
        raise ValueError("monitor: cw.train was given batches, not a data set, so the monitor needs its own "
                         "measurement data: CurvatureMonitor(data=...) (fixed batches, no augmentation)")
    return CurvatureMeasurer(monitor, loss_fn, monitor.data if monitor.data is not None else dataset)


def _curvature_fraction(history: TrainingHistory) -> float:
    """The monitor's seconds over the training's: every measurement's (NaN-free sums) over the rows' so far.

    The measurements are those of the table (the rows of a history saved before it was kept).
    """
    measured = sum(row.get("curvature_seconds", 0.0) for row in history.measurements or history.rows
                   if row.get("curvature_seconds") == row.get("curvature_seconds"))
    return measured / sum(row["seconds"] for row in history.rows)


def _differences(given: Mapping[str, Any], saved: Mapping[str, Any]) -> str:
    """``"key (value given, value in the checkpoint), ..."`` over the keys whose values differ; empty if none."""
    def shown(options: Mapping[str, Any], key: str) -> str:
        return repr(options[key]) if key in options else "unset"

    return ", ".join(f"{key} ({shown(given, key)} given, {shown(saved, key)} in the checkpoint)"
                     for key in sorted(set(given) | set(saved))
                     if key not in given or key not in saved or given[key] != saved[key])


def _device_of(model: Union[str, nn.Module], device) -> torch.device:
    """``device``, else the module's device, else (a named model) this process's default device."""
    if device is not None:
        return device_value("device", device)
    if isinstance(model, nn.Module):
        return next((p.device for p in model.parameters()), torch.device("cpu"))
    return default_device()


def keyword_options(name: str, options: Any) -> Dict[str, Any]:
    """``options`` as a new dict (None: empty), or ``TypeError`` naming the argument unless it maps str keys."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise TypeError(f"{name} must be a dict of keyword arguments (str keys); got {options!r}")
    return dict(options)


def optimizer_options(optimizer: Any, options: Any) -> Dict[str, Any]:
    """The checked options a named optimiser is built with (``optim.DEFAULTS`` filled in); ``{}`` for a given one."""
    options = keyword_options("optimizer_kwargs", options)
    if isinstance(optimizer, str):
        optim.canonical_name(optimizer)  # an unknown name is an error about optimizer, not its options
        try:
            return optim.resolve_options(optimizer, **options)
        except (TypeError, ValueError) as error:
            raise type(error)(f"optimizer_kwargs: {error}") from None
    if isinstance(optimizer, torch.optim.Optimizer):
        if options:
            raise ValueError(f"optimizer_kwargs {sorted(options)} apply to an optimiser given by name; set them on "
                             f"the {type(optimizer).__name__} itself")
        return {}
    raise TypeError(f"optimizer must be a name of {optim.names()} or a torch.optim.Optimizer; "
                    f"got {type(optimizer).__name__}")


def _optimizer(optimizer, options: Dict[str, Any], model: nn.Module, loss_fn):
    """``(name, optimiser, settings)``: a named optimiser built with ``options``, or the given one and its settings.

    A given optimiser's settings are the plain values of its ``defaults`` (its
    constructor's hyperparameters), so that a resume can compare them.
    """
    if isinstance(optimizer, str):
        return optim.canonical_name(optimizer), optim.create(optimizer, model, loss_fn=loss_fn, **options), options
    own = {id(p) for p in model.parameters()}
    if not all(id(p) in own for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(f"optimizer: the {type(optimizer).__name__} holds parameters that are not the model's; "
                         "build it over model.parameters() (or pass its name)")
    plain = (bool, int, float, str, tuple, list, type(None))
    return type(optimizer).__name__, optimizer, {key: _plain(value) for key, value in optimizer.defaults.items()
                                                  if isinstance(value, plain)}


def swa_settings(start: Any, lr: Any, epochs: int) -> Tuple[Optional[int], Optional[float]]:
    """``(swa_start, swa_lr)`` checked together: both None, or an epoch in ``[1, epochs)`` and a rate > 0."""
    if start is None:
        if lr is not None:
            raise ValueError(f"swa_lr={lr!r} needs swa_start (the epoch from which the weights are averaged); set "
                             "both or neither")
        return None, None
    start = positive_int("swa_start", start)
    if start >= epochs:
        raise ValueError(f"swa_start must be an int in [1, epochs); got {start} with epochs={epochs}")
    if lr is None:
        raise ValueError("swa_lr must be a number > 0 when swa_start is set (the rate while averaging); got None")
    return start, positive("swa_lr", lr)


def writable_folder(out_dir: Any) -> Optional[Path]:
    """``out_dir`` as a Path, once a file could be created there (nothing is left behind), or None.

    The check creates an unnamed temporary file in ``out_dir``, or in its
    nearest existing parent when it does not exist yet.
    """
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path (str or os.PathLike); got {type(out_dir).__name__}")
    if not os.fspath(out_dir):
        raise ValueError("out_dir must name a folder; got '' (pass '.' for the current folder, None for no files)")
    return checked_folder("out_dir", Path(out_dir).expanduser())


def _loaders(dataset, rank: int, world: int) -> Tuple[Iterable, Iterable]:
    """The train and test loaders of ``dataset``, checked against this process's place in the group."""
    if not isinstance(dataset, datasets.DataSet) and not (isinstance(dataset, (tuple, list)) and len(dataset) == 2):
        raise TypeError(f"data must be a name of {datasets.names()}, a DataSet, or a pair (training batches, test "
                        f"batches); got {type(dataset).__name__}")
    train_batches, test_batches = (dataset.train, dataset.test) if isinstance(dataset, datasets.DataSet) else dataset
    for loader in (train_batches, test_batches):
        if isinstance(loader, datasets.TensorLoader) and (loader.rank, loader.world_size) != (rank, world):
            raise ValueError(f"data: a loader is sharded for rank {loader.rank} of {loader.world_size} but this is "
                             f"rank {rank} of {world}; load it with cw.data.load(..., rank={rank}, "
                             f"world_size={world}) or pass the data set's name")
    return train_batches, test_batches


def _require_batches(train_batches: Iterable, test_batches: Iterable, world: int, device: torch.device,
                     inputs_only: bool = False) -> None:
    """Refuse, before the first epoch, one-shot iterators, splits without a batch (on any process) and, in a
    list or tuple of batches, a first batch that cannot be read (``inputs_only``: a ``ModelLoss``'s batches)."""
    for split, batches in (("training", train_batches), ("test", test_batches)):
        if isinstance(batches, Iterator):
            raise TypeError(f"data: the {split} batches are a one-shot iterator ({type(batches).__name__}), empty "
                            "after the first epoch; pass a re-iterable such as a list or a DataLoader")
        if isinstance(batches, (list, tuple)) and batches:  # a loader is not read here
            split_batch(batches[0], inputs_only, f"data (the {split} batches)")
        empty = _is_empty(batches)
        if world > 1:
            empty = any_rank(empty, device)
        if empty:
            where = " on at least one process" if world > 1 else ""
            raise ValueError(f"data: the {split} batches are empty{where}; training needs at least one training "
                             "and one test sample")


def _is_empty(batches: Iterable) -> bool:
    """Whether ``batches`` yields no batch: by its length, or, without one, by asking for the first batch."""
    try:
        return len(batches) == 0
    except TypeError:
        return next(iter(batches), None) is None


def _train_epoch(network, optimizer, loss_fn, batches, device, amp, channels_last, cancel,
                 batch_losses: Optional[_BatchReporter] = None,
                 step_taken: Optional[Callable[[], None]] = None) -> torch.Tensor:
    """One pass over ``batches``; on-device sums ``(loss * W, correct, scored, W, n)``, synchronised once at the end.

    ``W`` is what the batches count in the mean loss (their samples ``n``, or a
    ``ModelLoss``'s count: :meth:`BatchReader.weight`); ``correct`` are the
    top-1 hits among the ``scored`` targets (not the loss's ``ignore_index``;
    NaN without class targets). ``batch_losses``, when given, receives every
    batch's loss (``"batch"`` events); ``step_taken`` is called after every
    optimiser step (a step monitor measures there), outside autocast.

    An optimiser that needs the mini-batch (its step synchronises anyway) has
    its loss checked before every step: a non-finite one ends the epoch with a
    NaN sum instead of reaching the curvature products.
    """
    network.train()
    reader = BatchReader(loss_fn, device, channels_last, "data (the training batches)")
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    scores = torch.zeros(2, dtype=torch.float64, device=device)  # top-1 hits, targets scored
    weights, seen = 0.0, 0  # summed on the host: no device work per batch
    wants_batch = isinstance(optimizer, optim.CurvatureOptimizer)
    for number, batch in enumerate(batches):
        if cancel is not None and cancel.is_set():
            raise Cancelled(None, 0, "train")
        inputs, targets = reader.batch(batch)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp), _first_batch_names_data(number, inputs, targets):
            loss, outputs = reader.loss(network, inputs, targets)
        if wants_batch and not bool(torch.isfinite(loss)):
            return _epoch_sums(loss_sum + float("nan"), scores, weights + 1, seen + 1)
        loss.backward()
        if wants_batch:
            optimizer.set_batch(inputs, targets)
        optimizer.step()
        weight = reader.weight(inputs, targets)
        loss_sum += reader.weighted(loss, weight)
        top1, _, scored = reader.hits(outputs.detach(), targets, 1)
        scores += torch.stack([top1, scored])
        weights, seen = weights + weight, seen + len(targets)
        if batch_losses is not None:
            batch_losses.add(loss, weight)
        if step_taken is not None:
            step_taken()
    if batch_losses is not None:
        batch_losses.send()
    return _epoch_sums(loss_sum, scores, weights, seen)


def _epoch_sums(loss_sum: torch.Tensor, scores: torch.Tensor, weights: float, seen: int) -> torch.Tensor:
    """``(loss * W, top-1 hits, targets scored, W, n)`` as one float64 tensor on the device of ``loss_sum``."""
    counts = torch.tensor([weights, seen], dtype=torch.float64, device=loss_sum.device)
    return torch.cat([loss_sum[None], scores, counts])


@dataclass(frozen=True)
class BatchLosses:
    """The partial result of a ``"batch"`` event of :func:`train`: the losses of one epoch's batches so far.

    Attributes
    ----------
    epoch : int
        The epoch in progress, 1-based.
    losses : tuple of float
        The mean loss of each batch done, in order: the loss the optimiser
        stepped on (before the step). Their mean weighted by ``sizes`` is,
        once the epoch ends, its ``train_loss``.
    sizes : tuple of int or float
        Samples in each of those batches (for a ``ModelLoss``, what its
        ``count`` gives, by default the samples).
    batches : int
        Batches in the whole epoch; 0 when the loader has no length.
    """

    epoch: int
    losses: Tuple[float, ...]
    sizes: Tuple[float, ...]
    batches: int


class _BatchReporter:
    """Sends the ``"batch"`` events of one epoch; losses wait on the device until an event reads them."""

    def __init__(self, progress: ProgressCallback, interval: float, epoch: int, batches: Iterable):
        self.progress, self.interval, self.epoch = progress, interval, epoch
        self.total = len(batches) if hasattr(batches, "__len__") else 0
        self.losses: Tuple[float, ...] = ()
        self.sizes: Tuple[float, ...] = ()
        self.pending: list[torch.Tensor] = []  # detached 0-d losses not read yet
        self.last = time.perf_counter()

    def add(self, loss: torch.Tensor, size: float) -> None:
        """Keep one batch's loss (no synchronisation); send an event when ``interval`` seconds have passed."""
        self.pending.append(loss.detach())
        self.sizes += (size,)
        if time.perf_counter() - self.last >= self.interval:
            self.send()

    def send(self) -> None:
        """Read the pending losses in one transfer and send the epoch's losses so far."""
        if self.pending:
            self.losses += tuple(torch.stack(self.pending).tolist())
            self.pending.clear()
            self.progress(ProgressEvent("batch", len(self.losses), self.total,
                                        BatchLosses(self.epoch, self.losses, self.sizes, self.total)))
        self.last = time.perf_counter()


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, batches: Iterable, device: torch.device, amp: bool = False,
             channels_last: bool = False) -> Dict[str, float]:
    """Mean loss, top-1 and top-5 accuracy of ``model`` (eval mode) over ``batches``, summed over ranks.

    Batches are read as :func:`train` reads them (:class:`~curvwidgets.training.batches.BatchReader`):
    the loss is the mean over what the batches count (samples, or a ``ModelLoss``'s count), the
    accuracies are per target scored (a sample's class, or each token of a sequence; not those equal to
    the loss's ``ignore_index``) and NaN without class targets (a ``ModelLoss``, floating-point targets).
    ``amp``: bf16 autocast; ``channels_last``: 4-d inputs converted to that layout (for a channels-last model).
    """
    was_training = model.training
    model.eval()
    reader = BatchReader(loss_fn, device, channels_last)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * W, top-1, top-5, targets scored
    weights, seen = 0.0, 0
    for number, batch in enumerate(batches):
        inputs, targets = reader.batch(batch)
        with _autocast(device, amp), _first_batch_names_data(number, inputs, targets):
            loss, outputs = reader.loss(model, inputs, targets)
        weight = reader.weight(inputs, targets)
        sums += torch.stack([reader.weighted(loss, weight), *reader.hits(outputs, targets, 5)])
        weights, seen = weights + weight, seen + len(targets)
    model.train(was_training)
    sums = all_reduce_sum(torch.cat([sums, torch.tensor([weights, seen], dtype=torch.float64, device=device)]))
    if sums[5] == 0:
        raise ValueError("evaluate: the batches hold no samples, so there is no loss or accuracy to report")
    return {"loss": float(sums[0] / sums[4]), "top1": float(sums[1] / sums[3]), "top5": float(sums[2] / sums[3])}


class _SWA:
    """Stochastic weight averaging over the epochs from ``start`` on, with ``torch.optim.swa_utils``."""

    def __init__(self, model: nn.Module, start: int, lr: float):
        self.start, self.lr = start, lr
        self.averaged = torch.optim.swa_utils.AveragedModel(model)

    def average(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state(self) -> Dict[str, Any]:
        return {"model": self.averaged.state_dict()}

    def restore(self, state: Optional[Dict[str, Any]]) -> None:
        if state is None:
            raise ValueError("resume: the checkpoint holds no SWA weights")
        self.averaged.load_state_dict(state["model"])

    def finish(self, model: nn.Module, train_batches: Iterable, reader: BatchReader) -> None:
        """BatchNorm statistics for the averaged weights (averaged over ranks), then copy them into ``model``.

        ``reader`` reads the batches' inputs, of any structure (:func:`~curvwidgets.training.batches.update_batch_norm`).
        """
        update_batch_norm(self.averaged.module, train_batches, reader)
        average_buffers(self.averaged.module)
        model.load_state_dict(self.averaged.module.state_dict())


def _first_batch_names_data(number: int, inputs: Inputs, targets: torch.Tensor):
    """For the first batch of a pass (``number == 0``), errors of the model or loss on it name ``data``.

    A model or loss that cannot take the data fails on the first batch: its
    error becomes a ``ValueError`` with the batch's shapes
    (:func:`~curvwidgets.curvature.data.naming_data`). Later batches run bare.
    """
    return naming_data(inputs, targets) if number == 0 else contextlib.nullcontext()


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _rng_state(model: nn.Module) -> Dict[str, Any]:
    """The global CPU generator and, for a model on CUDA, its device's generator (dropout masks)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: Dict[str, Any], model: nn.Module) -> None:
    torch.set_rng_state(state["torch"].cpu())
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _cpu_copy(value: Any) -> Any:
    """``value`` with every tensor copied to the CPU (a snapshot that costs no device memory)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(item) for item in value)
    return value


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


@torch.no_grad()
def _weight_norms(model: nn.Module) -> Dict[str, float]:
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    return {"weight_l2": float(flat.norm()), "weight_linf": float(flat.abs().max())}


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the config survives JSON and ``weights_only`` loading alike."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
