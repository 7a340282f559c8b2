"""Loss and accuracy of a model along directions in weight space: eigenvectors, random or any vector.

The paper's local loss landscape (section 6.1, Figures 8 to 11): the train
and test loss and accuracy at ``w + t v`` for ``t`` in ``[-dist, dist]``, for
unit eigenvectors ``v`` of the Hessian or GGN picked by their Ritz values (the
largest, the most negative, those nearest zero), for comparison along random
Gaussian directions or the normalised ones of Li et al. (2018) (filter, layer,
weight, dfilter, dlayer; biases and BatchNorm parameters zeroed or moved by
their own values; optionally the BatchNorm running statistics as well, their
``dir_type="states"``), and over a plane ``w + a v_0 + b v_1`` of two
directions. The directions are made in :mod:`curvwidgets.directions` (their
names are re-exported here).

The model itself is never written to: every point is evaluated with
``torch.func.functional_call`` on detached copies, several points per pass
over the data where that is faster (``torch.func.vmap`` over stacked
parameter sets), and the ``training`` flags and any module attribute touched
are put back even after an error or a cancel.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._validate import (boolean, check_cancel, check_progress, choice, device_value, positive, positive_int,
                        type_name)
from .curvature.batches import Inputs, as_inputs, concatenate, model_arguments, moved, outputs_reader
from .curvature.data import naming_data, split_batch
from .curvature.fingerprint import check_same_weights, fingerprint
from .curvature.output_hessian import counted_weight, reduction_of
from .curvature.params import ParameterLayout, ParamsLike, select_parameters
from .progress import CancelToken, ProgressCallback, report
from .directions import (NORMS, ONE_AXIS_OPTIONS, Direction, _running_statistics, _variance_eps, eigen_directions,
                         random_directions)
from ._landscape_passes import CANDIDATE_POINTS, PassPlanner
from .losses import ModelLoss, SequenceCrossEntropyLoss
from .results import Fingerprint, Landscape

__all__ = ["Direction", "eigen_directions", "random_directions", "loss_landscape", "BN_OPTIONS", "NORMS",
           "ONE_AXIS_OPTIONS"]

#: How BatchNorm is treated at every point: running statistics as trained, or recomputed for the new weights.
BN_OPTIONS = ("keep", "recompute")


def loss_landscape(
    model: nn.Module,
    data: Any,
    directions: Sequence[Union[Direction, torch.Tensor, np.ndarray]],
    dist: float = 0.25,
    n_points: int = 21,
    *,
    plane: bool = False,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    params: ParamsLike = None,
    bn: str = "keep",
    points_per_pass: Optional[int] = None,
    samples_per_pass: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    allow_other_weights: bool = False,
    meta: Optional[Mapping[str, Any]] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Landscape:
    """Loss and accuracy at ``w + t v`` along each direction (or over the plane of two).

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode; never modified.
    data : DataSet, (train, test) pair, or re-iterable of (inputs, targets)
        A :class:`~curvwidgets.training.data.DataSet` gives train (without
        augmentation) and test metrics; a pair gives both; a single iterable
        gives the train metrics only. Inputs may be a tensor, a tuple or a
        mapping of tensors, outputs have ``.logits``, as for the operators
        (:mod:`~curvwidgets.curvature.batches`).
    directions : sequence of Direction, or of flat vectors of length P
        From :func:`eigen_directions`, :func:`random_directions`, or any
        vector over the selected parameters (labelled ``"vector 1"``...).
        A direction with :attr:`Direction.states` (``random_directions(...,
        states=True)``) moves the BatchNorm running statistics it names as
        well: at ``w + t v`` the buffers are ``b + t s`` (over a plane
        ``b + a s_0 + b s_1``), the other directions' part on them being
        zero. A running variance made negative there (``running_var + eps
        < 0``: with Li et al.'s ``s = running_var``, at ``t < -1``) is used
        as it is, as their code does: BatchNorm's square root is NaN, so is
        the loss, and the point is reported as not finite (the warning
        below); ``meta["negative_variance_points"]`` counts those points.
    dist : float, default: 0.25
        ``t`` runs over ``n_points`` evenly spaced values in ``[-dist, dist]``.
    n_points : int, default: 21
        Points per line (per axis of a plane); at least 2.
    plane : bool, default: False
        Two directions spanning an ``n_points x n_points`` grid, instead of a line each.
    loss_fn : callable, optional
        Default: the data set's (:func:`curvwidgets.data.default_loss`:
        :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` for
        ``tinytext``), else ``nn.CrossEntropyLoss()``. The metric is the loss as defined,
        over the whole split as one batch: the mean over all samples (batches
        weighted by what the loss counts, so ``ignore_index`` and class
        ``weight=`` are honoured, and ignored samples do not count in the
        accuracy), or for ``reduction="sum"`` the sum over all samples. A
        plain function is taken as a mean over its batch; one that sums says
        so with ``fn.reduction = "sum"``.
    params : optional
        Which parameters the directions move (as for :class:`~curvwidgets.Hessian`).
    bn : {"keep", "recompute"}, default: "keep"
        ``"keep"``: BatchNorm uses the running statistics as trained.
        ``"recompute"``: at every point the running statistics are first
        recomputed with one pass over the training data (cumulative average,
        as ``torch.optim.swa_utils.update_bn``), then the point is evaluated;
        one point at a time. Not with directions that move the running
        statistics (``states``), which it would overwrite.
    points_per_pass : int, optional
        Points evaluated together in one pass (``vmap`` over stacked
        parameter sets; memory grows with it). Default: 1 or 8, timed with
        ``samples_per_pass`` (one at a time where the model does not vmap);
        always 1 with ``bn="recompute"``.
    samples_per_pass : int, optional
        Each split's batches are read as one stream of samples and evaluated
        in pieces of this many (slices of a batch, or the end of one joined to
        the start of the next); the metrics are the same (pieces are weighted
        by what the loss counts). Default: timed with ``points_per_pass`` on
        the sweep's own first passes: 32, 128 or 512 point-samples per pass
        (one point on pieces of 32, 128 or 512 samples; 8 points on 16 or
        64), tried in that order, a size left out once the one before it
        stops gaining; the fastest per point and sample runs the rest. Which
        is fastest depends on the model and the CPU's caches more than on the
        batch the data came in (on one CPU a small CNN ran 1.5x faster per
        sample in pieces of 32 than of 128 or 512, an MLP 2x slower). The
        timing is of work the sweep needs anyway; ``meta["pass_timing"]``
        gives the seconds per point-sample of each shape timed
        (``"points x samples"``) and its ``cost``, the seconds the slower
        shapes took beyond the chosen one. With ``bn="recompute"``, whole
        batches. A batch whose inputs and targets differ in length (samples
        not both in dimension 0) is evaluated whole.
        ``meta["points_per_pass"]`` and ``meta["samples_per_pass"]`` (None:
        whole batches) record the shape the sweep ended with.
    device : optional
        Default: the model's device.
    allow_other_weights : bool, default: False
        Walk along eigenvectors whose :attr:`Direction.fingerprint` is not
        the model's (computed on another checkpoint or run, on weights
        changed since, or over another ``params`` selection); without it,
        :class:`~curvwidgets.OtherWeightsError`. The labels of such directions
        are recorded in ``meta["directions_of_other_weights"]``.
    meta : mapping, optional
        Extra metadata to record (model name, checkpoint, spectrum file...).
    progress, cancel
        The progress protocol: an event with ``step=0`` before the first pass
        and one after every pass (``stage="landscape"``,
        ``step`` = points done, the partial :class:`~curvwidgets.results.Landscape`
        whose ``computed`` mask marks the points done, NaN at the others); a
        cancel raises :class:`~curvwidgets.Cancelled` carrying it.

    Returns
    -------
    Landscape
        ``kind="line"`` with metrics of shape ``(len(directions), n_points)``,
        or ``kind="plane"`` with ``(n_points, n_points)``. The accuracy is NaN
        where the targets are not class indices of the outputs (a regression
        loss such as MSE). ``meta["weights_fingerprint"]`` records the model's
        :func:`~curvwidgets.fingerprint`; ``meta["not_finite_points"]`` how
        many points had a NaN or infinite loss; ``meta["direction_options"]``
        each direction's :attr:`Direction.options` (None for eigenvectors and
        plain vectors), so how random directions were drawn and normalised
        (defaults included) is kept with the result.
        The model's parameters and buffers are never written to: they hold
        the same bits after the sweep, running statistics included.

    Warns
    -----
    RuntimeWarning
        When the loss is NaN or infinite at some points (the model diverges
        there): :meth:`~curvwidgets.results.Landscape.not_finite_note` says
        where. Those points stay in the result, ``computed`` and not finite.

    Raises
    ------
    ValueError
        A bad argument, named in the message; data that the model or
        ``loss_fn`` cannot take (the first batch's shapes are named), or a
        split without a sample the loss counts; a direction whose ``states``
        names no BatchNorm running statistic of the model, or has another
        shape; ``bn="recompute"`` with such directions.
    TypeError
        ``directions``, ``data``, ``loss_fn``, ``meta`` or the progress
        protocol of the wrong kind.
    OtherWeightsError
        An eigenvector direction of other weights or another parameter
        selection, without ``allow_other_weights=True``.
    """
    from .training.data import default_loss  # the training layer is imported only for its data sets

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type_name(model)}")
    _check_data_kind(data, isinstance(loss_fn, ModelLoss))
    dist = positive("dist", dist)
    if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2; got {n_points!r}")
    n_points = int(n_points)
    choice("bn", bn, BN_OPTIONS)
    boolean("plane", plane)
    boolean("allow_other_weights", allow_other_weights)
    if points_per_pass is not None:
        points_per_pass = positive_int("points_per_pass", points_per_pass)
    if samples_per_pass is not None:
        samples_per_pass = positive_int("samples_per_pass", samples_per_pass)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be None or callable as loss_fn(outputs, targets); got {type(loss_fn).__name__}")
    if isinstance(loss_fn, type):
        raise TypeError(f"loss_fn must be a loss function or module, e.g. nn.CrossEntropyLoss(); got the class "
                        f"{loss_fn.__name__} itself")
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be None or a mapping of metadata; got {type(meta).__name__}")
    check_progress(progress)
    check_cancel(cancel)
    layout = select_parameters(model, params)
    reference = dict(model.named_parameters())[layout.names[0]]
    device = device_value("device", device) if device is not None else reference.device
    statistics = _running_statistics(model)
    resolved = _directions(directions, layout.dim, reference.dtype, device, statistics)
    if plane and len(resolved) != 2:
        raise ValueError(f"plane=True needs exactly two directions; got {len(resolved)}")
    moved = _moved_statistics(resolved, statistics, device)
    if moved and bn == "recompute":
        raise ValueError("bn='recompute' recomputes the BatchNorm running statistics at every point, which the "
                         "directions with states (random_directions(..., states=True)) move: use bn='keep'")
    weights = fingerprint(model, params)
    of_other_weights = [d.label for d in resolved if d.fingerprint not in (None, weights)]
    if not allow_other_weights:
        for direction in resolved:
            check_same_weights(direction.fingerprint, weights, f"the eigenvector direction {direction.label!r}",
                               "the model's", "allow_other_weights=True")
    splits = _splits(data)
    offsets = np.linspace(-dist, dist, n_points)
    grid = torch.as_tensor(offsets, dtype=reference.dtype, device=device)
    if plane:
        shape = (n_points, n_points)
        coefficients = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1).reshape(-1, 2)
    else:
        shape = (len(resolved), n_points)
        eye = torch.eye(len(resolved), dtype=reference.dtype, device=device)
        coefficients = (eye[:, None, :] * grid[None, :, None]).reshape(-1, len(resolved))
    basis = torch.stack([direction.vector for direction in resolved])  # (n_directions, P)
    values = {f"{split}_{metric}": np.full(shape, np.nan) for split in splits for metric in ("loss", "accuracy")}
    computed = np.zeros(shape, dtype=bool)
    evaluator = _Evaluator(model, layout, loss_fn if loss_fn is not None else default_loss(data), device, bn,
                           splits.get("train"), basis, moved)
    record = {**dict(meta or {}), "dist": dist, "n_points": n_points, "bn": bn,
              "directions": [direction.label for direction in resolved], Fingerprint.META_KEY: weights.to_meta(),
              "direction_options": [None if d.options is None else dict(d.options) for d in resolved]}
    if of_other_weights:
        record["directions_of_other_weights"] = of_other_weights
    if moved:
        record["negative_variance_points"] = _negative_variance_points(evaluator, coefficients, _variance_eps(model))

    def result() -> Landscape:
        return Landscape(offsets.copy(), tuple(d.label for d in resolved),
                         np.array([d.curvature for d in resolved], dtype=float), "plane" if plane else "line",
                         {name: array.copy() for name, array in values.items()}, dict(record), computed.copy())

    total, done = coefficients.shape[0], 0
    began = time.perf_counter()
    given_points = 1 if bn == "recompute" or total == 1 else points_per_pass
    planner = PassPlanner(given_points, samples_per_pass, min(given_points or CANDIDATE_POINTS, total),
                          timed=bn != "recompute", sync=_synchronizer(device))
    with evaluator.restoring():
        report(progress, cancel, "landscape", 0, total, partial=result)
        while done < total:
            if planner.exploring and total - done < planner.first_points:  # too few points left to time on
                planner.settle()
            chunk = min(planner.first_points if planner.exploring else planner.chosen[0], total - done)
            points = coefficients[done : done + chunk]  # (k, n_directions) coefficients of the points
            columns = {split: evaluator.evaluate(points, split, batches, planner) for split, batches in splits.items()}
            if planner.exploring and done + chunk == total:  # the sweep ended before every candidate was timed
                planner.settle()
            if planner.seconds:
                record["pass_timing"] = planner.timing()
            for split, (loss, accuracy) in columns.items():
                for name, column in (("loss", loss), ("accuracy", accuracy)):
                    values[f"{split}_{name}"].reshape(-1)[done : done + len(points)] = column
            computed.reshape(-1)[done : done + len(points)] = True
            done += len(points)
            record["points_per_pass"], record["samples_per_pass"] = planner.chosen
            record["seconds"] = time.perf_counter() - began
            record["points_per_second"] = done / record["seconds"]
            report(progress, cancel, "landscape", done, total, partial=result)
    landscape = result()
    record["not_finite_points"] = int(landscape.not_finite.sum())
    if record["not_finite_points"]:
        negative = record.get("negative_variance_points", 0)
        note = landscape.not_finite_note()
        if negative:
            note += f"; at {negative} point(s) a moved BatchNorm running variance plus eps is negative (states)"
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return result()


def _moved_statistics(directions: Sequence[Direction], statistics: Mapping[str, torch.Tensor],
                      device: torch.device) -> Dict[str, torch.Tensor]:
    """Per running statistic some direction moves, the directions' parts on it, shape ``(n_directions, *buffer)``.

    Zero for a direction that does not move it; empty when none moves any.
    """
    names = [name for name in statistics if any(d.states is not None and name in d.states for d in directions)]
    stacked = {}
    for name in names:
        zero = torch.zeros(statistics[name].shape, dtype=statistics[name].dtype, device=device)
        stacked[name] = torch.stack([d.states.get(name, zero) if d.states is not None else zero for d in directions])
    return stacked


def _negative_variance_points(evaluator: "_Evaluator", coefficients: torch.Tensor, eps: Mapping[str, float]) -> int:
    """How many of the points (rows of ``coefficients``) give a moved running variance with ``var + eps < 0``."""
    negative = torch.zeros(coefficients.shape[0], dtype=torch.bool, device=coefficients.device)
    for name, values in evaluator.moved_buffers(coefficients).items():
        if name in eps:
            negative |= (values.flatten(1) + eps[name] < 0).any(dim=1)
    return int(negative.sum())


def _directions(directions: Any, dim: int, dtype: torch.dtype, device: torch.device,
                statistics: Mapping[str, torch.Tensor]) -> List[Direction]:
    """Directions as :class:`Direction` objects with vectors of length ``dim`` on ``device``.

    Their ``states`` are checked against the model's BatchNorm running
    ``statistics`` (by name) and put on ``device`` in each buffer's dtype.
    """
    if isinstance(directions, (Direction, torch.Tensor, np.ndarray)):
        directions = [directions]
    if not isinstance(directions, (list, tuple)) or not directions:
        raise ValueError("directions must be a non-empty list of Direction objects or flat vectors")
    resolved = []
    for number, direction in enumerate(directions, start=1):
        if not isinstance(direction, Direction):
            if not isinstance(direction, (torch.Tensor, np.ndarray)):
                raise TypeError(f"directions[{number - 1}] must be a Direction or a flat vector; got "
                                f"{type_name(direction)}")
            direction = Direction(direction, f"vector {number}")
        if not isinstance(direction.label, str):
            raise TypeError(f"directions[{number - 1}].label must be a str; got {direction.label!r:.40}")
        vector = _flat_vector(direction.vector, f"direction {direction.label!r}")
        if vector.is_complex():
            raise TypeError(f"direction {direction.label!r} must be real; got dtype {vector.dtype}")
        if vector.numel() != dim:
            raise ValueError(f"direction {direction.label!r} has {vector.numel()} entries but the model's selected "
                             f"parameters have {dim}: a vector of another model or parameter selection?")
        if not torch.isfinite(vector).all():
            raise ValueError(f"direction {direction.label!r} contains NaN or inf")
        states = _direction_states(direction.states, statistics, device, f"direction {direction.label!r}")
        if direction.options is not None and not isinstance(direction.options, Mapping):
            raise TypeError(f"direction {direction.label!r}: its options must be None or a dict; got "
                            f"{type_name(direction.options)}")
        if not bool((vector != 0).any()) and not any(bool((part != 0).any()) for part in (states or {}).values()):
            raise ValueError(f"direction {direction.label!r} is zero everywhere: it moves no weight (filter-normalised "
                             "directions are zero on one-axis parameters such as biases)")
        curvature = _curvature(direction.curvature, f"direction {direction.label!r}")
        if direction.fingerprint is not None and not isinstance(direction.fingerprint, Fingerprint):
            raise TypeError(f"direction {direction.label!r}: its fingerprint must be a curvwidgets Fingerprint or "
                            f"None; got {type(direction.fingerprint).__name__}")
        resolved.append(Direction(vector.to(device=device, dtype=dtype), direction.label, curvature,
                                  direction.fingerprint, states, direction.options))
    return resolved


def _direction_states(states: Any, statistics: Mapping[str, torch.Tensor], device: torch.device,
                      where: str) -> Optional[Dict[str, torch.Tensor]]:
    """A direction's part on the running statistics, checked and on ``device``; None when it has none."""
    if states is None:
        return None
    if not isinstance(states, Mapping):
        raise TypeError(f"{where}: its states must be None or a dict of BatchNorm running statistic names to tensors; "
                        f"got {type_name(states)}")
    checked = {}
    for name, part in states.items():
        if name not in statistics:
            known = list(statistics)[:4] if statistics else "none (no BatchNorm module tracks running statistics)"
            raise ValueError(f"{where} moves {name!r}, which is not a BatchNorm running statistic of the model; its "
                             f"running statistics are {known}{'...' if len(statistics) > 4 else ''}: a direction of "
                             "another model?")
        part = _flat_vector(part, f"{where}: its states[{name!r}]").reshape(-1)
        buffer = statistics[name]
        if part.numel() != buffer.numel() or part.is_complex() or not bool(torch.isfinite(part).all()):
            raise ValueError(f"{where}: its states[{name!r}] must hold {buffer.numel()} finite real numbers, the "
                             f"shape of the buffer {tuple(buffer.shape)}; got {part.numel()} of dtype {part.dtype}")
        checked[name] = part.reshape(buffer.shape).to(device=device, dtype=buffer.dtype)
    return checked or None


def _flat_vector(value: Any, where: str) -> torch.Tensor:
    """A direction's vector as a flat tensor (of a tensor or numpy array of numbers), else an error naming ``where``."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"{where} must hold real numbers; got an array of dtype {value.dtype}")
        value = torch.as_tensor(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{where}: its vector must be a torch.Tensor or a numpy array; got {type_name(value)}")
    if value.device.type == "meta":
        raise ValueError(f"{where} is a tensor on the 'meta' device, which holds no numbers")
    return value.reshape(-1)


def _curvature(value: Any, where: str) -> float:
    """A direction's Ritz value as a float (NaN: unknown); ``TypeError``/``ValueError`` naming ``where`` otherwise."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: its curvature must be a real number (NaN when unknown); got {value!r:.40}")
    if math.isinf(value):
        raise ValueError(f"{where}: its curvature must be finite, or NaN when unknown; got {value!r}")
    return float(value)


_DATA_KINDS = "a DataSet, a (train, test) pair or a re-iterable of (inputs, targets) batches"


def _check_data_kind(data: Any, inputs_only: bool = False) -> None:
    """``TypeError`` for data of a kind the sweep cannot read, before any work.

    Of a list or tuple of batches the first batch is looked at (a pair of
    tensors, or the inputs alone with ``inputs_only``); a loader is not read.
    """
    from .training.data import DataSet

    if data is None or isinstance(data, (str, bytes, Mapping, torch.Tensor, np.ndarray)):
        raise TypeError(f"data must be {_DATA_KINDS}; got {type_name(data)}")
    if isinstance(data, DataSet):
        return
    pair = isinstance(data, tuple) and len(data) == 2 and all(hasattr(part, "__iter__") for part in data) \
        and not isinstance(data[0], torch.Tensor)
    for split, batches in zip(("train", "test"), data if pair else (data,)):
        if not isinstance(batches, (list, tuple)):
            continue
        if not batches:  # as the sweep would find, but before it starts
            raise ValueError(f"data: the {split} batches hold no samples the loss counts (the data yielded no "
                             "samples, or every target is the loss's ignore_index)")
        batch, where = batches[0], f"data: the first {split} batch" if pair else "data: the first batch"
        if inputs_only:
            split_batch(batch, inputs_only, where)
            continue
        if isinstance(batch, torch.Tensor):
            raise TypeError(f"{where} is a tensor of shape {tuple(batch.shape)}, not an (inputs, targets) pair; give "
                            "batches as a list of pairs, e.g. [(inputs, targets)]")
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            found = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (list, tuple)) else type_name(batch)
            raise TypeError(f"{where} must be an (inputs, targets) pair of tensors; got {found}")
        if not isinstance(batch[1], torch.Tensor) or not isinstance(batch[0], (torch.Tensor, tuple, list, Mapping)):
            kinds = ", ".join(type_name(part) for part in batch)
            raise TypeError(f"{where} must be an (inputs, targets) pair of tensors; got ({kinds}) (torch.from_numpy "
                            "turns an array into a tensor)")
        as_inputs(batch[0], where)


def _split_off(held: List[Tuple[Inputs, torch.Tensor]], take: int) -> Tuple[Inputs, torch.Tensor, list]:
    """The first ``take`` samples of the batches ``held`` (joined where they span several), and the rest."""
    parts, rest = [], []
    for inputs, targets in held:
        if take == 0:
            rest.append((inputs, targets))
        elif len(inputs) <= take:
            parts.append((inputs, targets))
            take -= len(inputs)
        else:
            parts.append((inputs[:take], targets[:take]))
            rest.append((inputs[take:], targets[take:]))
            take = 0
    if len(parts) == 1:
        return parts[0][0], parts[0][1], rest
    return concatenate([p[0] for p in parts]), torch.cat([p[1] for p in parts]), rest


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for ``device``'s queued work before a clock is read (nothing on the CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _splits(data: Any) -> Dict[str, Iterable]:
    """``{"train": batches, "test": batches}`` (test only when given)."""
    from .training.data import DataSet

    if isinstance(data, DataSet):
        return {"train": data.evaluation_loader("train"), "test": data.evaluation_loader("test")}
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(part, "__iter__") for part in data) \
            and not isinstance(data[0], torch.Tensor):
        return {"train": data[0], "test": data[1]}
    if isinstance(data, torch.Tensor) or not hasattr(data, "__iter__") or iter(data) is data:
        raise TypeError(f"data must be a DataSet, a (train, test) pair or a re-iterable of (inputs, targets) batches; "
                        f"got {type(data).__name__}")
    return {"train": data}


class _Evaluator:
    """Mean loss and accuracy of ``model`` at ``w + d`` for displacements ``d``, several at once when faster."""

    def __init__(self, model: nn.Module, layout: ParameterLayout, loss_fn, device: torch.device, bn: str,
                 train_batches: Optional[Iterable], basis: torch.Tensor, moved: Mapping[str, torch.Tensor]):
        self.model, self.layout, self.loss_fn, self.device, self.bn = model, layout, loss_fn, device, bn
        self.train_batches = train_batches
        self.basis = basis  # (n_directions, P)
        self.moved = dict(moved)  # running statistic name -> (n_directions, *buffer) parts of the directions
        self.checked_splits: set = set()  # splits whose first batch has been run
        self._last_weights: Optional[Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]] = None
        named = dict(model.named_parameters())
        self.dtype = named[layout.names[0]].dtype
        self.base = [named[name].detach().to(device) for name in layout.names]
        selected = set(layout.names)
        self.constants = {name: p.detach().to(device) for name, p in named.items() if name not in selected}
        self.buffers = {name: b.detach().to(device) for name, b in model.named_buffers()}
        self.sum_reduced = reduction_of(loss_fn) == "sum"
        self.read = outputs_reader(loss_fn)  # the logits, or a ModelLoss's loss
        self.batched = torch.func.vmap(self._outputs, in_dims=(0, None))
        self.batched_moving = torch.func.vmap(self._outputs_moving, in_dims=(0, None, 0))

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """Eval mode during the sweep; every module's ``training`` flag and BatchNorm momentum put back after."""
        flags = [(module, module.training, getattr(module, "momentum", None)) for module in self.model.modules()]
        try:
            self.model.eval()
            yield
        finally:
            for module, flag, momentum in flags:
                module.training = flag
                if isinstance(module, _BatchNorm):
                    module.momentum = momentum

    def _outputs(self, values: Tuple[torch.Tensor, ...], inputs: Inputs,
                 buffers: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        state = {**self.constants, **(self.buffers if buffers is None else buffers), **dict(zip(self.layout.names, values))}
        args, kwargs = model_arguments(inputs)
        return self.read(torch.func.functional_call(self.model, state, args, kwargs))

    def _outputs_moving(self, values: Tuple[torch.Tensor, ...], inputs: Inputs,
                        moved: Dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`_outputs` with the running statistics in ``moved`` in place of the trained ones."""
        return self._outputs(values, inputs, {**self.buffers, **moved})

    def _weights(self, coefficients: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Per parameter, ``w + coefficients @ basis`` at each point: shape ``(k, *parameter.shape)``.

        One product per parameter into its own result; the last points' are
        kept, as every split of a chunk of points asks for the same.
        """
        if self._last_weights is not None and self._last_weights[0] is coefficients:
            return self._last_weights[1]
        rows = coefficients.to(self.basis.dtype)
        parts = torch.split(self.basis, self.layout.sizes, dim=1)  # (n_directions, numel) views per parameter
        weights = tuple(torch.addmm(base.reshape(1, -1), rows, part).view(len(rows), *base.shape)
                        for base, part in zip(self.base, parts))
        self._last_weights = (coefficients, weights)
        return weights

    def moved_buffers(self, coefficients: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The moved running statistics at the points ``coefficients``, ``(k, n_directions)``: ``(k, *buffer)`` each."""
        return {name: self.buffers[name] + torch.tensordot(coefficients.to(parts.dtype), parts, dims=1)
                for name, parts in self.moved.items()}

    @torch.no_grad()
    def evaluate(self, coefficients: torch.Tensor, split: str, batches: Iterable,
                 planner: PassPlanner) -> Tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy over ``split``'s ``batches`` at ``w + coefficients @ basis``.

        ``coefficients`` has shape ``(k, n_directions)``, one row per point;
        two arrays of shape ``(k,)`` come back. The batches are re-cut into
        the pieces ``planner`` gives (:meth:`_pieces`), each piece evaluated
        in passes of its number of points.
        """
        weights = self._weights(coefficients)
        moved = self.moved_buffers(coefficients)
        recomputed = self._recomputed_buffers(tuple(w[0] for w in weights)) if self.bn == "recompute" else None

        def outputs_of(start: int, k: int, inputs: torch.Tensor) -> torch.Tensor:  # (k, b, ...) of points start...
            if k == 1 or recomputed is not None:  # one point per pass with bn="recompute"
                buffers = recomputed if recomputed is not None else (
                    {**self.buffers, **{name: values[start] for name, values in moved.items()}} if moved else None)
                return self._outputs(tuple(w[start] for w in weights), inputs, buffers)[None]
            group = tuple(w[start : start + k] for w in weights)
            if moved:
                return self.batched_moving(group, inputs, {name: values[start : start + k]
                                                           for name, values in moved.items()})
            return self.batched(group, inputs)

        # loss * W, W (what the loss counts: see counted_weight), correct and counted samples, per point
        sums = torch.zeros(4, len(coefficients), dtype=torch.float64, device=self.device)
        for inputs, targets, k in self._pieces(split, batches, planner):
            first = split not in self.checked_splits
            sums += self._piece_sums(outputs_of, len(coefficients), inputs, targets, k, planner, first)
            self.checked_splits.add(split)
        if not bool(sums[3, 0] > 0):
            raise ValueError(f"data: the {split} batches hold no samples the loss counts (the data yielded no samples, "
                             "or every target is the loss's ignore_index)")
        loss = sums[0] if self.sum_reduced else sums[0] / sums[1]  # a summed loss: the split's sum, not rescaled
        return loss.cpu().numpy(), (sums[2] / sums[3]).cpu().numpy()

    def _batches(self, split: str, batches: Iterable) -> Iterator[Tuple[Inputs, torch.Tensor]]:
        """The (inputs, targets) of ``batches`` on the device, floating inputs in the model's dtype.

        The inputs may be a tensor, a tuple or a mapping of tensors (:mod:`~curvwidgets.curvature.batches`);
        with a ``ModelLoss`` each batch is the inputs alone.
        """
        inputs_only = isinstance(self.loss_fn, ModelLoss)
        for batch in batches:
            if inputs_only:
                inputs, targets = split_batch(batch, inputs_only, f"data: a {split} batch")
                yield moved(inputs, self.device, self.dtype), targets.to(self.device)
                continue
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor)):
                kind = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) \
                    else type_name(batch)
                raise TypeError(f"data: a {split} batch must be an (inputs, targets) pair of tensors; got {kind}")
            inputs = moved(as_inputs(batch[0], f"data: a {split} batch"), self.device, self.dtype)
            yield inputs, batch[1].to(self.device, non_blocking=True)

    def _pieces(self, split: str, batches: Iterable,
                planner: PassPlanner) -> Iterator[Tuple[torch.Tensor, torch.Tensor, int]]:
        """``split``'s samples re-cut into the planner's pieces: ``(inputs, targets, points per pass)`` each.

        The batches are one stream of samples: a piece of ``s`` samples may
        be a slice of a batch or join the end of one to the start of the next
        (whole batches where ``s`` is None). A batch whose inputs and targets
        differ in length (the samples not both in dimension 0) is evaluated
        whole, as it came, never cut or joined. The consumer evaluates each
        piece before asking for the next.
        """
        source = self._batches(split, batches)
        held: List[Tuple[torch.Tensor, torch.Tensor]] = []  # samples read and not yet evaluated, in order
        count = 0
        while True:
            k, size = planner.next_shape()
            while count < (size or 1):
                batch = next(source, None)
                if batch is None:
                    break
                if len(batch[0]) != len(batch[1]):
                    yield batch[0], batch[1], k
                    continue
                held.append(batch)
                count += len(batch[0])
            if count == 0:
                return
            take = count if size is None else min(size, count)
            inputs, targets, held = _split_off(held, take)
            count -= take
            planner.start_piece((k, size))
            yield inputs, targets, k
            planner.end_piece(take)

    def _piece_sums(self, outputs_of: Callable[[int, int, torch.Tensor], torch.Tensor], points: int,
                    inputs: torch.Tensor, targets: torch.Tensor, k: int, planner: PassPlanner,
                    first: bool) -> torch.Tensor:
        """The sums of one piece for each of ``points`` points, ``(4, points)``, in passes of ``k`` points.

        A pass of several points that fails (a model that does not ``vmap``,
        or runs out of memory) is done again one point at a time where the
        planner allows it. On a split's ``first`` piece, errors of the model
        or loss in a pass of one point name the data (``ValueError``).
        """
        parts, start = [], 0
        while start < points:
            width = min(k, points - start)
            try:
                with naming_data(inputs, targets) if width == 1 and first else contextlib.nullcontext(), \
                        planner.timed_pass():
                    parts.append(self._sums_of_piece(outputs_of(start, width, inputs), inputs, targets))
            except (RuntimeError, NotImplementedError):
                if width == 1 or not planner.failed_together():
                    raise
                k = 1
                continue
            start += width
        return torch.cat(parts, dim=1)

    def _sums_of_piece(self, outputs: torch.Tensor, inputs: Inputs, targets: torch.Tensor) -> torch.Tensor:
        """Loss x W, W (what the loss counts: see counted_weight), correct and counted samples of one pass, (4, k).

        ``outputs`` has shape ``(k, b, ...)``, one row per point.
        """
        sums = torch.zeros(4, len(outputs), dtype=torch.float64, device=self.device)
        weight = counted_weight(self.loss_fn, targets, inputs)
        if weight > 0:  # a piece whose targets are all ignored has no mean loss
            losses = torch.stack([self.loss_fn(output, targets) for output in outputs]).double()
            sums[0] = losses if self.sum_reduced else losses * weight
            sums[1] = weight
        counted = self._counted(targets)
        sums[2] = self._correct(outputs, targets, counted)
        sums[3] = counted.sum()
        return sums


    def _correct(self, outputs: torch.Tensor, targets: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
        """Counted targets that are the top output, per point, shape ``(k,)``.

        The classes are on the loss's ``class_dim`` (axis 1 of a batch's
        outputs for ``nn.CrossEntropyLoss`` and ``nn.NLLLoss``, as torch reads
        them; the last axis for
        :class:`~curvwidgets.losses.SequenceCrossEntropyLoss` and other
        losses). With positions (targets ``(b, T)``) every counted position
        counts: the accuracy is per token. NaN when the targets are not class
        indices of the outputs (a regression loss such as MSE): accuracy is
        not defined there.
        """
        axis = getattr(self.loss_fn, "class_dim",
                       1 if isinstance(self.loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) else -1)
        if targets.is_floating_point() or outputs.ndim < 3:  # (k, b, classes, ...)
            return torch.full(outputs.shape[:1], math.nan, dtype=torch.float64, device=outputs.device)
        predicted = outputs.argmax(dim=axis + 1 if axis >= 0 else axis)  # (k, b, *positions)
        if predicted.shape[1:] != targets.shape:
            return torch.full(outputs.shape[:1], math.nan, dtype=torch.float64, device=outputs.device)
        return ((predicted == targets) & counted).reshape(len(outputs), -1).sum(dim=-1).double()

    def _counted(self, targets: torch.Tensor) -> torch.Tensor:
        """Which targets count, of their shape: those not the loss's ``ignore_index``; one per sample for regression."""
        if targets.is_floating_point():
            return torch.ones(targets.shape[:1], dtype=torch.bool, device=targets.device)
        if isinstance(self.loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss, SequenceCrossEntropyLoss)):
            return targets != self.loss_fn.ignore_index
        return torch.ones_like(targets, dtype=torch.bool)

    def _recomputed_buffers(self, values: Tuple[torch.Tensor, ...]) -> Dict[str, torch.Tensor]:
        """BatchNorm running statistics for the weights ``values``, from one pass over the training data."""
        if self.train_batches is None:
            raise ValueError("bn='recompute' needs training data")
        buffers = {name: buffer.clone() for name, buffer in self.buffers.items()}
        norms = [(name, module) for name, module in self.model.named_modules() if isinstance(module, _BatchNorm)]
        for prefix, module in norms:
            stem = f"{prefix}." if prefix else ""
            if module.track_running_stats:
                buffers[f"{stem}running_mean"].zero_()
                buffers[f"{stem}running_var"].fill_(1)
                buffers[f"{stem}num_batches_tracked"].zero_()
            module.momentum = None  # a cumulative average over the pass
            module.train()
        for inputs, _ in self._batches("train", self.train_batches):
            self._outputs(values, inputs, buffers)
        for _, module in norms:
            module.eval()
        return buffers
