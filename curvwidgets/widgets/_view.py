"""Small helpers shared by the widgets: batched trait updates and the data of stem marks."""

from __future__ import annotations

import contextlib
from typing import Iterator, Tuple

import numpy as np
from ipywidgets import Widget

__all__ = ["hold_sync", "set_slider", "stem_segments", "log_floor"]


@contextlib.contextmanager
def hold_sync(*widgets: Widget) -> Iterator[None]:
    """Batch the trait changes of several widgets: each sends one message when the block ends."""
    with contextlib.ExitStack() as stack:
        for widget in widgets:
            stack.enter_context(widget.hold_sync())
        yield


def set_slider(slider: Widget, value: float, low: float, high: float) -> None:
    """Give ``slider`` the range ``[low, high]`` and ``value``, one message per change, never inside ``hold_sync``.

    Sent together, the browser may apply a new ``value`` before the new
    ``max``, clamp it to the old range and send the clamped value back (seen
    in the real-browser test: a slider left at 7 of 8 steps). Here the range
    first grows to hold both the old and the new one, then the value moves,
    then the range shrinks to ``[low, high]``, so every message is valid on its
    own. For a ``FloatLogSlider``, ``low`` and ``high`` are exponents.
    """
    if low < slider.min:
        slider.min = low
    if high > slider.max:
        slider.max = high
    slider.value = value
    if low > slider.min:
        slider.min = low
    if high < slider.max:
        slider.max = high


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
