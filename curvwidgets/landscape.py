"""Loss and accuracy of a model along directions in weight space: eigenvectors, random or any vector.

The paper's local loss landscape (section 6.1, Figures 8 to 11): the train
and test loss and accuracy at ``w + t v`` for ``t`` in ``[-dist, dist]``, for
unit eigenvectors ``v`` of the Hessian or GGN picked by their Ritz values (the
largest, the most negative, those nearest zero), for comparison along random
Gaussian directions or the filter-normalised ones of Li et al. (2018), and
over a plane ``w + a v_0 + b v_1`` of two directions.

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
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._validate import (boolean, check_cancel, check_progress, choice, device_value, non_negative_int, positive,
                        positive_int, seed_value, type_name)
from .curvature.data import naming_data
from .curvature.fingerprint import check_same_weights, fingerprint
from .curvature.output_hessian import counted_weight, reduction_of
from .curvature.params import ParameterLayout, ParamsLike, select_parameters
from .progress import CancelToken, ProgressCallback, report
from .results import Fingerprint, Landscape, Spectrum

__all__ = ["Direction", "eigen_directions", "random_directions", "loss_landscape", "BN_OPTIONS"]

#: How BatchNorm is treated at every point: running statistics as trained, or recomputed for the new weights.
BN_OPTIONS = ("keep", "recompute")
_CANDIDATE_POINTS = 8  # points per pass that "auto" tries against one point at a time
_TRIAL_SAMPLES = 64  # ... on this many samples of the first training batch


@dataclass(frozen=True)
class Direction:
    """One direction ``v`` in weight space.

    Attributes
    ----------
    vector : Tensor, shape (P,)
        Flat over the selected parameters, in the order of ``model.named_parameters()``.
    label : str
        How the direction is named in results and plots.
    curvature : float
        The Ritz value ``theta`` of an eigenvector direction (the quadratic
        model is ``L(0) + t g.v + theta t^2 / 2``), NaN for other directions.
    fingerprint : Fingerprint or None
        Of the weights and parameter selection an eigenvector was computed on
        (its spectrum's); :func:`loss_landscape` refuses to walk along it from
        other weights. None: belongs to no weights in particular.
    """

    vector: torch.Tensor
    label: str
    curvature: float = math.nan
    fingerprint: Optional[Fingerprint] = None


def eigen_directions(spectrum: Spectrum, largest: int = 3, smallest: int = 3, nearest_zero: int = 0,
                     run: int = 0) -> List[Direction]:
    """Unit Ritz vectors of ``spectrum`` picked by their Ritz values, as the paper's Figures 8 to 11 do.

    Parameters
    ----------
    spectrum : Spectrum
        Computed with its Ritz vectors (``save_vectors=True``, the paper's ``save_eigvec=True``).
    largest, smallest, nearest_zero : int
        How many of the largest, the smallest (most negative) and the
        smallest-magnitude Ritz values; a value picked twice appears once.
    run : int, default: 0
        Which start vector's Ritz pairs.

    Returns
    -------
    list of Direction
        Largest first, then smallest, then nearest zero; labels like
        ``"largest 1 (theta = 6.88)"``; each carries the spectrum's
        :attr:`~curvwidgets.Spectrum.fingerprint`.
    """
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectrum must be a curvwidgets Spectrum; got {type_name(spectrum)}")
    if spectrum.ritz_vectors is None:
        raise ValueError("spectrum has no Ritz vectors: compute it with save_vectors=True (save_eigvec=True in "
                         "compute_eigenspectrum) to walk along its eigenvectors")
    if isinstance(run, bool) or not isinstance(run, numbers.Integral) or not 0 <= run < spectrum.num_vectors:
        raise ValueError(f"run must be an int in [0, {spectrum.num_vectors}); got {run!r}")
    run = int(run)
    counts = {"largest": largest, "smallest": smallest, "nearest_zero": nearest_zero}
    counts = {name: non_negative_int(name, count) for name, count in counts.items()}
    if not any(counts.values()):
        raise ValueError("pick at least one direction: largest, smallest or nearest_zero must be > 0")
    values = spectrum.lanczos.nodes(run)  # ascending; the first num_steps rows of ritz_vectors
    orders = {"largest": np.argsort(-values, kind="stable"), "smallest": np.argsort(values, kind="stable"),
              "nearest_zero": np.argsort(np.abs(values), kind="stable")}
    picked: List[Direction] = []
    seen = set()
    for name, count in counts.items():
        for rank, index in enumerate(orders[name][:count], start=1):
            if index in seen:
                continue
            seen.add(index)
            theta = float(values[index])
            vector = torch.from_numpy(np.array(spectrum.ritz_vectors[run, index]))
            picked.append(Direction(vector, f"{name.replace('_', ' ')} {rank} (theta = {theta:.4g})", theta,
                                    spectrum.fingerprint))
    return picked


def random_directions(model: nn.Module, count: int = 2, seed: int = 0, params: ParamsLike = None,
                      filter_normalized: bool = False) -> List[Direction]:
    """Random Gaussian directions, unit length, or filter-normalised ones (Li et al., 2018).

    Filter normalisation scales each filter of ``v`` (each slice along the
    first axis of a weight with two or more axes) to the norm of the same
    filter of the weights, and sets ``v`` to zero on biases and BatchNorm
    parameters (one-axis parameters), so that ``dist = 1`` is a perturbation
    as large as the weights themselves, whatever their scale.

    Returns
    -------
    list of Direction
        Labelled ``"random 1"``... or ``"filter-normalised 1"``...; drawn on
        the CPU from ``seed``, so the same seed gives the same directions on
        any device.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type_name(model)}")
    count = positive_int("count", count)
    boolean("filter_normalized", filter_normalized)
    layout = select_parameters(model, params)
    if filter_normalized and all(len(shape) <= 1 for shape in layout.shapes):
        raise ValueError("filter_normalized=True: the selected parameters all have one axis (biases, BatchNorm), "
                         "where filter-normalised directions are zero; select weights of two or more axes, or use "
                         "filter_normalized=False")
    weights = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(seed_value("seed", seed))
    directions = []
    for number in range(1, count + 1):
        pieces = []
        for name, shape in zip(layout.names, layout.shapes):
            weight = weights[name].detach().cpu().to(torch.float64)
            piece = torch.randn(shape, generator=generator, dtype=torch.float64)
            if filter_normalized:
                if piece.ndim <= 1:
                    piece = torch.zeros_like(piece)
                else:
                    filters = piece.flatten(1).norm(dim=1).clamp_min(1e-12)
                    piece = piece * (weight.flatten(1).norm(dim=1) / filters).view(-1, *[1] * (piece.ndim - 1))
            pieces.append(piece.reshape(-1))
        vector = torch.cat(pieces)
        if not filter_normalized:
            vector = vector / vector.norm()
        label = "filter-normalised" if filter_normalized else "random"
        directions.append(Direction(vector.to(weights[layout.names[0]].dtype), f"{label} {number}"))
    return directions


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
        gives the train metrics only.
    directions : sequence of Direction, or of flat vectors of length P
        From :func:`eigen_directions`, :func:`random_directions`, or any
        vector over the selected parameters (labelled ``"vector 1"``...).
    dist : float, default: 0.25
        ``t`` runs over ``n_points`` evenly spaced values in ``[-dist, dist]``.
    n_points : int, default: 21
        Points per line (per axis of a plane); at least 2.
    plane : bool, default: False
        Two directions spanning an ``n_points x n_points`` grid, instead of a line each.
    loss_fn : callable, optional
        Default ``nn.CrossEntropyLoss()`` (mean over a batch, or the sum when
        its ``reduction`` is ``"sum"``; either way the metric is the mean over
        all samples, the loss of one batch of the whole split: batches are
        weighted by what the loss counts, so ``ignore_index`` and class
        ``weight=`` are honoured, and ignored samples do not count in the accuracy).
    params : optional
        Which parameters the directions move (as for :class:`~curvwidgets.Hessian`).
    bn : {"keep", "recompute"}, default: "keep"
        ``"keep"``: BatchNorm uses the running statistics as trained.
        ``"recompute"``: at every point the running statistics are first
        recomputed with one pass over the training data (cumulative average,
        as ``torch.optim.swa_utils.update_bn``), then the point is evaluated;
        one point at a time.
    points_per_pass : int, optional
        Points evaluated together in one pass over the data (``vmap`` over
        stacked parameter sets; memory grows with it). Default: 1 or 8,
        whichever is faster per point, timed before the sweep on the first
        64 samples of the first training batch (one at a time where the model
        does not vmap); always 1 with ``bn="recompute"``.
        ``meta["points_per_pass"]`` records the choice and
        ``meta["pass_timing"]`` its timings and cost (seconds).
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
        many points had a NaN or infinite loss.

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
        split without a sample the loss counts.
    TypeError
        ``directions``, ``data``, ``loss_fn``, ``meta`` or the progress
        protocol of the wrong kind.
    OtherWeightsError
        An eigenvector direction of other weights or another parameter
        selection, without ``allow_other_weights=True``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type_name(model)}")
    _check_data_kind(data)
    dist = positive("dist", dist)
    if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2; got {n_points!r}")
    n_points = int(n_points)
    choice("bn", bn, BN_OPTIONS)
    boolean("plane", plane)
    boolean("allow_other_weights", allow_other_weights)
    if points_per_pass is not None:
        points_per_pass = positive_int("points_per_pass", points_per_pass)
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
    resolved = _directions(directions, layout.dim, reference.dtype, device)
    if plane and len(resolved) != 2:
        raise ValueError(f"plane=True needs exactly two directions; got {len(resolved)}")
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
    evaluator = _Evaluator(model, layout, loss_fn if loss_fn is not None else nn.CrossEntropyLoss(), device, bn,
                           splits.get("train"))
    record = {**dict(meta or {}), "dist": dist, "n_points": n_points, "bn": bn,
              "directions": [direction.label for direction in resolved], Fingerprint.META_KEY: weights.to_meta()}
    if of_other_weights:
        record["directions_of_other_weights"] = of_other_weights

    def result() -> Landscape:
        return Landscape(offsets.copy(), tuple(d.label for d in resolved),
                         np.array([d.curvature for d in resolved], dtype=float), "plane" if plane else "line",
                         {name: array.copy() for name, array in values.items()}, dict(record), computed.copy())

    total, done = coefficients.shape[0], 0
    began = time.perf_counter()
    planner = _PassPlanner(1 if bn == "recompute" or total == 1 else points_per_pass, min(_CANDIDATE_POINTS, total))
    with evaluator.restoring():
        report(progress, cancel, "landscape", 0, total, partial=result)
        trial = _trial_slice(splits["train"], evaluator) if planner.fixed is None else None
        if trial is not None:
            evaluator.evaluate(coefficients[:1] @ basis, "train", [trial])  # errors of the data name its batch
            planner.choose(lambda count, samples: evaluator.evaluate(
                coefficients[:count] @ basis, "train", [(trial[0][:samples], trial[1][:samples])]))
            record["pass_timing"] = {"seconds_per_point": {str(k): v for k, v in planner.seconds.items()},
                                     "samples": int(min(len(trial[0]), _TRIAL_SAMPLES)), "cost": planner.cost}
        while done < total:
            chunk = min(planner.chosen, total - done)
            points = coefficients[done : done + chunk] @ basis  # (k, P) displacements
            try:
                columns = {split: evaluator.evaluate(points, split, batches) for split, batches in splits.items()}
            except (RuntimeError, NotImplementedError):
                if chunk == 1 or not planner.failed_together():
                    raise
                continue  # a model that vmaps the slice but not every batch (out of memory): one at a time
            for split, (loss, accuracy) in columns.items():
                for name, column in (("loss", loss), ("accuracy", accuracy)):
                    values[f"{split}_{name}"].reshape(-1)[done : done + len(points)] = column
            computed.reshape(-1)[done : done + len(points)] = True
            done += len(points)
            record["points_per_pass"] = planner.chosen
            record["seconds"] = time.perf_counter() - began
            record["points_per_second"] = done / record["seconds"]
            report(progress, cancel, "landscape", done, total, partial=result)
    landscape = result()
    record["not_finite_points"] = int(landscape.not_finite.sum())
    if record["not_finite_points"]:
        warnings.warn(landscape.not_finite_note(), RuntimeWarning, stacklevel=2)
    return result()


