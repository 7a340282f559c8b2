"""Small helpers shared by the widgets: batched trait updates, what marks and axes may be sent, HTML legends.

bqplot draws in the browser from whatever the kernel sends. A NaN in a mark's
data, or a scale whose domain has no finite value, makes it write ``NaN`` into
SVG attributes, a ``path d="null"`` and an axis tick format of ``.undefinedg``
(seen in chromium: an empty plot and hundreds of console errors). A domain it
derives from one value (one point, one epoch, one Lanczos step) draws no ticks
either. So the widgets send only finite points (:func:`finite_points`), give
every axis an explicit range of non-zero width with round ticks
(:func:`padded_range`, :func:`set_range`, :func:`nice_ticks`), and draw legends
as HTML below the figure (:func:`legend_html`), where they never cover the data.
"""

from __future__ import annotations

import contextlib
import html
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import bqplot
import numpy as np
from ipywidgets import HTML, HBox, Layout, Widget

__all__ = ["field_layout", "controls_row", "wide_html", "TICK_FORMAT", "linear_scale", "log_scale", "nice_ticks",
           "log_ticks", "set_range", "hold_sync", "set_slider", "stem_segments", "log_floor", "finite_points",
           "padded_range", "padded_log_range", "legend_html", "LEGEND_SYMBOLS"]


def field_layout(width: str = "180px") -> Layout:
    """A new ``Layout`` of the given width for one control.

    Every control gets its own: controls sharing one ``Layout`` object share
    its ``display`` too, so hiding one of them hides them all.
    """
    return Layout(width=width)


def controls_row(*children: Widget) -> HBox:
    """A row of controls that wraps onto the next line when the output area is narrower than the row."""
    return HBox(list(children), layout=Layout(flex_flow="row wrap", align_items="center"))


def wide_html(value: str = "") -> HTML:
    """An HTML widget as wide as its box, for legends and lines of text.

    ipywidgets gives an HTML widget the fixed width of an inline control;
    longer text then spills over the widget beside it.
    """
    return HTML(value, layout=Layout(width="100%"))


def linear_scale() -> bqplot.LinearScale:
    """A bqplot ``LinearScale`` on ``[0, 1]`` that adds no padding of its own (:func:`set_range` sets its range)."""
    return bqplot.LinearScale(min=0.0, max=1.0, allow_padding=False)


def log_scale() -> bqplot.LogScale:
    """A bqplot ``LogScale`` on ``[1, 10]`` adding no padding of its own (:func:`set_range` with :func:`log_ticks`)."""
    return bqplot.LogScale(min=1.0, max=10.0, allow_padding=False)


