"""Directions in weight space for loss landscapes: Hessian or GGN eigenvectors, random or normalised as Li et al. define them.

:class:`Direction` is what :func:`~curvwidgets.landscape.loss_landscape`
walks along: a flat vector over the selected parameters, optionally a part on
BatchNorm running statistics, and where it came from. :func:`eigen_directions`
picks eigenvectors of a spectrum by their Ritz values; :func:`random_directions`
draws Gaussian directions, of unit length or normalised per filter, layer or
weight as in Li et al. (2018), "Visualizing the Loss Landscape of Neural Nets".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ._validate import boolean, non_negative_int, positive_int, seed_value, type_name
from .curvature.params import ParameterLayout, ParamsLike, select_parameters
from .results import Fingerprint, Spectrum

__all__ = ["Direction", "eigen_directions", "random_directions", "NORMS", "ONE_AXIS_OPTIONS"]

#: How :func:`random_directions` scales a Gaussian draw: ``"unit"`` (the whole vector to length 1), or Li et al.'s
#: normalisations of each tensor of two or more axes (their ``norm``, see :func:`random_directions`).
NORMS = ("unit", "filter", "layer", "weight", "dfilter", "dlayer")
#: Under Li et al.'s normalisations, the direction of a one-axis tensor (bias, BatchNorm scale and shift, running
#: statistics): zero (their ``ignore="biasbn"``) or the tensor's own values (their ``ignore=""``, ``d = w``).
ONE_AXIS_OPTIONS = ("zero", "weights")
_NAMES = {"unit": "random", **{norm: f"{norm}-normalised" for norm in NORMS[1:]}}  # labels, by norm
_FILTER_GUARD = 1e-12  # a filter of the draw with a smaller norm (never, for a Gaussian draw) is divided by this


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
    states : dict of str to Tensor, or None
        The direction's part on BatchNorm running statistics (Li et al.'s
        ``dir_type="states"``): buffer name (``"features.1.running_var"``) to
        a tensor of that buffer's shape, ``(C,)``, moved along with the
        parameters by :func:`loss_landscape`. None: the buffers stay as they are.
    options : dict or None
        How the direction was made, recorded in the landscape's
        ``meta["direction_options"]``: for :func:`random_directions`
        ``{"kind": "random", "norm", "one_axis", "states", "seed", "number"}``.
        None for eigenvectors and vectors given as they are.
    """

    vector: torch.Tensor
    label: str
    curvature: float = math.nan
    fingerprint: Optional[Fingerprint] = None
    states: Optional[Mapping[str, torch.Tensor]] = None
    options: Optional[Mapping[str, Any]] = None


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
                      filter_normalized: bool = False, *, norm: Optional[str] = None, one_axis: Optional[str] = None,
                      states: bool = False) -> List[Direction]:
    """Random Gaussian directions of unit length, or normalised as Li et al. (2018) define them.

    Each direction starts from a draw ``d`` of independent standard normal
    numbers: one ``torch.randn`` per tensor, float64, from a CPU generator
    seeded with ``seed`` (the same directions on any device), over the
    selected parameters in the order of ``model.named_parameters()``; with
    ``states=True`` one per entry of ``model.state_dict()`` in its order, as
    Li et al.'s ``dir_type="states"`` draws them. Then, by ``norm``:

    - ``"unit"`` (the default): ``d / ||d||`` over all selected parameters, one-axis ones included.
    - Li et al.'s normalisations, of each tensor ``d_k`` of two or more axes
      against the parameter ``w_k`` it moves (a filter ``d_k[i]`` is a slice
      along the first axis: an output unit or channel):

      - ``"filter"``: each filter to the norm of the weights' filter, ``d_k[i] ||w_k[i]|| / ||d_k[i]||``;
      - ``"layer"``: the tensor to the norm of the weights, ``d_k ||w_k|| / ||d_k||``;
      - ``"weight"``: entrywise by the weights, ``d_k * w_k``;
      - ``"dfilter"``: each filter to unit norm, ``d_k[i] / ||d_k[i]||``;
      - ``"dlayer"``: the tensor to unit norm, ``d_k / ||d_k||``;

      and each tensor of one axis or none (biases, BatchNorm scales and
      shifts, running statistics) as ``one_axis`` says: ``"zero"`` (their
      ``ignore="biasbn"``), or ``"weights"``: the tensor's own values,
      ``d_k = w_k``, as their code does when nothing is ignored
      (``ignore=""``, their command line's default), so that ``t = -1``
      takes a bias or a running statistic to zero.

    With ``"filter"``, ``"layer"`` and ``"weight"``, ``dist = 1`` is a step as
    large as the weights themselves, whatever their scale. Their code adds
    1e-10 to the filter norms it divides by (and its ``"dfilter"`` branch
    calls a misspelt method, ``ngorm``); here a norm is only kept from zero
    (at 1e-12, which a Gaussian draw does not reach), so the directions are
    those of the definition.

    Parameters
    ----------
    model : nn.Module
    count : int, default: 2
    seed : int, default: 0
    params : optional
        Which parameters the directions move (as for :class:`~curvwidgets.Hessian`).
    filter_normalized : bool, default: False
        The same as ``norm="filter"`` (kept for existing code).
    norm : {"unit", "filter", "layer", "weight", "dfilter", "dlayer"}, optional
        Default ``"unit"``, or ``"filter"`` with ``filter_normalized=True``.
    one_axis : {"zero", "weights"}, optional
        Li et al.'s normalisations only; default ``"zero"`` (as before this option).
    states : bool, default: False
        Also move the BatchNorm running statistics (``running_mean`` and
        ``running_var`` of every BatchNorm module that tracks them), Li et
        al.'s ``dir_type="states"``: needs a Li normalisation and
        ``one_axis="weights"`` (the statistics have one axis; zeroed, they
        would not move). :attr:`Direction.states` holds that part, shape
        ``(C,)`` per buffer, equal to the buffer itself; ``loss_landscape``
        evaluates at ``running_var (1 + t)``, negative for ``t < -1`` (see
        there). ``num_batches_tracked`` and other buffers do not move
        (their draws are still made, so the parameters' parts are those of
        Li et al.'s draw order).

    Returns
    -------
    list of Direction
        Vectors of shape ``(P,)`` in the selected parameters' dtype, labelled
        ``"random 1"``... (``"unit"``) or ``"filter-normalised 1"``,
        ``"layer-normalised 1"``...; :attr:`Direction.options` records
        ``{"kind": "random", "norm", "one_axis" (None for "unit"), "states",
        "seed", "number"}``.

    Raises
    ------
    ValueError
        An unknown ``norm`` or ``one_axis`` (the message lists those
        accepted); ``filter_normalized=True`` with another ``norm``;
        ``one_axis`` with ``norm="unit"``; ``states=True`` without a Li
        normalisation and ``one_axis="weights"``, or on a model without
        BatchNorm running statistics; a Li normalisation with
        ``one_axis="zero"`` over parameters that all have one axis (the
        directions would be zero).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type_name(model)}")
    count = positive_int("count", count)
    boolean("filter_normalized", filter_normalized)
    norm, one_axis = _recipe(norm, one_axis, states, filter_normalized)
    layout = select_parameters(model, params)
    statistics = _running_statistics(model) if states else {}
    if states and not statistics:
        raise ValueError("states=True: the model has no BatchNorm running statistics to move (no BatchNorm module "
                         "tracks running_mean and running_var); use states=False")
    if one_axis == "zero" and all(len(shape) <= 1 for shape in layout.shapes):
        how, instead = (("filter_normalized=True", "filter_normalized=False") if filter_normalized
                        else (f"norm={norm!r}", "norm='unit'"))
        raise ValueError(f"{how}: the selected parameters all have one axis (biases, BatchNorm), where "
                         f"{_NAMES[norm]} directions are zero with one_axis='zero'; select weights of two or more "
                         f"axes, pass one_axis='weights', or use {instead}")
    weights = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(seed_value("seed", seed))
    directions = []
    for number in range(1, count + 1):
        draws = _draws(model, layout, states, generator)
        vector = torch.cat([_normalised(draws[name], weights[name], norm, one_axis).reshape(-1)
                            for name in layout.names])
        if norm == "unit":
            vector = vector / vector.norm()
        moved = None
        if states:
            moved = {name: _normalised(draws[name], buffer, norm, one_axis).to(buffer.dtype)
                     for name, buffer in statistics.items()}
        options = {"kind": "random", "norm": norm, "one_axis": one_axis, "states": states, "seed": seed,
                   "number": number}
        directions.append(Direction(vector.to(weights[layout.names[0]].dtype), f"{_NAMES[norm]} {number}",
                                    states=moved, options=options))
    return directions


def _recipe(norm: Any, one_axis: Any, states: Any, filter_normalized: bool = False,
            unit: str = "norm='unit'") -> Tuple[str, Optional[str]]:
    """``(norm, one_axis)`` resolved from :func:`random_directions`' arguments, or a ``ValueError`` naming them.

    ``unit`` is how the caller's messages name unit directions (the API's
    ``directions='random'``). ``one_axis`` comes back None for ``"unit"``.
    """
    if norm is None:
        norm = "filter" if filter_normalized else "unit"
    elif not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be None or one of {NORMS}; got {norm!r}")
    elif filter_normalized and norm != "filter":
        raise ValueError(f"filter_normalized=True asks for norm='filter' but norm={norm!r}: give one of them")
    boolean("states", states)
    if norm == "unit":
        if one_axis is not None:
            raise ValueError(f"one_axis={one_axis!r} applies to Li et al.'s normalisations {NORMS[1:]}; with {unit} "
                             "the one-axis parameters are drawn like the others: leave one_axis=None")
        if states:
            raise ValueError(f"states=True needs one of Li et al.'s normalisations {NORMS[1:]} with "
                             f"one_axis='weights'; got {unit}")
        return norm, None
    if one_axis is None:
        one_axis = "zero"
    elif not isinstance(one_axis, str) or one_axis not in ONE_AXIS_OPTIONS:
        raise ValueError(f"one_axis must be None or one of {ONE_AXIS_OPTIONS}; got {one_axis!r}")
    if states and one_axis == "zero":
        raise ValueError("states=True with one_axis='zero' moves no running statistic: they have one axis, whose "
                         "directions one_axis='zero' sets to zero (Li et al.'s ignore='biasbn'); pass "
                         "one_axis='weights'")
    return norm, one_axis


def _running_statistics(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The ``running_mean`` and ``running_var`` buffers of ``model``'s BatchNorm modules that track them, by name."""
    found = {}
    for prefix, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.running_mean is not None and module.running_var is not None:
            stem = f"{prefix}." if prefix else ""
            found[f"{stem}running_mean"], found[f"{stem}running_var"] = module.running_mean, module.running_var
    return found


