"""The paper's own functions (section 6 and appendix A), working from files.

``train_network`` writes checkpoints; ``compute_eigenspectrum``,
``compute_loss_stats`` and ``build_loss_landscape`` read a checkpoint, rebuild
its model and data (:func:`~curvwidgets.load_trained`) and write their
results (:class:`~curvwidgets.Spectrum`, :class:`~curvwidgets.Diagonal`,
JSON statistics, :class:`~curvwidgets.Landscape`); the ``plot_*`` functions
draw those files. The argument names are the paper's; each is a thin layer
over the core (:func:`~curvwidgets.train`, :func:`~curvwidgets.spectrum`,
:func:`~curvwidgets.loss_stats`, :func:`~curvwidgets.landscape`).

The paper's choices are the defaults, and each is an argument: curvature,
statistics and landscapes use the training set in a fixed order without
augmentation; Lanczos uses one random start vector and BatchNorm with each
batch's statistics (``bn_mode="train"``; the Monte Carlo Diag-GGN needs
``"eval"``); landscapes keep the trained BatchNorm statistics. Every result
records the choices it was made with.

The README's section "The paper's workflow" shows the calls in order;
``tests/test_api.py`` runs the paper's own snippets on the embedded data.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Union

from ._atomic import atomic_path, check_writable
from ._validate import (boolean, check_cancel, check_progress, choice, device_value, non_negative_int, positive,
                        positive_int, seed_value, type_name)
from .progress import CancelToken, ProgressCallback, report
from .results import Diagonal, Landscape, Spectrum, TrainingHistory, load_result, npz_path

__all__ = ["train_network", "compute_eigenspectrum", "compute_loss_stats", "build_loss_landscape", "plot_training",
           "plot_spectrum", "plot_loss_landscape", "CURVATURE_MATRICES", "LANDSCAPE_DIRECTIONS"]

PathLike = Union[str, os.PathLike]

#: ``curvature_matrix`` names: the paper's two Lanczos matrices and the diagonal baselines.
CURVATURE_MATRICES = {
    "hessian_lanczos": "Lanczos on Hessian-vector products",
    "ggn_lanczos": "Lanczos on generalised Gauss-Newton-vector products",
    "ggn_diag": "Monte Carlo estimate of the GGN diagonal (the paper's Diag-GGN)",
    "hessian_diag": "Hutchinson estimate of the Hessian diagonal",
}

#: ``directions`` of :func:`build_loss_landscape`: eigenvectors of a spectrum, or random ones, each named by how it
#: is normalised (the ``norm`` of :func:`curvwidgets.random_directions`).
LANDSCAPE_DIRECTIONS = ("eigenvectors", "random", "filter-normalised", "layer-normalised", "weight-normalised",
                        "dfilter-normalised", "dlayer-normalised")
_NORM_OF = {"random": "unit", **{name: name.split("-")[0] for name in LANDSCAPE_DIRECTIONS[2:]}}

#: The core's argument names that the paper's functions call otherwise (each function uses those it passes on).
_LOADING_NAMES = {"checkpoint": "checkpoint_path", "root": "data_path"}
_TRAINING_NAMES = {"out_dir": "dir", "save_every": "save_freq", "root": "data_path"}
_SPECTRUM_NAMES = {**_LOADING_NAMES, "steps": "lanczos_iters", "save_vectors": "save_eigvec",
                   "matrix": "curvature_matrix"}
_LANDSCAPE_NAMES = {**_LOADING_NAMES, "count": "num_random"}


def train_network(
    dir: PathLike,
    dataset: str = "CIFAR100",
    data_path: Optional[PathLike] = None,
    model: str = "VGG16",
    epochs: int = 300,
    optimizer: str = "SGD",
    optimizer_kwargs: Optional[Dict[str, Any]] = None,
    schedule: str = "linear",
    *,
    schedule_kwargs: Optional[Dict[str, Any]] = None,
    batch_size: int = 128,
    save_freq: Optional[int] = 25,
    swa_start: Optional[int] = None,
    swa_lr: Optional[float] = None,
    resume: Optional[PathLike] = None,
    seed: int = 0,
    device: Optional[str] = None,
    download: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    monitor: Any = None,
) -> TrainingHistory:
    """Train ``model`` on ``dataset`` and write ``dir/checkpoint-XXXXX.pt`` and ``dir/history.json``.

    Parameters
    ----------
    dir : path
        Folder for the checkpoints and the history.
    dataset : str, default: "CIFAR100"
        A name of :func:`curvwidgets.data.names` (``"digits"`` is embedded).
    data_path : path, optional
        Where CIFAR lives (default ``$CURVWIDGETS_DATA`` or ``~/.cache/curvwidgets/data``).
    model : str, default: "VGG16"
        A name of :func:`curvwidgets.models.names`.
    epochs, optimizer, optimizer_kwargs, schedule, schedule_kwargs
        As for :func:`curvwidgets.train` (SGD defaults to ``lr=0.05,
        momentum=0.9, weight_decay=5e-4``; ``"linear"`` is eq. 19).
    batch_size : int, default: 128
    save_freq : int, optional, default: 25
        A checkpoint every this many epochs (and always after the last).
    swa_start, swa_lr, resume, seed, device, progress, cancel
        As for :func:`curvwidgets.train`.
    download : bool, default: False
        Let torchvision fetch CIFAR into ``data_path`` when it is missing.
    monitor : CurvatureMonitor, optional
        Measure the sharpness during training, every ``every`` epochs or
        (``unit="step"``) optimiser steps (see :func:`curvwidgets.train`);
        ``history.json`` keeps every measurement in ``measurements``.

    Returns
    -------
    TrainingHistory
    """
    from .training import data as datasets
    from .training import models, optim, schedules, train
    from .training.distributed import default_device, join_process_group
    from .training.loop import keyword_options, optimizer_options, swa_settings, writable_folder
    from .training.monitor import CurvatureMonitor

    with _api_names(_TRAINING_NAMES):
        _path("dir", dir, required=True)
        writable_folder(dir)
        dataset = _name("dataset", dataset, datasets.names())
        _path("data_path", data_path)
        model = _name("model", model, models.names())
        epochs = positive_int("epochs", epochs)
        _name("optimizer", optimizer, optim.names())
        optimizer_options(optimizer, optimizer_kwargs)
        choice("schedule", schedule, schedules.names())
        try:
            schedules.create(schedule, epochs, **keyword_options("schedule_kwargs", schedule_kwargs))
        except ValueError as error:  # its options, checked before any data is read
            raise ValueError(f"schedule_kwargs: {error}") from None
        batch_size = positive_int("batch_size", batch_size)
        save_freq = _optional(positive_int, "save_freq", save_freq)
        swa_settings(swa_start, swa_lr, epochs)
        _resumable(_path("resume", resume))
        seed = seed_value("seed", seed)
        device = device_value("device", device)
        boolean("download", download)
        _protocol(progress, cancel)
        if monitor is not None and not isinstance(monitor, CurvatureMonitor):
            raise TypeError(f"monitor must be None or a cw.CurvatureMonitor; got {type_name(monitor)}")

        rank, world = join_process_group()
        device = device or default_device()
        loaded = datasets.load(dataset, root=data_path, download=download, batch_size=batch_size, device=device,
                               seed=seed, rank=rank, world_size=world)
        every = None if save_freq is None or save_freq >= epochs else save_freq
        report(progress, cancel, "train", 0, epochs, partial=lambda: None)  # data loaded; the first epoch next
        return train(model, loaded, epochs, optimizer=optimizer, optimizer_kwargs=optimizer_kwargs, schedule=schedule,
                     schedule_kwargs=schedule_kwargs, out_dir=dir, save_every=every, resume=resume, device=device,
                     seed=seed, swa_start=swa_start, swa_lr=swa_lr, progress=progress, cancel=cancel, monitor=monitor)


def compute_eigenspectrum(
    dataset: Optional[str] = None,
    data_path: Optional[PathLike] = None,
    model: Optional[str] = None,
    checkpoint_path: Optional[PathLike] = None,
    save_spectrum_path: Optional[PathLike] = None,
    save_eigvec: bool = False,
    lanczos_iters: int = 100,
    curvature_matrix: str = "hessian_lanczos",
    *,
    num_vectors: int = 1,
    bn_mode: Optional[str] = None,
    params: Any = None,
    num_samples: Optional[int] = None,
    num_mc: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    backend: str = "auto",
    basis_device: Optional[str] = None,
    swa: bool = False,
    device: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    tol: Optional[float] = None,
    tol_pairs: int = 1,
) -> Union[Spectrum, Diagonal]:
    """The spectrum (or a diagonal baseline) of a checkpoint's curvature, saved to ``save_spectrum_path``.

    Parameters
    ----------
    dataset, model : str, optional
        Checked against the checkpoint's run when given (the checkpoint knows
        both); ``dataset`` may name another data set with the same inputs.
    data_path : path, optional
        Where CIFAR lives.
    checkpoint_path : path
        A checkpoint file, or a run's folder (its latest checkpoint).
    save_spectrum_path : path, optional
        Where the result goes (npz; ``.npz`` is added when missing).
    save_eigvec : bool, default: False
        Keep the Ritz vectors (float32, ``lanczos_iters * P`` numbers), which
        :func:`build_loss_landscape` walks along.
    lanczos_iters : int, default: 100
        Lanczos steps (the most, with ``tol``).
    curvature_matrix : str, default: "hessian_lanczos"
        One of :data:`CURVATURE_MATRICES`.
    num_vectors : int, default: 1
        Random start vectors (the paper uses one; several give the trace and
        negative mass standard errors, :meth:`Spectrum.estimates`).
    bn_mode : {"train", "eval"}, optional
        BatchNorm during the products; default ``"train"`` (the paper's: each
        batch's statistics), ``"eval"`` for ``"ggn_diag"`` (which needs it).
    params, num_samples, seed, backend, basis_device
        As for :func:`curvwidgets.spectrum`.
    num_mc : int, default: 1
        Monte Carlo draws per sample for ``"ggn_diag"``; ``"hessian_diag"``
        uses ``10 * num_mc`` Hutchinson probes.
    batch_size : int, default: 256
        Batch size of the passes over the data (the result does not depend on it).
    swa : bool, default: False
        Use the checkpoint's SWA average.
    device, progress, cancel
        Device (default: CUDA when available) and the progress protocol.
    tol, tol_pairs
        Stop each Lanczos run once its ``tol_pairs`` largest Ritz values have
        residual estimates ``<= tol * |theta|`` (Lanczos only; see
        :func:`curvwidgets.spectrum`).

    Returns
    -------
    Spectrum or Diagonal
    """
    from .curvature.operators import BN_MODES
    from .curvature.spectrum import MATRICES

    choice("curvature_matrix", curvature_matrix, tuple(CURVATURE_MATRICES))
    matrix = curvature_matrix.split("_")[0]
    _path("checkpoint_path", checkpoint_path, required=True)
    _loading_options(dataset, data_path, model, swa, device, batch_size)
    _path("save_spectrum_path", save_spectrum_path)
    boolean("save_eigvec", save_eigvec)
    positive_int("lanczos_iters", lanczos_iters)
    positive_int("num_vectors", num_vectors)
    _optional(positive, "tol", tol)
    positive_int("tol_pairs", tol_pairs)
    bn_mode = choice("bn_mode", bn_mode, BN_MODES) if bn_mode is not None else \
        ("eval" if curvature_matrix == "ggn_diag" else "train")
    if curvature_matrix == "ggn_diag" and bn_mode != "eval":
        raise ValueError(f"bn_mode must be 'eval' for curvature_matrix='ggn_diag' (with each batch's statistics a "
                         f"sample has no gradient of its own); got {bn_mode!r}")
    _optional(positive_int, "num_samples", num_samples)
    positive_int("num_mc", num_mc)
    seed_value("seed", seed)
    choice("backend", backend, ("auto", MATRICES[matrix].preferred_backend, "double-backward"))
    device_value("basis_device", basis_device)
    _protocol(progress, cancel)
    if save_spectrum_path is not None:
        _writable("save_spectrum_path", npz_path(save_spectrum_path))

    with _api_names(_SPECTRUM_NAMES):
        trained = _load(checkpoint_path, dataset, data_path, model, device, swa, batch_size)
        meta = {**trained.metadata(), "data": trained.data.name, "curvature_matrix": curvature_matrix,
                "bn_mode": bn_mode}
        if curvature_matrix.endswith("_lanczos"):
            from .curvature import spectrum

            result: Union[Spectrum, Diagonal] = spectrum(
                trained.model, trained.data, matrix, lanczos_iters, num_vectors, params=params, bn_mode=bn_mode,
                num_samples=num_samples, seed=seed, backend=backend, save_vectors=save_eigvec,
                basis_device=basis_device, meta=meta, progress=progress, cancel=cancel, tol=tol, tol_pairs=tol_pairs)
        else:
            result = _diagonal(trained, matrix, meta, params, bn_mode, num_samples, num_mc, seed, backend)
    if save_spectrum_path is not None:
        result.save(save_spectrum_path)
    return result


def _diagonal(trained, matrix: str, meta: Dict[str, Any], params, bn_mode: str, num_samples, num_mc: int, seed: int,
              backend: str) -> Diagonal:
    """The Monte Carlo GGN diagonal or the Hutchinson Hessian diagonal of a trained model."""
    from .curvature.diagonal import hutchinson_diagonal, mc_ggn_diagonal
    from .curvature.spectrum import curvature_operator

    op = curvature_operator(trained.model, trained.data, matrix, params=params, bn_mode=bn_mode,
                            num_samples=num_samples, seed=seed, backend=backend)
    as_array = lambda tensor: tensor.detach().cpu().numpy().astype("float32")  # noqa: E731
    meta = {**meta, "matrix": f"{matrix}_diag", "num_mc": num_mc, "seed": seed}
    if matrix == "ggn":  # one pass for all draws; their standard error would take one pass per draw
        return Diagonal(as_array(mc_ggn_diagonal(op, num_mc=num_mc, seed=seed)), meta)
    values, error = hutchinson_diagonal(op, num_samples=10 * num_mc, seed=seed, with_error=True)  # the same products
    return Diagonal(as_array(values), meta, as_array(error))


def compute_loss_stats(
    dataset: Optional[str] = None,
    data_path: Optional[PathLike] = None,
    model: Optional[str] = None,
    checkpoint_path: Optional[PathLike] = None,
    save_path: Optional[PathLike] = None,
    *,
    curvature: Sequence[str] = ("hessian", "ggn"),
    num_probes: int = 10,
    bn_mode: str = "eval",
    params: Any = None,
    num_samples: Optional[int] = None,
    batch_size: int = 128,
    seed: int = 0,
    swa: bool = False,
    device: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Dict[str, float]:
    """The paper's loss statistics of a checkpoint (:func:`curvwidgets.loss_stats`), saved as JSON.

    The mini-batch variances depend on ``batch_size`` (the batches of the
    statistics); the means do not. ``save_path`` gets ``{"format", "version",
    "meta", "statistics"}`` written atomically.
    """
    from .curvature import loss_stats
    from .curvature.operators import BN_MODES
    from .curvature.stats import curvature_names
    from .training.data import default_loss

    _path("checkpoint_path", checkpoint_path, required=True)
    _loading_options(dataset, data_path, model, swa, device, batch_size)
    _path("save_path", save_path)
    curvature_names(curvature)
    positive_int("num_probes", num_probes)
    choice("bn_mode", bn_mode, BN_MODES)
    _optional(positive_int, "num_samples", num_samples)
    seed_value("seed", seed)
    _protocol(progress, cancel)
    if save_path is not None:
        save_path = Path(save_path).expanduser()
        _writable("save_path", save_path)
    with _api_names(_LOADING_NAMES):
        trained = _load(checkpoint_path, dataset, data_path, model, device, swa, batch_size)
        statistics = loss_stats(trained.model, default_loss(trained.data), trained.data.evaluation_loader("train"),
                                params=params, bn_mode=bn_mode, curvature=curvature, num_probes=num_probes,
                                seed=seed, num_samples=num_samples, progress=progress, cancel=cancel)
    if save_path is not None:
        meta = {**trained.metadata(), "data": trained.data.name, "bn_mode": bn_mode, "batch_size": batch_size,
                "num_probes": num_probes, "seed": seed}
        with atomic_path(save_path) as temporary:
            temporary.write_text(json.dumps({"format": "curvwidgets.LossStatistics", "version": 1, "meta": meta,
                                             "statistics": statistics}, indent=1))
    return statistics


def build_loss_landscape(
    dataset: Optional[str] = None,
    data_path: Optional[PathLike] = None,
    model: Optional[str] = None,
    dist: float = 0.25,
    n_points: int = 21,
    spectrum_path: Optional[PathLike] = None,
    checkpoint_path: Optional[PathLike] = None,
    save_path: Optional[PathLike] = None,
    *,
    largest: int = 3,
    smallest: int = 3,
    nearest_zero: int = 0,
    directions: str = "eigenvectors",
    num_random: int = 2,
    one_axis: Optional[str] = None,
    states: bool = False,
    plane: bool = False,
    bn: str = "keep",
    batch_size: int = 256,
    seed: int = 0,
    swa: bool = False,
    device: Optional[str] = None,
    allow_other_weights: bool = False,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Landscape:
    """Loss and accuracy of a checkpoint along eigenvectors of a saved spectrum (Figures 8 to 11).

    Parameters
    ----------
    dataset, data_path, model, checkpoint_path, swa, device
        As for :func:`compute_eigenspectrum`.
    dist : float, default: 0.25
        Steps ``t`` in ``[-dist, dist]`` along unit directions.
    n_points : int, default: 21
    spectrum_path : path
        A spectrum saved with ``save_eigvec=True`` (needed for ``directions="eigenvectors"``).
    save_path : path, optional
        Where the :class:`~curvwidgets.Landscape` goes (npz).
    largest, smallest, nearest_zero : int, default: 3, 3, 0
        Which eigenvectors, by rank of their Ritz values (the paper shows the
        three largest and three most negative).
    directions : str, default: "eigenvectors"
        One of :data:`LANDSCAPE_DIRECTIONS`. The others are ``num_random``
        random directions, for comparison, drawn from ``seed``: ``"random"``
        Gaussian of unit length, or normalised as Li et al. (2018) define it:
        ``"filter-normalised"``, ``"layer-normalised"``,
        ``"weight-normalised"``, ``"dfilter-normalised"`` or
        ``"dlayer-normalised"`` (their ``norm``; see
        :func:`curvwidgets.random_directions`).
    one_axis : {"zero", "weights"}, optional
        With Li et al.'s normalisations: the direction of biases and
        BatchNorm parameters is zero (the default, their ``ignore="biasbn"``)
        or the parameter itself (``"weights"``, their ``ignore=""``).
    states : bool, default: False
        Li et al.'s ``dir_type="states"``: the directions move the BatchNorm
        running statistics too (needs a Li normalisation and
        ``one_axis="weights"``, and a model with BatchNorm). The options are
        recorded in ``meta["direction_options"]``.
    plane : bool, default: False
        The plane of the first two directions on an ``n_points x n_points`` grid.
    bn : {"keep", "recompute"}, default: "keep"
        BatchNorm statistics at each point (see :func:`curvwidgets.landscape`).
    allow_other_weights : bool, default: False
        Use the eigenvectors of ``spectrum_path`` even though it records a
        fingerprint of other weights than the checkpoint's (a spectrum of
        another checkpoint or run); without it, an
        :class:`~curvwidgets.OtherWeightsError` before any work. Spectra
        written before fingerprints were recorded are not checked.
    """
    from .curvature.fingerprint import check_same_weights, fingerprint
    from .directions import _recipe, eigen_directions, random_directions
    from .landscape import BN_OPTIONS, loss_landscape

    choice("directions", directions, LANDSCAPE_DIRECTIONS)
    boolean("states", states)
    if directions == "eigenvectors":
        if one_axis is not None or states:
            raise ValueError(f"one_axis and states apply to random directions; got one_axis={one_axis!r} and "
                             f"states={states!r} with directions='eigenvectors'")
    else:
        norm, one_axis = _recipe(_NORM_OF[directions], one_axis, states, unit="directions='random'")
    positive("dist", dist)
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
        raise ValueError(f"n_points must be an int >= 2; got {n_points!r}")
    _path("checkpoint_path", checkpoint_path, required=True)
    _loading_options(dataset, data_path, model, swa, device, batch_size)
    _path("save_path", save_path)
    picks = {name: non_negative_int(name, value)
             for name, value in (("largest", largest), ("smallest", smallest), ("nearest_zero", nearest_zero))}
    num_random = positive_int("num_random", num_random)
    boolean("plane", plane)
    choice("bn", bn, BN_OPTIONS)
    if states and bn == "recompute":
        raise ValueError("states=True moves the BatchNorm running statistics, which bn='recompute' recomputes at "
                         "every point: use bn='keep'")
    seed_value("seed", seed)
    boolean("allow_other_weights", allow_other_weights)
    _protocol(progress, cancel)
    if directions == "eigenvectors":
        _path("spectrum_path", spectrum_path, required=True)
        if not any(picks.values()):
            raise ValueError("largest, smallest and nearest_zero are all 0: pick at least one eigenvector")
    elif plane and num_random < 2:
        raise ValueError(f"num_random must be >= 2 for plane=True (the plane of the first two directions); "
                         f"got {num_random}")
    if save_path is not None:
        _writable("save_path", npz_path(save_path))
    spectrum = None
    if directions == "eigenvectors":
        spectrum = Spectrum.load(spectrum_path)
        if spectrum.ritz_vectors is None:
            raise ValueError(f"spectrum_path {os.fspath(spectrum_path)!r} was saved without eigenvectors; compute it "
                             "with save_eigvec=True")
    with _api_names(_LANDSCAPE_NAMES):
        trained = _load(checkpoint_path, dataset, data_path, model, device, swa, batch_size)
    if spectrum is not None:
        size = sum(p.numel() for p in trained.model.parameters() if p.requires_grad)
        if spectrum.ritz_vectors.shape[-1] != size:
            raise ValueError(f"spectrum_path {os.fspath(spectrum_path)!r} holds eigenvectors of "
                             f"{spectrum.ritz_vectors.shape[-1]} parameters, but the model of {trained.checkpoint!r} "
                             f"has {size}: a spectrum of another model or of a parameter subset")
        if not allow_other_weights:
            check_same_weights(spectrum.fingerprint, fingerprint(trained.model),
                               f"spectrum_path {os.fspath(spectrum_path)!r}", f"those of {trained.checkpoint!r}",
                               "allow_other_weights=True")
        chosen = eigen_directions(spectrum, **picks)
    else:
        chosen = random_directions(trained.model, num_random, seed=seed, norm=norm, one_axis=one_axis, states=states)
    if plane:
        chosen = chosen[:2]
    meta = {**trained.metadata(), "data": trained.data.name, "spectrum": os.fspath(spectrum_path) if spectrum else None,
            "matrix": spectrum.meta.get("matrix") if spectrum else None, "direction_kind": directions}
    with _api_names(_LANDSCAPE_NAMES):
        result = loss_landscape(trained.model, trained.data, chosen, dist=dist, n_points=n_points, plane=plane, bn=bn,
                                allow_other_weights=allow_other_weights, meta=meta, progress=progress, cancel=cancel)
    if save_path is not None:
        result.save(save_path)
    return result


def plot_training(dir: Union[PathLike, TrainingHistory], save_path: Optional[PathLike] = None):
    """Loss and accuracy curves of a run (its folder, ``history.json`` or a TrainingHistory); returns the figure."""
    from . import plots

    if not isinstance(dir, TrainingHistory):
        _path("dir", dir, required=True)
    _figure_path(save_path)
    history = dir if isinstance(dir, TrainingHistory) else TrainingHistory.load(
        Path(dir) / "history.json" if Path(dir).is_dir() else dir)
    axes = plots.training_curves(history)
    axes[0].figure.suptitle(f"{history.config.get('model', '')} on {history.config.get('data', '')}")
    return _finish(axes[0].figure, save_path)


def plot_spectrum(spectrum_path: Union[PathLike, Spectrum, Sequence[Union[PathLike, Spectrum, Diagonal]]],
                  save_path: Optional[PathLike] = None, log: bool = True):
    """Figure 6: the Lanczos stems of one or more spectra against a Diag-GGN histogram; returns the figure.

    ``spectrum_path`` is one result (file or object) or a list of them; a
    :class:`~curvwidgets.Diagonal` among them is drawn as the histogram.
    """
    from . import plots

    items = spectrum_path if isinstance(spectrum_path, (list, tuple)) else [spectrum_path]
    if not items:
        raise ValueError("spectrum_path must name at least one Spectrum; got an empty list")
    for index, item in enumerate(items):
        if not isinstance(item, (Spectrum, Diagonal, Landscape)):
            _path(f"spectrum_path[{index}]" if items is spectrum_path else "spectrum_path", item, required=True)
    _figure_path(save_path)
    boolean("log", log)
    results = [item if isinstance(item, (Spectrum, Diagonal, Landscape)) else load_result(item) for item in items]
    spectra = [result for result in results if isinstance(result, Spectrum)]
    diagonals = [result for result in results if isinstance(result, Diagonal)]
    if not spectra or len(diagonals) > 1 or len(spectra) + len(diagonals) != len(results):
        found = ", ".join(f"a {type(result).__name__}" + ("" if item is result else f" ({os.fspath(item)!r})")
                          for item, result in zip(items, results))
        raise ValueError(f"spectrum_path must name at least one Spectrum and at most one Diagonal; got {found}")
    ax = plots.network_spectrum(spectra, diagonals[0] if diagonals else None, log=log)
    first = spectra[0].meta
    ax.set_title(f"{first.get('model', '')} epoch {first.get('epoch', '')}, m = {spectra[0].steps}")
    return _finish(ax.figure, save_path)


def plot_loss_landscape(path: Union[PathLike, Landscape], save_path: Optional[PathLike] = None,
                        metric: str = "loss"):
    """Figures 8 to 11: train and test ``metric`` (``"loss"`` or ``"accuracy"``) along each direction.

    A plane landscape is drawn as contours. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from . import plots

    if not isinstance(path, Landscape):
        _path("path", path, required=True)
    _figure_path(save_path)
    choice("metric", metric, ("loss", "accuracy"))
    result = path if isinstance(path, Landscape) else Landscape.load(path)
    splits = [split for split in ("train", "test") if f"{split}_{metric}" in result.values]
    figure, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.8), layout="constrained", squeeze=False)
    draw = plots.landscape_lines if result.kind == "line" else plots.landscape_plane
    for ax, split in zip(axes[0], splits):
        draw(result, f"{split}_{metric}", ax=ax)
        ax.set_title(f"{split} {metric}")
    return _finish(figure, save_path)


