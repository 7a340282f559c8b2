"""The training loop: ``cw.train`` with per-epoch statistics, atomic checkpoints and exact resume.

One code path serves one process and ``torchrun``: when ``torch.distributed``
is initialised the model is wrapped in ``DistributedDataParallel``, each rank
takes its slice of every global batch, statistics are summed over ranks, and
only rank 0 writes files.

Resuming is exact on CPU because nothing in an epoch depends on state that a
checkpoint does not hold: the data order and augmentation draws come from
``(seed, epoch)`` (``TensorLoader.set_epoch``), the learning rate is a
function of the epoch, and the checkpoint stores model, optimiser, the
averaged SWA weights and the global torch random state (dropout).
"""

from __future__ import annotations

import contextlib
import copy
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..progress import Cancelled, CancelToken, ProgressCallback, report
from ..results import TrainingHistory
from . import data as datasets
from . import models, optim, schedules
from .checkpoint import load_checkpoint, load_model_state, save_checkpoint

__all__ = ["train", "TrainingDiverged"]


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
    schedule_kwargs: Optional[Dict[str, Any]] = None,
    out_dir: Union[str, os.PathLike, None] = None,
    save_every: Optional[int] = None,
    resume: Union[str, os.PathLike, None] = None,
    device: Union[str, torch.device, None] = None,
    seed: int = 0,
    *,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    swa_start: Optional[int] = None,
    swa_lr: Optional[float] = None,
    amp: Optional[bool] = None,
    channels_last: Optional[bool] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> TrainingHistory:
    """Train ``model`` on ``data`` for ``epochs`` epochs.

    Parameters
    ----------
    model : str or nn.Module
        A name of :func:`curvwidgets.models.names` (built after seeding with
        ``seed``, for the data's classes and channels) or any module, trained in place.
    data : str, DataSet or (train, test)
        A name of :func:`curvwidgets.data.names` (loaded with defaults), a
        :class:`~curvwidgets.training.data.DataSet`, or a pair of re-iterables of
        ``(inputs, targets)`` batches (a ``set_epoch(epoch)`` method, where
        present, is called before each epoch).
    epochs : int
        Total epochs, counting those of a resumed run.
    optimizer : str or torch.optim.Optimizer
        A name of :func:`curvwidgets.optim.names`, built with ``optimizer_kwargs``
        (default ``lr=0.05, momentum=0.9, weight_decay=5e-4`` for SGD), or an
        optimiser over ``model``'s parameters.
    schedule : str
        A name of :func:`curvwidgets.training.schedules.names`; the rate of
        every parameter group is ``initial rate * schedule(epoch)``. ``"linear"``
        is the paper's eq. 19.
    out_dir : path, optional
        Where ``history.json`` (rewritten after every epoch) and checkpoints go.
    save_every : int, optional
        A checkpoint every this many epochs, and always after the last (default:
        only the last). Needs ``out_dir``.
    resume : path, optional
        A checkpoint file or a folder (its latest checkpoint): continue from there.
    device : optional
        Default: the module's device, or CUDA when available for a named model.
    seed : int
        Seeds model initialisation (named models), data order and augmentation,
        and the global torch generator (dropout).
    loss_fn : callable, optional
        Default ``nn.CrossEntropyLoss()``.
    swa_start, swa_lr : optional
        Stochastic weight averaging (Izmailov et al. 2018, ``torch.optim.swa_utils``):
        the schedule runs over the first ``swa_start`` epochs and ends at
        ``swa_lr`` (``"linear"``: ``final_ratio = swa_lr / lr``), then the rate
        stays at ``swa_lr`` and the weights after each later epoch are
        averaged. At the end the averaged weights get fresh BatchNorm
        statistics (one pass over the training data) and are copied into
        ``model``; ``history.final`` holds their test figures.
    amp, channels_last : bool, optional
        bfloat16 autocast and channels-last memory format; default on for CUDA,
        off on CPU (where results are then unaffected).
    progress, cancel
        The progress protocol: one event per epoch (``stage="train"``) with the
        history, and with SWA one more (``stage="swa"``) after the averaged
        weights are in place; cancelling (checked every batch) writes a checkpoint of the
        last finished epoch when ``out_dir`` is set and raises
        :class:`~curvwidgets.Cancelled` carrying the history.

    Returns
    -------
    TrainingHistory
        Per-epoch rows (``HISTORY_COLUMNS``), ``final``, ``checkpoints`` and
        ``model``.

    Raises
    ------
    TrainingDiverged
        When an epoch's training loss is NaN or infinite; the last good
        checkpoint is on disk (when ``out_dir`` is set) and named in the error.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1; got {epochs!r}")
    if save_every is not None and (isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1):
        raise ValueError(f"save_every must be an int >= 1; got {save_every!r}")
    if save_every is not None and out_dir is None:
        raise ValueError("save_every needs out_dir (where the checkpoints go)")
    rank, world = _distributed()
    device = _device(model, device)
    dataset = datasets.load(data, device=device, seed=seed, rank=rank, world_size=world) if isinstance(data, str) else data
    train_batches, test_batches = (dataset.train, dataset.test) if isinstance(dataset, datasets.DataSet) else dataset
    torch.manual_seed(seed)
    if isinstance(model, str):
        model = models.create(model, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0])
    model = model.to(device)
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    if channels_last if channels_last is not None else cuda:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    optimizer_kwargs = dict(optimizer_kwargs or {})
    if isinstance(optimizer, str):
        if optimizer.lower() == "sgd":
            optimizer_kwargs = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, **optimizer_kwargs}
        optimizer_name, optimizer = optimizer, optim.create(optimizer, model, loss_fn=loss_fn, **optimizer_kwargs)
    elif isinstance(optimizer, torch.optim.Optimizer):
        optimizer_name = type(optimizer).__name__
    else:
        raise TypeError(f"optimizer must be a name of {optim.names()} or a torch.optim.Optimizer; "
                        f"got {type(optimizer).__name__}")
    initial_rates = [group["lr"] for group in optimizer.param_groups]
    swa = _SWA(model, swa_start, swa_lr, epochs, initial_rates[0]) if swa_start is not None else None
    schedule_kwargs = dict(schedule_kwargs or {})
    if swa is not None and schedule.lower() in ("linear", "cosine"):
        schedule_kwargs.setdefault("final_ratio", swa.lr / initial_rates[0])
    rates = schedules.create(schedule, swa.start if swa is not None else epochs, **schedule_kwargs)
    config = {"model": type(model).__name__, "data": getattr(dataset, "name", "custom"), "epochs": epochs,
              "optimizer": optimizer_name, "optimizer_kwargs": _plain(optimizer_kwargs), "schedule": rates.name,
              "schedule_kwargs": _plain(rates.options), "seed": seed, "swa_start": swa_start, "swa_lr": swa_lr,
              "world_size": world, "device": str(device), "amp": amp}
    history = TrainingHistory(config=config, model=model)
    start = 0
    if resume is not None:
        start = _restore(load_checkpoint(resume, map_location=device), model, optimizer, swa, history, epochs)
    network = DistributedDataParallel(model) if world > 1 else model
    writer = out_dir is not None and rank == 0
    last_good: Optional[Dict[str, Any]] = None

    def state(epoch: int) -> Dict[str, Any]:
        return {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": {"name": rates.name, "epochs": rates.epochs, "options": _plain(rates.options)},
                "rng": _rng_state(), "swa": swa.state() if swa is not None else None,
                "history": history.to_dict(), "config": config}

    def write(checkpoint: Dict[str, Any]) -> None:
        path = os.fspath(save_checkpoint(checkpoint, out_dir))
        if path not in history.checkpoints:
            history.checkpoints.append(path)

    def saved(epoch: int) -> Optional[str]:
        return next((path for path in history.checkpoints if Path(path).name == f"checkpoint-{epoch:05d}.pt"), None)

    def keep_last_good(epoch: int) -> Optional[str]:
        if not writer or epoch == 0:
            return None
        if saved(epoch) is None and last_good is not None:
            write(last_good)
        return saved(epoch)

    try:
        for epoch in range(start, epochs):
            rate = swa.lr if swa is not None and epoch >= swa.start else None
            for group, initial in zip(optimizer.param_groups, initial_rates):
                group["lr"] = rate if rate is not None else initial * rates(epoch)
            for batches in (train_batches, test_batches):
                if hasattr(batches, "set_epoch"):
                    batches.set_epoch(epoch)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            began = time.perf_counter()
            loss_sum, correct, seen = _train_epoch(network, optimizer, loss_fn, train_batches, device, amp,
                                                   model_is_channels_last(model), cancel)
            totals = _all_reduce(torch.stack([loss_sum, correct, seen]))
            finite = bool(torch.isfinite(totals[0]))  # waits for the device: the epoch's work is done
            seconds = time.perf_counter() - began
            if not finite:
                checkpoint = keep_last_good(epoch)
                raise TrainingDiverged(f"training loss became {totals[0].item()} in epoch {epoch + 1}; last good "
                                       f"checkpoint: {checkpoint or 'none (no out_dir, or no epoch finished)'}",
                                       epoch + 1, checkpoint)
            if swa is not None and epoch >= swa.start:
                swa.average(model)
            test = evaluate(network, loss_fn, test_batches, device, amp)
            history.rows.append({
                "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                "train_loss": float(totals[0] / totals[2]), "train_top1": float(totals[1] / totals[2]),
                "test_loss": test["loss"], "test_top1": test["top1"], "test_top5": test["top5"],
                "seconds": seconds, "images_per_second": float(totals[2]) / seconds,
                "peak_memory_bytes": float(_peak_memory(device)), **_weight_norms(model)})
            finished = epoch + 1
            if writer:
                if finished == epochs and swa is None or (save_every is not None and finished % save_every == 0):
                    write(state(finished))
                    last_good = None
                else:  # held until the next checkpoint, for a cancel or a divergence in between
                    last_good = copy.deepcopy(state(finished))
                history.save(Path(out_dir) / "history.json")
            report(progress, cancel, "train", finished, epochs, partial=lambda: history)
        if swa is not None and len(history.rows) == epochs and not history.final:
            history.final.update(swa.finish(model, network, loss_fn, train_batches, test_batches, device, amp))
            if writer:
                write(state(epochs))
                history.save(Path(out_dir) / "history.json")
            report(progress, cancel, "swa", 1, 1, partial=lambda: history)
    except Cancelled:
        keep_last_good(len(history.rows))
        raise Cancelled(history, len(history.rows), "train") from None
    return history


def model_is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are in channels-last layout (inputs are then converted too)."""
    return any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in model.parameters())


