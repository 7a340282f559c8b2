"""Small helpers shared by the widgets: batched trait updates and the data of stem marks."""

from __future__ import annotations

import contextlib
from typing import Iterator, Tuple

import numpy as np
from ipywidgets import Widget

__all__ = ["hold_sync", "stem_segments", "log_floor"]


@contextlib.contextmanager
def hold_sync(*widgets: Widget) -> Iterator[None]:
    """Batch the trait changes of several widgets: each sends one message when the block ends."""
    with contextlib.ExitStack() as stack:
        for widget in widgets:
            stack.enter_context(widget.hold_sync())
        yield


def stem_segments(nodes: np.ndarray, weights: np.ndarray, base: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """The ``x`` and ``y`` of a bqplot ``Lines`` mark drawing one vertical segment per stem.

    Parameters
    ----------
    nodes : ndarray, shape (n,)
        Stem positions (eigenvalue units).
    weights : ndarray, shape (n,)
        Stem heights.
    base : float, default: 0.0
        Where every stem starts (the floor of a logarithmic axis).

    Returns
    -------
    x, y : ndarray, shape (n, 2)
        Row ``i`` is the segment from ``(nodes[i], base)`` to ``(nodes[i], weights[i])``.
    """
    nodes, weights = np.asarray(nodes, dtype=float), np.asarray(weights, dtype=float)
    return np.stack([nodes, nodes], axis=1), np.stack([np.full_like(weights, base), weights], axis=1)


def log_floor(weights: np.ndarray) -> float:
    """Lower edge of a logarithmic weight axis: half the smallest positive weight, at least ``1e-12``.

    The same floor as :func:`curvwidgets.plots.stem_plot` uses, so static and
    live stem plots show the same range. 1e-12 when no weight is positive.
    """
    positive = np.asarray(weights, dtype=float)
    positive = positive[positive > 0]
    return max(float(positive.min()) / 2, 1e-12) if positive.size else 1e-12
