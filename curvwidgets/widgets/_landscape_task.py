"""What :class:`~curvwidgets.widgets.LandscapeWidget` computes: ``cw.loss_landscape`` along the directions picked."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..directions import Direction, random_directions
from ..landscape import loss_landscape
from ..progress import CancelToken, ProgressCallback
from ..results import Landscape, Spectrum
from ._checkpoints import CheckpointSource, model_and_data

__all__ = ["DIRECTION_KINDS", "LandscapeSettings", "as_spectrum", "stem_order", "stem_label", "stem_directions",
           "run_landscape"]

#: The widget's direction kinds: eigenvectors clicked on the spectrum, random Gaussian unit ones, or random ones
#: normalised as Li et al. (2018) (by filter unless ``norm`` says otherwise).
DIRECTION_KINDS = ("eigen", "random", "filter")


def as_spectrum(value: Any) -> Optional[Spectrum]:
    """``value`` as a :class:`~curvwidgets.Spectrum` with Ritz vectors: a Spectrum, a spectrum file's path, or None.

    Raises
    ------
    TypeError
        Anything else.
    ValueError
        A spectrum without Ritz vectors.
    FileNotFoundError, ResultFileError
        From :meth:`Spectrum.load`.
    """
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        value = Spectrum.load(value)
    if not isinstance(value, Spectrum):
        raise TypeError(f"spectrum must be a curvwidgets Spectrum, the path of a spectrum file, or None; got "
                        f"{type(value).__name__}")
    if value.ritz_vectors is None:
        raise ValueError("spectrum has no Ritz vectors: compute it with save_vectors=True (the SpectrumWidget's "
                         "'keep eigenvectors', save_eigvec=True in compute_eigenspectrum)")
    return value


def stem_order(spectrum: Spectrum, run: int = 0) -> np.ndarray:
    """The stem picker's order: indices into ``spectrum.lanczos.nodes(run)`` from the largest Ritz value down.

    Returns
    -------
    ndarray of int, shape (num_steps[run],)
        Position ``i`` of the picker is the ``(i + 1)``-th largest Ritz value,
        ties in the order of :func:`curvwidgets.eigen_directions`.
    """
    return np.argsort(-spectrum.lanczos.nodes(run), kind="stable")


def stem_label(position: int, theta: float, count: int) -> str:
    """Label of the stem at ``position`` of a picker of ``count`` stems, as ``cw.eigen_directions`` names it.

    The upper half of the picker (positions below ``ceil(count / 2)``) counts
    from the largest Ritz value, the lower half from the smallest, so the most
    negative one is ``"smallest 1"``, as ``eigen_directions(smallest=1)`` and
    the command line call it.

    Examples
    --------
    >>> stem_label(0, 18.55, 12), stem_label(11, -20.32, 12)
    ('largest 1 (theta = 18.55)', 'smallest 1 (theta = -20.32)')
    """
    if position < -(-count // 2):
        return f"largest {position + 1} (theta = {theta:.4g})"
    return f"smallest {count - position} (theta = {theta:.4g})"


def stem_directions(spectrum: Spectrum, positions: Sequence[int], run: int = 0) -> List[Direction]:
    """The unit Ritz vectors at ``positions`` of the stem picker (largest Ritz value first).

    Only the vectors picked are copied out of ``spectrum.ritz_vectors``. With
    ``n`` stems and ``h = ceil(n / 2)``, the direction at position ``i < h``
    equals ``eigen_directions(spectrum, largest=h, smallest=n - h, run=run)[i]``
    and the one at position ``n - 1 - j`` equals its entry ``h + j``
    (``"smallest j + 1"``): same vector, Ritz value and label.

    Parameters
    ----------
    spectrum : Spectrum
        With Ritz vectors, shape ``(num_vectors, steps, P)``.
    positions : sequence of int
        Positions in :func:`stem_order`, each in ``[0, num_steps[run])``.
    run : int, default: 0
        Which start vector's Ritz pairs.

    Returns
    -------
    list of Direction
        In the order of ``positions``; ``curvature`` is the Ritz value ``theta``.
    """
    values, order = spectrum.lanczos.nodes(run), stem_order(spectrum, run)
    directions = []
    for position in positions:
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or \
                not 0 <= position < order.size:
            raise ValueError(f"stem positions must be ints in [0, {order.size}); got {position!r}")
        index = order[position]
        theta = float(values[index])
        vector = torch.from_numpy(np.array(spectrum.ritz_vectors[run, index]))
        directions.append(Direction(vector, stem_label(int(position), theta, order.size), theta, spectrum.fingerprint))
    return directions


@dataclass(frozen=True)
class LandscapeSettings:
    """One landscape computation, as read from the widget's controls.

    Attributes
    ----------
    checkpoint : str
        Path of a checkpoint (file or run folder) to load with
        :func:`curvwidgets.load_trained`; empty to use the widget's model and data.
    directions : {"eigen", "random", "filter"}
        Eigenvectors of the spectrum (those at ``picked``), random Gaussian
        unit directions, or random ones normalised as Li et al. (2018) by ``norm``.
    picked : tuple of int
        Positions in the stem picker (:func:`stem_order`) of the eigenvectors.
    run : int
        The spectrum's start vector whose Ritz pairs are picked.
    count, seed : int
        How many random directions, and their seed.
    norm : {"filter", "layer", "weight", "dfilter", "dlayer"} or None
        Normalised directions (``"filter"``) only: Li et al.'s normalisation
        (None, the default, is ``"filter"``); see :func:`curvwidgets.random_directions`.
    one_axis : {"zero", "weights"} or None
        Normalised directions only: biases and BatchNorm parameters
        not moved (None, the default, is ``"zero"``) or moved by their own
        values (``"weights"``, Li et al.'s ``ignore=""``); see
        :func:`curvwidgets.random_directions`.
    states : bool
        Normalised directions only, with ``one_axis="weights"``: move
        the BatchNorm running statistics too (Li et al.'s ``dir_type="states"``).
    dist : float
        ``t`` runs over ``[-dist, dist]`` (units of the unit directions).
    n_points : int
        Points per line, or per axis of the plane.
    plane : bool
        The plane of exactly two directions instead of a line each.
    bn : {"keep", "recompute"}
    points_per_pass : int or None
        Points evaluated together; None lets :func:`curvwidgets.loss_landscape` time it.
    allow_other_weights : bool
        Walk along eigenvectors of other weights (see :func:`curvwidgets.loss_landscape`).
    """

    checkpoint: str = ""
    directions: str = "eigen"
    picked: Tuple[int, ...] = ()
    run: int = 0
    count: int = 2
    seed: int = 0
    norm: Optional[str] = None
    one_axis: Optional[str] = None
    states: bool = False
    dist: float = 1.0
    n_points: int = 21
    plane: bool = False
    bn: str = "keep"
    points_per_pass: Optional[int] = None
    allow_other_weights: bool = False

    def options(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`curvwidgets.loss_landscape` set by the controls."""
        return dict(dist=self.dist, n_points=self.n_points, plane=self.plane, bn=self.bn,
                    points_per_pass=self.points_per_pass, allow_other_weights=self.allow_other_weights)

    def chosen(self, model: nn.Module, spectrum: Optional[Spectrum]) -> Tuple[List[Direction], Any]:
        """The directions, and the parameters they move (the spectrum's for eigenvectors, all for random ones).

        Raises
        ------
        ValueError
            Eigenvectors without a spectrum or with no stem picked; ``norm``,
            ``one_axis`` or ``states`` with other than normalised directions
            (for random unit ones :func:`curvwidgets.random_directions` names them).
        """
        if self.directions != "eigen":
            return random_directions(model, self.count, self.seed, norm=self._norm(), one_axis=self.one_axis,
                                     states=self.states), None
        if self.norm is not None or self.one_axis is not None or self.states:
            raise ValueError(f"norm, one_axis and states apply to random directions; got norm={self.norm!r}, "
                             f"one_axis={self.one_axis!r} and states={self.states!r} with eigenvector directions")
        if spectrum is None:
            raise ValueError("spectrum: eigenvector directions need a Spectrum with Ritz vectors (set "
                             "widget.spectrum), or choose random or filter-normalised directions")
        if not self.picked:
            raise ValueError("directions: click at least one stem of the spectrum (ctrl-click for more)")
        return stem_directions(spectrum, self.picked, self.run), spectrum.meta.get("params")

    def _norm(self) -> str:
        """The ``norm`` of :func:`curvwidgets.random_directions`: ``"unit"`` for random, Li et al.'s for normalised."""
        if self.directions == "filter":
            return self.norm if self.norm is not None else "filter"
        if self.norm not in (None, "unit"):
            raise ValueError(f"norm={self.norm!r} applies to normalised directions (directions='filter'); random "
                             "directions (directions='random') are of unit length")
        return "unit"


def run_landscape(settings: LandscapeSettings, spectrum: Optional[Spectrum], model: Optional[nn.Module], data: Any,
                  loss_fn: Optional[Callable], source: CheckpointSource, progress: ProgressCallback,
                  cancel: CancelToken) -> Landscape:
    """The landscape of ``settings``: of ``model`` on ``data``, or of the checkpoint's model on its data.

    A checkpoint is read through ``source`` (a stage ``"checkpoint"`` event
    comes first, see :func:`model_and_data`). Then the events of
    :func:`curvwidgets.loss_landscape` (stage ``"landscape"``, partial
    :class:`~curvwidgets.results.Landscape` with NaN at the points not done).

    Raises
    ------
    ValueError
        Neither a checkpoint nor a model and data; no direction; any bad
        setting (from :func:`curvwidgets.loss_landscape`).
    Cancelled
        ``.result`` is the partial :class:`~curvwidgets.results.Landscape`.
    """
    model, data, meta = model_and_data(settings.checkpoint, model, data, source, progress, cancel)
    directions, params = settings.chosen(model, spectrum)
    meta = {**meta, "direction_kind": settings.directions,
            "matrix": spectrum.meta.get("matrix") if settings.directions == "eigen" else None}
    return loss_landscape(model, data, directions, loss_fn=loss_fn, params=params, meta=meta, progress=progress,
                          cancel=cancel, **settings.options())