def _figure_path(save_path: Optional[PathLike]) -> None:
    """Check, before drawing, that a figure can be saved to ``save_path`` (a path whose suffix names a format)."""
    from matplotlib.figure import Figure

    if _path("save_path", save_path) is None:
        return
    suffix = Path(save_path).suffix.lstrip(".").lower()
    formats = Figure().canvas.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise ValueError(f"save_path {os.fspath(save_path)!r}: matplotlib cannot write the format {suffix!r}; "
                         f"use one of {', '.join(sorted(formats))}")
    _writable("save_path", save_path)


def _finish(figure, save_path: Optional[PathLike]):
    """Save ``figure`` to ``save_path`` atomically (checked by :func:`_figure_path`); return it."""
    if save_path is not None:
        with atomic_path(save_path) as temporary:
            figure.savefig(temporary, dpi=110)
    return figure


def _load(checkpoint_path, dataset, data_path, model, device, swa: bool, batch_size: int):
    """The checkpoint's model and data (``dataset`` replacing the data it names), checked against ``model``."""
    from .training import data as datasets
    from .training import load_trained, models

    trained = load_trained(checkpoint_path, device, swa=swa, root=data_path, batch_size=batch_size,
                           data=dataset is None)
    if model is not None and models.canonical_name(model) != trained.name:
        raise ValueError(f"model={model!r}, but {trained.checkpoint!r} is a checkpoint of {trained.name!r}")
    if dataset is not None:
        trained.data = datasets.load(dataset, root=data_path, augment=False, batch_size=batch_size,
                                     validation=trained.config.get("validation", False),
                                     device=next(trained.model.parameters()).device)
        if trained.data.num_classes != trained.config.get("architecture", {}).get("num_classes",
                                                                                 trained.data.num_classes):
            raise ValueError(f"dataset={dataset!r} has {trained.data.num_classes} classes but the model of "
                             f"{trained.checkpoint!r} has {trained.config['architecture']['num_classes']} outputs")
    return trained


