"""The fingerprint of a model's weights and parameter selection, and the check that directions belong to them.

A spectrum's eigenvectors are directions in the weight space of the weights
it was computed on; walking along them from other weights (another
checkpoint, another run of the same architecture, the same model trained
further in place) draws a landscape of nothing in particular. A spectrum
records :func:`fingerprint` of its model (a :class:`~curvwidgets.results.Fingerprint`),
and a landscape along its eigenvectors compares it with the model it perturbs
(:func:`check_same_weights`).
"""

from __future__ import annotations

import hashlib
from typing import Optional

import torch
from torch import nn

from ..results import Fingerprint
from .params import ParamsLike, select_parameters

__all__ = ["fingerprint", "check_same_weights", "OtherWeightsError"]


class OtherWeightsError(ValueError):
    """Eigenvectors used on weights, or a parameter selection, other than those they were computed on."""


def _digest_tensor(digest: "hashlib._Hash", name: str, tensor: torch.Tensor) -> None:
    """Feed ``name``, the shape and the values of ``tensor`` (real floats as float64, integers as int64) to ``digest``."""
    values = tensor.detach()
    if values.is_floating_point():
        values = values.to(torch.float64)
    elif not values.is_complex():
        values = values.to(torch.int64)  # integer and bool buffers (BatchNorm's num_batches_tracked)
    digest.update(f"{name}:{tuple(values.shape)};".encode())
    digest.update(values.cpu().contiguous().numpy().tobytes())


def fingerprint(model: nn.Module, params: ParamsLike = None) -> Fingerprint:
    """The :class:`~curvwidgets.results.Fingerprint` of ``model``'s parameters and buffers, and of ``params``.

    Parameters
    ----------
    model : nn.Module
    params : optional
        Which parameters (as for :class:`~curvwidgets.Hessian`); only the
        ``selection`` digest depends on it.

    Notes
    -----
    Reads every parameter and buffer once (a float64 copy on the CPU per
    tensor): about as long as copying the weights.
    """
    layout = select_parameters(model, params)
    weights = hashlib.sha256()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        _digest_tensor(weights, name, tensor)
    selection = hashlib.sha256()
    for name, shape in zip(layout.names, layout.shapes):
        selection.update(f"{name}:{tuple(shape)};".encode())
    return Fingerprint(weights.hexdigest(), selection.hexdigest())


def check_same_weights(recorded: Optional[Fingerprint], actual: Fingerprint, what: str, target: str,
                       override: str) -> None:
    """Raise :class:`OtherWeightsError` unless ``recorded`` (None: not recorded, nothing to check) equals ``actual``.

    The message reads "``what`` was computed on other weights than ``target``
    ... Pass ``override`` to use it anyway", e.g. ``what="the eigenvector
    direction 'largest 1'"``, ``target="the model's"``,
    ``override="allow_other_weights=True"``.
    """
    if recorded is None or recorded == actual:
        return
    if recorded.selection != actual.selection:
        problem = f"was computed over another selection of parameters than {target} (another params= or model)"
    else:
        problem = f"was computed on other weights than {target} (another checkpoint or run, or weights changed since)"
    raise OtherWeightsError(f"{what} {problem}: it records {recorded.short()}, where {actual.short()}. Pass "
                            f"{override} to use it anyway.")