def _directions(directions: Any, dim: int, dtype: torch.dtype, device: torch.device) -> List[Direction]:
    """Directions as :class:`Direction` objects with vectors of length ``dim`` on ``device``."""
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
        if not bool((vector != 0).any()):
            raise ValueError(f"direction {direction.label!r} is zero everywhere: it moves no weight (filter-normalised "
                             "directions are zero on one-axis parameters such as biases)")
        curvature = _curvature(direction.curvature, f"direction {direction.label!r}")
        if direction.fingerprint is not None and not isinstance(direction.fingerprint, Fingerprint):
            raise TypeError(f"direction {direction.label!r}: its fingerprint must be a curvwidgets Fingerprint or "
                            f"None; got {type(direction.fingerprint).__name__}")
        resolved.append(Direction(vector.to(device=device, dtype=dtype), direction.label, curvature,
                                  direction.fingerprint))
    return resolved


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


def _check_data_kind(data: Any) -> None:
    """``TypeError`` for data of a kind the sweep cannot read, before any work.

    Of a list or tuple of batches the first batch is looked at (a pair of
    tensors); a loader is not read.
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
        if isinstance(batch, torch.Tensor):
            raise TypeError(f"{where} is a tensor of shape {tuple(batch.shape)}, not an (inputs, targets) pair; give "
                            "batches as a list of pairs, e.g. [(inputs, targets)]")
        if not isinstance(batch, (list, tuple)) or len(batch) != 2:
            found = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (list, tuple)) else type_name(batch)
            raise TypeError(f"{where} must be an (inputs, targets) pair of tensors; got {found}")
        if not all(isinstance(part, torch.Tensor) for part in batch):
            kinds = ", ".join(type_name(part) for part in batch)
            raise TypeError(f"{where} must be an (inputs, targets) pair of tensors; got ({kinds}) (torch.from_numpy "
                            "turns an array into a tensor)")


def _trial_slice(batches: Iterable, evaluator: "_Evaluator") -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The first batch of ``batches`` on the evaluator's device, or None where it cannot time a choice.

    None for data without a batch, or whose first :data:`_TRIAL_SAMPLES`
    samples the loss does not count (all ignored): one point per pass then.
    """
    first = next(iter(batches), None)
    if not (isinstance(first, (tuple, list)) and len(first) == 2
            and all(isinstance(part, torch.Tensor) for part in first)):
        return None  # the sweep's first pass names what is wrong with it
    inputs, targets = (part.to(evaluator.device) for part in first)
    inputs = inputs.to(evaluator.dtype) if inputs.is_floating_point() else inputs
    if len(inputs) < 2 or counted_weight(evaluator.loss_fn, targets[:_TRIAL_SAMPLES]) == 0:
        return None
    return inputs, targets


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
                 train_batches: Optional[Iterable]):
        self.model, self.layout, self.loss_fn, self.device, self.bn = model, layout, loss_fn, device, bn
        self.train_batches = train_batches
        self.checked_splits: set = set()  # splits whose first batch has been run
        named = dict(model.named_parameters())
        self.dtype = named[layout.names[0]].dtype
        self.base = [named[name].detach().to(device) for name in layout.names]
        selected = set(layout.names)
        self.constants = {name: p.detach().to(device) for name, p in named.items() if name not in selected}
        self.buffers = {name: b.detach().to(device) for name, b in model.named_buffers()}
        self.sum_reduced = reduction_of(loss_fn) == "sum"
        self.batched = torch.func.vmap(self._outputs, in_dims=(0, None))

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

    def _outputs(self, values: Tuple[torch.Tensor, ...], inputs: torch.Tensor,
                 buffers: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        state = {**self.constants, **(self.buffers if buffers is None else buffers), **dict(zip(self.layout.names, values))}
        return torch.func.functional_call(self.model, state, (inputs,))

    def _weights(self, points: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Per parameter, ``w + d`` for each displacement: shape ``(k, *parameter.shape)``."""
        return tuple(base + delta for base, delta in zip(self.base, self.layout.unflatten(points.T)))

    @torch.no_grad()
    def evaluate(self, points: torch.Tensor, split: str, batches: Iterable) -> Tuple[np.ndarray, np.ndarray]:
        """Mean loss and accuracy over ``split``'s ``batches`` at each of the ``k`` points: two arrays, shape ``(k,)``."""
        weights = self._weights(points)
        if self.bn == "recompute":
            buffers = self._recomputed_buffers(tuple(w[0] for w in weights))
            return self._sums_of(lambda inputs: self._outputs(tuple(w[0] for w in weights), inputs, buffers)[None],
                                 split, batches, 1)
        if len(points) == 1:
            return self._sums_of(lambda inputs: self._outputs(tuple(w[0] for w in weights), inputs)[None], split,
                                 batches, 1)
        return self._sums_of(lambda inputs: self.batched(weights, inputs), split, batches, len(points))

    def _sums_of(self, outputs_of: Callable[[torch.Tensor], torch.Tensor], split: str, batches: Iterable,
                 k: int) -> Tuple[np.ndarray, np.ndarray]:
        # loss * W, W (what the loss counts: see counted_weight), correct and counted samples
        sums = torch.zeros(4, k, dtype=torch.float64, device=self.device)
        for batch in batches:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                    and all(isinstance(part, torch.Tensor) for part in batch)):
                kind = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, (tuple, list)) \
                    else type_name(batch)
                raise TypeError(f"data: a {split} batch must be an (inputs, targets) pair of tensors; got {kind}")
            inputs, targets = batch
            inputs = inputs.to(self.device, non_blocking=True)
            inputs = inputs.to(self.dtype) if inputs.is_floating_point() else inputs
            targets = targets.to(self.device, non_blocking=True)
            with self._first_batch_of(split, k, inputs, targets):
                outputs = outputs_of(inputs)  # (k, b, classes)
                weight = counted_weight(self.loss_fn, targets)
                if weight > 0:  # a batch whose targets are all ignored has no mean loss
                    losses = torch.stack([self.loss_fn(output, targets) for output in outputs]).double()
                    sums[0] += losses if self.sum_reduced else losses * weight
                    sums[1] += weight
            counted = self._counted(targets)
            sums[2] += self._correct(outputs, targets, counted)
            sums[3] += counted.sum()
        if not bool(sums[3, 0] > 0):
            raise ValueError(f"data: the {split} batches hold no samples the loss counts (the data yielded no samples, "
                             "or every target is the loss's ignore_index)")
        loss, correct = (sums[[0, 2]] / sums[[1, 3]]).cpu().numpy()
        return loss, correct

    def _first_batch_of(self, split: str, k: int, inputs: torch.Tensor, targets: torch.Tensor):
        """Around the first batch of ``split`` at one point: errors of the model or loss on it name ``data``.

        Several points at once (``k > 1``) go through ``vmap``, whose errors
        the pass planner handles; the first pass is always of one point.
        """
        if k > 1 or split in self.checked_splits:
            return contextlib.nullcontext()
        self.checked_splits.add(split)
        return naming_data(inputs, targets)

    @staticmethod
    def _correct(outputs: torch.Tensor, targets: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
        """Counted samples whose top output is their target, per point, shape ``(k,)``.

        NaN when the targets are not class indices of the outputs (a regression
        loss such as MSE): accuracy is not defined there.
        """
        if targets.is_floating_point() or outputs.shape[1:-1] != targets.shape:
            return torch.full(outputs.shape[:1], math.nan, dtype=torch.float64, device=outputs.device)
        return ((outputs.argmax(dim=-1) == targets) & counted).sum(dim=-1).double()

    def _counted(self, targets: torch.Tensor) -> torch.Tensor:
        """Which samples count: those whose target is not the loss's ``ignore_index`` (all, for other losses)."""
        if isinstance(self.loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and not targets.is_floating_point():
            return targets != self.loss_fn.ignore_index
        return torch.ones(targets.shape[:1], dtype=torch.bool, device=targets.device)

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
        for inputs, _ in self.train_batches:
            inputs = inputs.to(self.device, non_blocking=True)
            self._outputs(values, inputs.to(self.dtype) if inputs.is_floating_point() else inputs, buffers)
        for _, module in norms:
            module.eval()
        return buffers


class _PassPlanner:
    """How many points each pass over the data evaluates: fixed, or timed on a slice before the sweep.

    Unless ``fixed``, one point and ``trial`` points together (one ``vmap``
    pass) are timed on the first :data:`_TRIAL_SAMPLES` samples of the first
    training batch (after a warm-up on two samples), and the sweep runs at the
    faster per point: about ``2 (1 + trial)`` points on that slice, a few
    percent of a sweep. A model that does not ``vmap`` (or runs out of memory
    doing so) stays at one point per pass, also when that shows only later.
    """

    def __init__(self, fixed: Optional[int], trial: int):
        self.fixed, self.trial = fixed, trial
        self.chosen = fixed if fixed is not None else 1
        self.seconds: Dict[int, float] = {}  # seconds per point on the trial slice, by points per pass
        self.cost = 0.0  # seconds spent timing

    def choose(self, evaluate: Callable[[int, int], Any]) -> None:
        """Time ``evaluate(points, samples)`` (that many points on the first samples of the slice) and choose."""
        if self.fixed is not None:
            return
        began = time.perf_counter()
        for count in (1, self.trial):
            try:
                evaluate(count, 2)  # warm-up, and vmap's first call
                started = time.perf_counter()
                evaluate(count, _TRIAL_SAMPLES)
                self.seconds[count] = (time.perf_counter() - started) / count
            except (RuntimeError, NotImplementedError):
                if count == 1:
                    raise
                break
        if self.seconds.get(self.trial, math.inf) < self.seconds[1]:
            self.chosen = self.trial
        self.cost = time.perf_counter() - began

    def failed_together(self) -> bool:
        """A pass of several points failed: whether to go on one point at a time (not when ``fixed``)."""
        if self.fixed is not None or self.chosen == 1:
            return False
        self.chosen = 1
        return True