def _loading_options(dataset, data_path, model, swa, device, batch_size) -> None:
    """Check the arguments of :func:`_load` that every function reading a checkpoint takes."""
    from .training import data as datasets
    from .training import models

    _optional(_name, "dataset", dataset, datasets.names())
    _path("data_path", data_path)
    _optional(_name, "model", model, models.names())
    boolean("swa", swa)
    device_value("device", device)
    positive_int("batch_size", batch_size)


def _optional(check: Callable[..., Any], name: str, value: Any, *options: Any) -> Any:
    """None, or ``check(name, value, *options)``."""
    return None if value is None else check(name, value, *options)


def _name(name: str, value: Any, known: Sequence[str]) -> str:
    """The spelling in ``known`` of ``value`` (any letter case), else ``ValueError`` naming ``name``."""
    for option in known:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    raise ValueError(f"{name} must be one of {tuple(known)} (any letter case); got {value!r}")


def _path(name: str, value: Any, required: bool = False) -> Optional[Path]:
    """``value`` as a Path (None when not ``required``), else an error naming ``name``."""
    if value is None:
        if required:
            raise ValueError(f"{name} is required: a path")
        return None
    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        raise TypeError(f"{name} must be a path (str or os.PathLike); got {type(value).__name__} {value!r}")
    if not os.fspath(value):
        raise ValueError(f"{name} must be a path; got ''")
    return Path(value)