def _variance_eps(model: nn.Module) -> Dict[str, float]:
    """The ``eps`` of each BatchNorm module that tracks running statistics, by the name of its ``running_var``."""
    return {(f"{prefix}." if prefix else "") + "running_var": float(module.eps)
            for prefix, module in model.named_modules()
            if isinstance(module, _BatchNorm) and module.running_var is not None}


def _draws(model: nn.Module, layout: ParameterLayout, states: bool,
           generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """One standard normal draw per tensor (float64, CPU, the tensor's shape), by name.

    The selected parameters in their order; with ``states`` every entry of
    ``model.state_dict()`` in its order (parameters not selected and buffers
    included), as Li et al.'s ``get_random_states``.
    """
    if not states:
        return {name: torch.randn(shape, generator=generator, dtype=torch.float64)
                for name, shape in zip(layout.names, layout.shapes)}
    entries = model.state_dict(keep_vars=True)
    missing = [name for name in layout.names if name not in entries]
    if missing:
        raise ValueError(f"states=True: model.state_dict() has no entries {missing[:3]} of the selected parameters "
                         "(a state-dict hook renames them); use states=False")
    return {name: torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
            for name, tensor in entries.items()}


def _normalised(draw: torch.Tensor, weight: torch.Tensor, norm: str, one_axis: Optional[str]) -> torch.Tensor:
    """The draw ``draw`` for the tensor ``weight`` (same shape) normalised by ``norm``: float64, CPU, that shape.

    ``"unit"`` leaves it as it is (the whole vector is scaled afterwards).
    """
    if norm == "unit":
        return draw
    weight = weight.detach().cpu().to(torch.float64)
    if draw.ndim <= 1:
        return torch.zeros_like(draw) if one_axis == "zero" else weight.clone()
    if norm == "layer":
        return draw * (weight.norm() / draw.norm())
    if norm == "dlayer":
        return draw / draw.norm()
    if norm == "weight":
        return draw * weight
    filters = draw.flatten(1).norm(dim=1).clamp_min(_FILTER_GUARD).view(-1, *[1] * (draw.ndim - 1))
    if norm == "dfilter":
        return draw / filters
    return draw * (weight.flatten(1).norm(dim=1).view_as(filters) / filters)