def _train_epoch(network, optimizer, loss_fn, batches, device, amp, channels_last, cancel):
    """One pass over ``batches``; returns on-device sums (loss * n, correct, n), synchronised once at the end."""
    network.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = torch.zeros((), dtype=torch.float64, device=device)
    wants_batch = isinstance(optimizer, optim.CurvatureOptimizer)
    for inputs, targets in batches:
        if cancel is not None and cancel.is_set():
            raise Cancelled(None, 0, "train")
        inputs, targets = _to(inputs, targets, device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            outputs = network(inputs)
            loss = loss_fn(outputs, targets)
        loss.backward()
        if wants_batch:
            optimizer.set_batch(inputs, targets)
        optimizer.step()
        count = len(targets)
        loss_sum += loss.detach().double() * count
        correct += (outputs.detach().argmax(dim=1) == targets).sum()
        seen += count
    return loss_sum, correct, seen


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, batches: Iterable, device: torch.device, amp: bool = False) -> Dict[str, float]:
    """Mean loss, top-1 and top-5 accuracy of ``model`` (eval mode) over ``batches``, summed over ranks."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss * n, top-1, top-5, n
    channels_last = model_is_channels_last(model.module if isinstance(model, DistributedDataParallel) else model)
    for inputs, targets in batches:
        inputs, targets = _to(inputs, targets, device, channels_last)
        with _autocast(device, amp):
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
        top = outputs.topk(min(5, outputs.shape[1]), dim=1).indices
        hits = top == targets[:, None]
        sums += torch.stack([loss.double() * len(targets), hits[:, 0].sum(), hits.any(dim=1).sum(),
                             torch.tensor(len(targets), device=device)]).double()
    model.train(was_training)
    sums = _all_reduce(sums)
    count = sums[3].clamp(min=1)
    return {"loss": float(sums[0] / count), "top1": float(sums[1] / count), "top5": float(sums[2] / count)}


class _SWA:
    """Stochastic weight averaging over the epochs from ``start`` on, with ``torch.optim.swa_utils``."""

    def __init__(self, model: nn.Module, start: int, lr: Optional[float], epochs: int, initial_lr: float):
        if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start < epochs:
            raise ValueError(f"swa_start must be an int in [1, epochs); got {start!r} with epochs={epochs}")
        if lr is None or not lr > 0:
            raise ValueError(f"swa_lr must be a positive float when swa_start is set; got {lr!r}")
        self.start, self.lr = start, float(lr)
        self.averaged = torch.optim.swa_utils.AveragedModel(model)

    def average(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state(self) -> Dict[str, Any]:
        return {"model": self.averaged.state_dict()}

    def restore(self, state: Dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["model"])

    def finish(self, model, network, loss_fn, train_batches, test_batches, device, amp) -> Dict[str, float]:
        # update_bn takes the first element of each (inputs, targets) batch
        """BatchNorm statistics for the averaged weights, copied into ``model``; their test figures."""
        torch.optim.swa_utils.update_bn(train_batches, self.averaged.module, device=device)
        model.load_state_dict(self.averaged.module.state_dict())
        test = evaluate(network, loss_fn, test_batches, device, amp)
        return {"swa_test_loss": test["loss"], "swa_test_top1": test["top1"], "swa_test_top5": test["top5"],
                "swa_epochs_averaged": float(self.averaged.n_averaged)}


def _restore(checkpoint, model, optimizer, swa, history, epochs) -> int:
    """Load a checkpoint into the run; returns the number of epochs it had finished."""
    load_model_state(model, checkpoint["model"], checkpoint["path"])
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, KeyError) as error:
        raise ValueError(f"resume: the optimiser state in {checkpoint['path']!r} does not fit this optimiser "
                         f"({type(optimizer).__name__}): {error}") from error
    if (swa is None) != (checkpoint.get("swa") is None):
        raise ValueError(f"resume: {checkpoint['path']!r} was {'not ' if checkpoint.get('swa') is None else ''}"
                         f"written by an SWA run; pass the same swa_start")
    if swa is not None:
        swa.restore(checkpoint["swa"])
    rng = checkpoint["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    finished = int(checkpoint["epoch"])
    if finished > epochs:
        raise ValueError(f"resume: the checkpoint has {finished} epochs finished, more than epochs={epochs}")
    saved = TrainingHistory.from_dict(checkpoint["history"])
    history.rows[:] = saved.rows
    history.checkpoints[:] = saved.checkpoints
    return finished


def _distributed() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    if _distributed()[1] > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


def _device(model, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(model, nn.Module):
        parameter = next(model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to(inputs: torch.Tensor, targets: torch.Tensor, device: torch.device, channels_last: bool):
    inputs = inputs.to(device, non_blocking=True)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, targets.to(device, non_blocking=True)


def _autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


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