def _resumable(resume: Optional[Path]) -> None:
    """Raise ``FileNotFoundError`` unless ``resume`` is None, a file, or a folder holding checkpoints."""
    from .training.checkpoint import latest_checkpoint

    if resume is None or resume.is_file():
        return
    if not resume.is_dir():
        raise FileNotFoundError(f"resume {os.fspath(resume)!r} does not exist (give a checkpoint file or the run "
                                "folder of one)")
    latest_checkpoint(resume)


def _writable(name: str, path: Path) -> None:
    """:func:`check_writable`, its error naming the argument ``name``."""
    try:
        check_writable(path)
    except OSError as error:
        raise type(error)(f"{name}: {error}") from None


def _protocol(progress: Any, cancel: Any) -> None:
    """Check the progress protocol's two arguments."""
    check_progress(progress)
    check_cancel(cancel)


#: The exception types whose message :func:`_api_names` rewrites (those built from the message alone).
_RENAMED_ERRORS = (TypeError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


@contextmanager
def _api_names(names: Mapping[str, str]) -> Iterator[None]:
    """Re-raise an error of the core whose message begins with a core argument's name with the API's name instead."""
    try:
        yield
    except _RENAMED_ERRORS as error:
        message = str(error)
        first = re.match(r"\w+", message)
        if type(error) not in _RENAMED_ERRORS or first is None or first.group() not in names:
            raise
        raise type(error)(names[first.group()] + message[first.end():]) from error