def nice_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """About ``count`` round tick values in ``[low, high]``: multiples of 1, 2 or 5 times a power of ten.

    bqplot's own ticks for a given number of ticks split the range evenly
    (ticks like 0.19 and 2.2e-16); these are what d3 would choose, computed
    as integer multiples of the step and rounded, so zero is exactly 0.

    Examples
    --------
    >>> nice_ticks(-1.05, 1.05, 5)
    array([-1. , -0.5,  0. ,  0.5,  1. ])
    >>> nice_ticks(0.5, 3.5, 3)
    array([1., 2., 3.])
    """
    span = high - low
    if not (np.isfinite(span) and span > 0):
        return np.array([low], dtype=float) if np.isfinite(low) else np.zeros(0)
    raw = span / max(int(count), 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(multiple * power for multiple in (1, 2, 5, 10) if multiple * power >= raw * (1 - 1e-9))
    ticks = np.arange(np.ceil(low / step - 1e-9), np.floor(high / step + 1e-9) + 1) * step
    return np.round(ticks, max(0, int(-np.floor(np.log10(step))) + 1)) + 0.0  # + 0.0: no -0


def log_ticks(low: float, high: float, count: int = 5) -> np.ndarray:
    """At most ``count`` round tick values in ``[low, high]`` of a logarithmic axis (``0 < low < high``).

    1, 2 and 5 times the powers of ten in the range; where those are more
    than ``count``, 1 and 3 times them; then the powers of ten alone, every
    one or every few. A range too narrow to hold two of them gets
    :func:`nice_ticks` (on so short a log axis the ticks are about evenly spaced).

    Examples
    --------
    >>> log_ticks(8.0, 250.0)
    array([ 10.,  20.,  50., 100., 200.])
    >>> log_ticks(0.5, 5000.0)
    array([   1.,   10.,  100., 1000.])
    >>> log_ticks(31.0, 46.0, 3)
    array([35., 40., 45.])
    """
    if not (0 < low < high and np.isfinite(high)):
        return nice_ticks(low, high, count)
    powers = 10.0 ** np.arange(np.floor(np.log10(low)), np.floor(np.log10(high)) + 1)
    for multiples in ((1, 2, 5), (1, 3), (1,)):
        ticks = np.array([multiple * power for power in powers for multiple in multiples])
        ticks = ticks[(ticks >= low * (1 - 1e-9)) & (ticks <= high * (1 + 1e-9))]
        if ticks.size <= count:
            break
    else:
        ticks = ticks[::-(-ticks.size // count)]  # every few powers of ten
    return ticks if ticks.size >= 2 else nice_ticks(low, high, count)


def set_range(axis: Any, low: Optional[float], high: Optional[float], count: int = 5,
              empty: Tuple[float, float] = (0.0, 1.0), ticks: Callable[[float, float, int], np.ndarray] = nice_ticks
              ) -> None:
    """Give ``axis.scale`` the range ``[low, high]`` (``empty`` when ``low`` is None: no data yet) and
    ``axis`` about ``count`` ``ticks`` in it (:func:`nice_ticks`; :func:`log_ticks` for a log scale), in one
    message each.

    The ticks are labelled with up to four significant digits, trailing zeros
    dropped (``".4~g"``): bqplot's own format, chosen from the range, can
    print 2.5 as "3" next to a 3.
    """
    low, high = (float(low), float(high)) if low is not None else empty
    with hold_sync(axis, axis.scale):
        axis.scale.min, axis.scale.max = low, high
        axis.tick_values = ticks(low, high, count)
        axis.tick_format = TICK_FORMAT


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


def finite_points(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The points of one line where both coordinates are finite, in order.

    Parameters
    ----------
    x, y : ndarray, shape (n,)

    Returns
    -------
    x, y : ndarray, shape (k,)
        ``k <= n``; empty when no point is finite (an empty mark draws nothing, cleanly).

    Examples
    --------
    >>> finite_points(np.array([0.0, 1.0, 2.0]), np.array([5.0, np.nan, 7.0]))
    (array([0., 2.]), array([5., 7.]))
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def padded_range(*arrays: np.ndarray, margin: float = 0.05) -> Tuple[Optional[float], Optional[float]]:
    """``(low, high)`` spanning the finite values of ``arrays``, widened by ``margin`` of the span on each side.

    A single value gets a span of ``max(|value|, 1)`` around it. ``(None,
    None)`` (bqplot's "fit the data") when no value is finite.

    Examples
    --------
    >>> padded_range(np.array([1.0, np.nan, 3.0]), margin=0.25)
    (0.5, 3.5)
    >>> padded_range(np.array([np.nan]))
    (None, None)
    """
    finite = np.concatenate([np.asarray(values, dtype=float).reshape(-1) for values in arrays] or [np.zeros(0)])
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None, None
    low, high = float(finite.min()), float(finite.max())
    span = high - low if high > low else max(abs(low), 1.0)
    return low - margin * span, high + margin * span


def padded_log_range(*arrays: np.ndarray, margin: float = 0.05) -> Tuple[Optional[float], Optional[float]]:
    """:func:`padded_range` on a logarithmic axis: ``(low, high)`` spanning the positive finite values of
    ``arrays``, widened by ``margin`` of the span in decades on each side (a single value: by a decade).

    Examples
    --------
    >>> padded_log_range(np.array([1.0, -2.0, 100.0]), margin=0.25)
    (0.31622776601683794, 316.22776601683796)
    >>> padded_log_range(np.array([0.0, np.nan]))
    (None, None)
    """
    values = np.concatenate([np.asarray(values, dtype=float).reshape(-1) for values in arrays] or [np.zeros(0)])
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return None, None
    low, high = padded_range(np.log10(values), margin=margin)
    return 10.0 ** low, 10.0 ** high


#: The d3 format of tick labels (:func:`set_range`).
TICK_FORMAT = ".4~g"

#: How :func:`legend_html` draws each kind of mark.
LEGEND_SYMBOLS = {"line": "━━", "dashed": "╍╍", "dot": "●", "circle": "○", "bar": "■", "cross": "✕"}


def legend_html(entries: Sequence[Tuple[str, str, str]]) -> str:
    """A one-line HTML legend: for each ``(label, colour, kind)`` a coloured symbol and the label.

    ``kind`` is a key of :data:`LEGEND_SYMBOLS`. Labels are escaped. Drawn
    beside a figure rather than inside it, a legend never covers the data;
    entries are separated by spaces, where a narrow box wraps the line.

    Examples
    --------
    >>> legend_html([("train", "#1f77b4", "line")])
    '<span style="white-space:nowrap;margin-right:14px"><span style="color:#1f77b4">━━</span> train</span>'
    """
    return " ".join(f'<span style="white-space:nowrap;margin-right:14px"><span style="color:{colour}">'
                    f"{LEGEND_SYMBOLS[kind]}</span> {html.escape(label)}</span>" for label, colour, kind in entries)
