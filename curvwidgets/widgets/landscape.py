"""Loss and accuracy along eigenvectors clicked on a spectrum, or random directions: curves fill in live."""

from __future__ import annotations

import html
import numbers
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import bqplot as bq
import ipywidgets as widgets
import numpy as np
from torch import nn

from .._validate import boolean, choice, device_value, integer, path_text, positive_int, real, type_name
from ..landscape import BN_OPTIONS, NORMS, ONE_AXIS_OPTIONS
from ..progress import ProgressEvent
from ..results import Landscape, Spectrum
from ._landscape_task import DIRECTION_KINDS, LandscapeSettings, as_spectrum, run_landscape, stem_label, stem_order
from ._view import (TICK_FORMAT, controls_row, field_layout, finite_points, hold_sync, legend_html, linear_scale,
                   padded_range, set_range, stem_segments, wide_html)
from ._checkpoints import CheckpointSource
from .runner import TaskRunner

__all__ = ["LandscapeWidget", "cell_edges", "quadratic_rows"]

STEM_COLOR, PICKED_COLOR = "#9e9e9e", "#d62728"
CURVE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                "#17becf")
SPLITS, METRICS = ("train", "test"), ("loss", "accuracy")
#: Points computed where the loss is NaN or infinite: crosses along the top of the line figure, cells of the plane.
DIVERGED_COLOR = "#e00000"
#: How far beyond the value axis, in spans of the axis, a quadratic model is drawn (see ``_draw_lines``).
MODEL_REACH = 1e3
#: Li et al.'s normalisations of random directions (``norm`` of :func:`curvwidgets.random_directions`).
LI_NORMS = NORMS[1:]
#: The menu of ``one_axis``: how the biases and BatchNorm parameters move under a normalisation.
ONE_AXIS_LABELS = (("not moved", "zero"), ("own values", "weights"))


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """Edges of the cells centred on evenly spaced ``centres`` (shape ``(n,)``, ``n >= 2``): shape ``(n + 1,)``.

    Examples
    --------
    >>> cell_edges(np.array([-1.0, 0.0, 1.0]))
    array([-1.5, -0.5,  0.5,  1.5])
    """
    half = (centres[1] - centres[0]) / 2
    return np.append(centres - half, centres[-1] + half)


def quadratic_rows(landscape: Landscape, metric: str) -> Tuple[np.ndarray, np.ndarray]:
    """The lines that have a quadratic model of ``metric``, and the model along them.

    Parameters
    ----------
    landscape : Landscape
        Of kind ``"line"``.
    metric : str
        A key of ``landscape.values``.

    Returns
    -------
    lines : ndarray of int, shape (k,)
        The directions with a Ritz value ``theta`` (eigenvectors) when
        ``metric`` is a loss; none for an accuracy.
    model : ndarray, shape (k, n_points)
        ``landscape.quadratic_model(metric)[lines]``, i.e. ``L(0) + theta t^2 / 2``
        (loss units); NaN while ``L(0)`` is not computed.
    """
    if not metric.endswith("_loss"):
        return np.zeros(0, dtype=int), np.zeros((0, landscape.offsets.size))
    lines = np.flatnonzero(np.isfinite(landscape.curvatures))
    return lines, landscape.quadratic_model(metric)[lines]


class LandscapeWidget(widgets.VBox):
    """Loss and accuracy at ``w + t v`` along chosen directions, computed with :func:`curvwidgets.loss_landscape`.

    The directions are eigenvectors picked on a spectrum, or random Gaussian
    ones for comparison (the paper's section 6.1, Figures 8 to 11): of unit
    length (**random**), or normalised as Li et al. (2018) (**normalised**).
    Only for the normalised ones a row of controls shows their options, as
    :func:`curvwidgets.random_directions` takes them: the normalisation
    (**norm**: filter, layer, weight, dfilter, dlayer), how the biases and
    BatchNorm parameters move (**bias, BN**: not moved, Li et al.'s
    ``ignore="biasbn"``, or by their own values, their ``ignore=""``), and
    whether the BatchNorm running statistics move too (**move BN
    statistics**, their ``dir_type="states"``: needs "own values", and a
    model with BatchNorm). The result's ``meta["direction_options"]``
    records them for each direction. The stem picker shows the Ritz values of one
    start vector (x, eigenvalue units) against their Gauss weights (y), the
    largest first: a click picks a stem's eigenvector, a ctrl-click (cmd on a
    Mac) adds or removes one, a click on the background clears the choice.
    One curve per direction fills in as the points arrive (points not computed
    yet are NaN, and not drawn); beside each eigenvector's loss curve its
    quadratic model ``L(0) + theta t^2 / 2`` is drawn dashed, ``theta`` being
    its Ritz value. A plane landscape (two directions) is drawn as a heatmap.
    The split and metric toggles redraw from :attr:`result` without computing.
    Every number drawn comes from the :class:`~curvwidgets.results.Landscape`.

    Parameters
    ----------
    model : nn.Module, optional
    data : DataSet, (train, test) pair, or re-iterable of (inputs, targets), optional
        What :func:`curvwidgets.loss_landscape` takes. Either both, or a checkpoint path.
    spectrum : Spectrum or path, optional
        A spectrum with Ritz vectors (``save_vectors=True``), or the path of
        its file; also settable later through :attr:`spectrum`.
    checkpoint : str, default: ""
        A checkpoint file or run folder, loaded with :func:`curvwidgets.load_trained`
        (on ``device``) when the run starts; it takes precedence over ``model``.
    loss_fn : callable, optional
        Default cross-entropy.
    directions : {"eigen", "random", "filter"}, default: "eigen"
        Eigenvectors picked on the spectrum, random unit directions, or random
        directions normalised as Li et al. (by ``norm``, filter by default).
    count : int, default: 2
        Random directions.
    seed : int, default: 0
        Seed of the random directions.
    norm : {"filter", "layer", "weight", "dfilter", "dlayer"}, default: "filter"
        Normalised directions: Li et al.'s normalisation of each tensor of two
        or more axes (``norm`` of :func:`curvwidgets.random_directions`).
    one_axis : {"zero", "weights"}, default: "zero"
        Normalised directions: the biases and BatchNorm parameters not moved,
        or moved by their own values (``one_axis`` of :func:`curvwidgets.random_directions`).
    states : bool, default: False
        Normalised directions with ``one_axis="weights"``: move the BatchNorm
        running statistics too (``states`` of :func:`curvwidgets.random_directions`).
    dist : float, default: 1.0
        ``t`` runs over ``[-dist, dist]`` (units of the unit directions).
    n_points : int, default: 21
        Points per line, or per axis of the plane.
    split : {"train", "test"}, default: "train"
    metric : {"loss", "accuracy"}, default: "loss"
        What the figures show.
    plane : bool, default: False
        The plane of exactly two directions, ``n_points x n_points``, instead of a line each.
    bn : {"keep", "recompute"}, default: "keep"
        BatchNorm statistics at each point (see :func:`curvwidgets.loss_landscape`).
    device : str, optional
        Where a checkpoint's model goes (default: CUDA when available).
    points_per_pass : int, optional
        Points evaluated together (default: timed by :func:`curvwidgets.loss_landscape`).
    allow_other_weights : bool, default: False
        Walk along eigenvectors of a spectrum computed on other weights than
        the model's or the checkpoint's; without it such a run stops with an
        error saying so (see :func:`curvwidgets.loss_landscape`).

    Attributes
    ----------
    result : Landscape or None
        The landscape of the last run that finished or was cancelled (then NaN where not computed).
    spectrum : Spectrum or None
    selected : list of int
        Positions of the picked stems in the picker (0: the largest Ritz value).
    runner : TaskRunner
    stem_lines : bqplot.Lines
        One segment per stem, ``x``/``y`` of shape ``(n, 2)`` (:func:`stem_segments`).
    stem_picker : bqplot.Scatter
        ``x`` the Ritz values of the chosen start vector, largest first
        (:func:`stem_order`), ``y`` their Gauss weights; ``selected`` the positions picked.
    directions : ipywidgets.ToggleButtons
        "eigenvectors", "random" or "normalised" (values ``"eigen"``, ``"random"``, ``"filter"``).
    norm, one_axis : ipywidgets.Dropdown
    states : ipywidgets.Checkbox
        Disabled (and unticked) while ``one_axis`` is ``"zero"``.
    normalisation : ipywidgets.HBox
        The row of ``norm``, ``one_axis`` and ``states``, shown only for normalised directions.
    run_picker : ipywidgets.Dropdown
        The start vector whose stems are shown.
    picked_labels : ipywidgets.HTML
        The directions picked, labelled as in the result.
    split, metric : ipywidgets.ToggleButtons
    curves : tuple of bqplot.Lines
        One per direction: ``x`` the offsets ``t`` whose ``result[f"{split}_{metric}"]``
        is computed and finite, ``y`` those values (:func:`finite_points`); a
        point not computed yet is left out, never sent as NaN.
    diverged : bqplot.Scatter
        Red crosses along the top of the value axis (3% of its span below
        the top, above every point drawn) at the offsets of the
        points computed where the loss is NaN or infinite
        (``result.not_finite``), so a diverged sweep is not drawn as one
        not finished; :attr:`note` says where.
    quadratic_lines : tuple of bqplot.Lines
        Dashed, in the colour of the curve of the same direction: its row of
        ``quadratic_rows(result, f"{split}_{metric}")``, empty for a direction
        without a Ritz value, for an accuracy, or while ``L(0)`` is not computed.
        The value axis spans the curves; a model leaving that range is clipped
        (its values are cut at :data:`MODEL_REACH` spans of the axis beyond it).
    legend : ipywidgets.HTML
        The directions' colours and labels, beside the figure (:func:`legend_html`).
    heatmap : bqplot.GridHeatMap
        For a plane: ``color = result[metric][:c].T`` (rows over the second
        direction, columns over the first, as :func:`curvwidgets.plots.landscape_plane`),
        ``row`` and ``column`` the :func:`cell_edges` of ``result.offsets``
        (``column`` cut to ``c + 1``), ``c`` the columns computed in full so
        far; hidden before the first two; the axes span the whole grid
        throughout. Cells where the loss is NaN or infinite are drawn red
        (its ``null_color``).
    line_figure, plane_figure : bqplot.Figure
    view : ipywidgets.VBox
        The figure matching ``result.kind`` (swapped in, so bqplot lays it out
        when it is shown) above :attr:`legend`.
    figures : ipywidgets.HBox
        The picker and :attr:`view`.
    note : ipywidgets.HTML
        Says when the result has no metrics of the chosen split, where the
        loss is not finite (:meth:`~curvwidgets.results.Landscape.not_finite_note`),
        and when the spectrum changed since the landscape drawn was computed.
    """

    def __init__(self, model: Optional[nn.Module] = None, data: Any = None, *, spectrum: Any = None,
                 checkpoint: str = "", loss_fn: Optional[Callable] = None, directions: str = "eigen", count: int = 2,
                 seed: int = 0, norm: str = "filter", one_axis: str = "zero", states: bool = False,
                 dist: float = 1.0, n_points: int = 21, split: str = "train", metric: str = "loss",
                 plane: bool = False, bn: str = "keep", device: Optional[str] = None,
                 points_per_pass: Optional[int] = None, allow_other_weights: bool = False):
        choice("directions", directions, DIRECTION_KINDS)
        _check_normalisation(norm, one_axis, states)
        choice("split", split, SPLITS)
        choice("metric", metric, METRICS)
        choice("bn", bn, BN_OPTIONS)
        count, seed, dist, n_points = _checked_numbers(count, seed, dist, n_points, points_per_pass)
        boolean("plane", plane)
        device_value("device", device)
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be None or a torch.nn.Module; got {type_name(model)}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be None or callable as loss_fn(outputs, targets); got {type_name(loss_fn)}")
        checkpoint = path_text("checkpoint", checkpoint)
        self.model, self.data, self.loss_fn, self.device = model, data, loss_fn, device
        self.points_per_pass = points_per_pass
        self.allow_other_weights = boolean("allow_other_weights", allow_other_weights)
        self.checkpoint = widgets.Text(value=checkpoint, description="checkpoint", placeholder="run folder or .pt file",
                                       layout=widgets.Layout(width="420px"))
        self.directions = widgets.ToggleButtons(
            options=[("eigenvectors", "eigen"), ("random", "random"), ("normalised", "filter")],
            value=directions, style={"button_width": "120px"},
            tooltips=["eigenvectors picked on the spectrum", "random Gaussian directions of unit length",
                      "random Gaussian directions normalised as Li et al. (2018)"])
        self.count = widgets.IntText(value=count, description="count", layout=field_layout(),
                                     tooltip="random directions")
        self.seed = widgets.IntText(value=seed, description="seed", layout=field_layout())
        self._build_normalisation(norm, one_axis, states)
        self.dist = widgets.FloatText(value=dist, description="dist", layout=field_layout())
        self.n_points = widgets.IntText(value=n_points, description="points", layout=field_layout())
        self.plane = widgets.Checkbox(value=plane, description="plane of two directions", indent=False,
                                      layout=widgets.Layout(width="auto"))
        self.bn = widgets.Dropdown(options=list(BN_OPTIONS), value=bn, description="BatchNorm",
                                   layout=field_layout())
        self.run_picker = widgets.Dropdown(options=[("vector 1", 0)], value=0, description="stems of",
                                           layout=widgets.Layout(width="220px"))
        self.picked_labels = wide_html()
        self.split = widgets.ToggleButtons(options=list(SPLITS), value=split, style={"button_width": "70px"})
        self.metric = widgets.ToggleButtons(options=list(METRICS), value=metric, style={"button_width": "80px"})
        self.note = widgets.HTML()
        self.runner = TaskRunner(on_run=self.run)
        self._spectrum: Optional[Spectrum] = None
        self._picker_of: Optional[Tuple[Optional[Spectrum], int]] = None
        self._drawn: Optional[Landscape] = None
        self._stale = False  # the spectrum changed since the landscape drawn was computed
        self.source = CheckpointSource(device)
        self._build_figures()

        self.directions.observe(lambda _change: self.runner.dispatch(self._show_normalisation), "value")
        self.one_axis.observe(lambda _change: self.runner.dispatch(self._allow_states), "value")
        self.stem_picker.observe(lambda _change: self.runner.dispatch(self._show_picked), "selected")
        self.run_picker.observe(lambda _change: self.runner.dispatch(self._draw_picker), "value")
        self.split.observe(lambda _change: self.runner.dispatch(self._draw), "value")
        self.metric.observe(lambda _change: self.runner.dispatch(self._draw), "value")
        super().__init__([
            self.checkpoint,
            controls_row(self.directions, self.count, self.seed),
            self.normalisation,
            controls_row(self.dist, self.n_points, self.bn, self.plane),
            self.runner,
            self.figures,
            self.run_picker,
            self.picked_labels,
            controls_row(self.split, self.metric, self.note),
        ])
        self.spectrum = spectrum

    def _build_normalisation(self, norm: str, one_axis: str, states: bool) -> None:
        """The row of the normalised directions' options (:attr:`normalisation`), shown for them only."""
        self.norm = widgets.Dropdown(options=list(LI_NORMS), value=norm, description="norm", layout=field_layout(),
                                     tooltip="Li et al.'s normalisation of each tensor of two or more axes")
        self.one_axis = widgets.Dropdown(options=list(ONE_AXIS_LABELS), value=one_axis, description="bias, BN",
                                         layout=field_layout("210px"),
                                         tooltip="biases and BatchNorm parameters: not moved, or by their own values")
        self.states = widgets.Checkbox(value=states, description="move BN statistics", indent=False,
                                       layout=widgets.Layout(width="auto"),
                                       tooltip="move the BatchNorm running statistics by their own values too")
        self.normalisation = controls_row(self.norm, self.one_axis, self.states)
        self._show_normalisation()
        self._allow_states()

    def _show_normalisation(self) -> None:
        """The normalised directions' options show for them only."""
        self.normalisation.layout.display = "" if self.directions.value == "filter" else "none"

    def _allow_states(self) -> None:
        """Moving the running statistics needs ``one_axis="weights"``: the box is unticked and disabled otherwise."""
        moves = self.one_axis.value == "weights"
        with self.states.hold_sync():
            if not moves:
                self.states.value = False
            self.states.disabled = not moves

    def _build_figures(self) -> None:
        scales = {"x": linear_scale(), "y": linear_scale()}
        self.stem_lines = bq.Lines(x=[], y=[], scales=scales, colors=[STEM_COLOR], stroke_width=1.5)
        self.stem_picker = bq.Scatter(
            x=[], y=[], scales=scales, colors=[STEM_COLOR], default_size=48,
            interactions={"click": "select", "hover": "tooltip"},
            tooltip=bq.Tooltip(fields=["x", "y"], labels=["theta", "weight"], formats=[".4g", ".3g"]),
            selected_style={"fill": PICKED_COLOR, "stroke": PICKED_COLOR}, unselected_style={"opacity": 0.8})
        self.picker_figure = bq.Figure(
            marks=[self.stem_lines, self.stem_picker], title="click a stem: its eigenvector",
            axes=[bq.Axis(scale=scales["x"], label="Ritz value θ"),
                  bq.Axis(scale=scales["y"], side="left", label="Gauss weight")],
            fig_margin={"top": 50, "bottom": 50, "left": 60, "right": 20},
            layout=widgets.Layout(width="40%", height="380px"))

        self._line_scales = {"x": linear_scale(), "y": linear_scale()}
        self._curve_pool: List[bq.Lines] = []
        self._model_pool: List[bq.Lines] = []
        self.curves: Tuple[bq.Lines, ...] = ()
        self.quadratic_lines: Tuple[bq.Lines, ...] = ()
        self.value_axis = bq.Axis(scale=self._line_scales["y"], side="left", label="")
        self.offset_axis = bq.Axis(scale=self._line_scales["x"], label="t (distance along the direction)")
        self.diverged = bq.Scatter(x=[], y=[], scales=self._line_scales, marker="cross", colors=[DIVERGED_COLOR],
                                   default_size=64)
        self.line_figure = bq.Figure(
            marks=[self.diverged], axes=[self.offset_axis, self.value_axis],
            fig_margin={"top": 30, "bottom": 50, "left": 60, "right": 20},
            layout=widgets.Layout(width="100%", height="380px"))
        self.legend = wide_html()

        column, row = linear_scale(), linear_scale()
        colour = bq.ColorScale(scheme="viridis")
        self.heatmap = bq.GridHeatMap(color=np.zeros((2, 2)), row=[-1.0, 0.0, 1.0], column=[-1.0, 0.0, 1.0],
                                      scales={"row": row, "column": column, "color": colour}, stroke=None,
                                      null_color=DIVERGED_COLOR, visible=False)
        self.plane_x_axis = bq.Axis(scale=column, label="")
        self.plane_y_axis = bq.Axis(scale=row, side="left", label="")
        self.color_axis = bq.ColorAxis(scale=colour, side="right", label="", label_offset="60px", num_ticks=3,
                                       tick_format=TICK_FORMAT)
        self.plane_figure = bq.Figure(
            marks=[self.heatmap], axes=[self.plane_x_axis, self.plane_y_axis, self.color_axis],
            fig_margin={"top": 30, "bottom": 50, "left": 60, "right": 110},
            layout=widgets.Layout(width="100%", height="380px"))
        self.view = widgets.VBox([self.line_figure, self.legend], layout=widgets.Layout(width="58%"))
        self.figures = widgets.HBox([self.picker_figure, self.view])

    # -- public -----------------------------------------------------------------------------------------------------

    @property
    def result(self) -> Optional[Landscape]:
        """The landscape of the last run that finished or was cancelled (then partial), or None."""
        return self.runner.result

    @property
    def spectrum(self) -> Optional[Spectrum]:
        """The spectrum whose eigenvectors are picked; set a Spectrum with Ritz vectors, its file's path, or None.

        Setting it redraws the stem picker and picks the largest and the
        smallest Ritz value's eigenvectors.

        Raises
        ------
        TypeError, ValueError, FileNotFoundError
            Not a spectrum with Ritz vectors, or no readable spectrum file (see :func:`as_spectrum`).
        """
        return self._spectrum

    @spectrum.setter
    def spectrum(self, value: Any) -> None:
        self._spectrum = as_spectrum(value)

        def redraw() -> None:
            self._stale = self._drawn is not None
            self._draw_picker()
            self._draw()

        self.runner.dispatch(redraw)

    @property
    def selected(self) -> List[int]:
        """Positions of the picked stems, ascending (0 is the largest Ritz value); set it to pick others.

        Raises
        ------
        ValueError
            A position that is not an int in ``[0, number of stems shown)``.
        """
        picked = self.stem_picker.selected
        return [] if picked is None else sorted({int(position) for position in picked})

    @selected.setter
    def selected(self, positions: Sequence[int]) -> None:
        count = len(self.stem_picker.x)
        if isinstance(positions, Iterable) and not isinstance(positions, (str, bytes)):
            positions = list(positions)  # a generator is read once
        if not isinstance(positions, list) or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool)
                                                      and 0 <= p < count for p in positions):
            raise ValueError(f"selected must list stem positions, ints in [0, {count}) for the {count} stems shown; "
                             f"got {positions!r}")
        picks = np.array(sorted({int(position) for position in positions}), dtype=int)
        self.runner.dispatch(lambda: setattr(self.stem_picker, "selected", picks if picks.size else None))

    @property
    def settings(self) -> LandscapeSettings:
        """The computation the controls describe now."""
        normalised = self.directions.value == "filter"  # the row's options apply to these only
        return LandscapeSettings(checkpoint=self.checkpoint.value, directions=self.directions.value,
                                 picked=tuple(self.selected), run=self.run_picker.value, count=self.count.value,
                                 seed=self.seed.value, norm=self.norm.value if normalised else None,
                                 one_axis=self.one_axis.value if normalised else None,
                                 states=self.states.value and normalised, dist=self.dist.value,
                                 n_points=self.n_points.value,
                                 plane=self.plane.value, bn=self.bn.value, points_per_pass=self.points_per_pass,
                                 allow_other_weights=self.allow_other_weights)

    def run(self, block: bool = False) -> bool:
        """Compute the landscape of the current controls and spectrum (see :meth:`TaskRunner.start`).

        Returns False, starting nothing, while a run is going.
        """
        settings, spectrum = self.settings, self._spectrum

        def task(progress, cancel):
            return run_landscape(settings, spectrum, self.model, self.data, self.loss_fn, self.source, progress, cancel)

        return self.runner.start(task, on_progress=self._show_progress, on_done=self._show, block=block)

    # -- drawing (UI thread only: through the runner's dispatcher) --------------------------------------------------

    def _draw_picker(self) -> None:
        """Stems of the chosen start vector; a new spectrum or start vector picks the largest and smallest stems."""
        spectrum = self._spectrum
        runs = [(f"vector {run + 1}", run) for run in range(spectrum.num_vectors if spectrum is not None else 1)]
        if list(self.run_picker.options) != runs:
            self.run_picker.options = runs  # may move the value, which draws through this method first
        run = self.run_picker.value
        if self._picker_of is not None and self._picker_of[0] is spectrum and self._picker_of[1] == run:
            return
        self._picker_of = (spectrum, run)
        if spectrum is None:
            nodes = weights = np.zeros(0)
        else:
            order = stem_order(spectrum, run)
            nodes, weights = spectrum.lanczos.nodes(run)[order], spectrum.lanczos.weights(run)[order]
        picks = np.unique([0, nodes.size - 1]) if nodes.size else None
        x_axis, y_axis = self.picker_figure.axes
        with hold_sync(self.stem_lines, self.stem_picker):
            set_range(x_axis, *padded_range(nodes))
            set_range(y_axis, 0.0 if nodes.size else None, padded_range(weights, [0.0])[1])
            self.stem_lines.x, self.stem_lines.y = stem_segments(nodes, weights)
            self.stem_picker.x, self.stem_picker.y = nodes, weights
            self.stem_picker.selected = picks
        self._show_picked()

    def _show_picked(self) -> None:
        """Name the picked eigenvectors as the result will label them."""
        if self._spectrum is None:
            text = "no spectrum: set <code>widget.spectrum</code> to pick eigenvectors"
        elif not self.selected:
            text = "no eigenvector picked: click a stem (ctrl-click adds or removes one)"
        else:
            values, count = self.stem_picker.x, len(self.stem_picker.x)
            text = "picked: " + "; ".join(stem_label(position, float(values[position]), count)
                                          for position in self.selected)
        self.picked_labels.value = text

    def _show_progress(self, event: ProgressEvent) -> None:
        if isinstance(event.partial, Landscape):
            self._show(event.partial)

    def _show(self, landscape: Optional[Landscape]) -> None:
        self._drawn, self._stale = landscape, False
        self._draw()

    def _draw(self) -> None:
        """The drawn landscape's chosen split and metric: curves and quadratic models, or the plane."""
        landscape, split = self._drawn, self.split.value
        metric = f"{split}_{self.metric.value}"
        shown = landscape if landscape is not None and metric in landscape.values else None
        plane = landscape is not None and landscape.kind == "plane"
        figure = self.plane_figure if plane else self.line_figure
        if self.view.children[0] is not figure:
            # a figure is swapped in, never shown by a display change: bqplot lays out a view when it is
            # attached, and one laid out while hidden stays squashed into a corner when shown
            self.view.children = (figure, self.legend)
        notes = [] if shown is landscape else [f"this landscape has no {split} metrics (no {split} data)"]
        if landscape is not None and landscape.not_finite.any():
            where = "red cells" if plane else "red crosses along the top"
            notes.append(f'<span style="color:{DIVERGED_COLOR}">{html.escape(landscape.not_finite_note())} ({where})'
                         "</span>")
        if self._stale:
            notes.append("drawn: the landscape computed before the spectrum changed; <b>Run</b> walks the one shown")
        self.note.value = "; ".join(notes)
        if plane:
            self._draw_plane(shown, metric)
        else:
            self._draw_lines(shown, metric)

    def _line_marks(self, count: int) -> None:
        """Make :attr:`curves` and :attr:`quadratic_lines` ``count`` long (marks are reused across draws)."""
        while len(self._curve_pool) < count:
            colour = CURVE_COLORS[len(self._curve_pool) % len(CURVE_COLORS)]
            self._curve_pool.append(bq.Lines(x=[], y=[], scales=self._line_scales, colors=[colour], marker="circle",
                                             marker_size=12))
            self._model_pool.append(bq.Lines(x=[], y=[], scales=self._line_scales, colors=[colour],
                                             line_style="dashed"))
        if len(self.curves) != count:
            self.curves, self.quadratic_lines = tuple(self._curve_pool[:count]), tuple(self._model_pool[:count])
            self.line_figure.marks = [*self.quadratic_lines, *self.curves, self.diverged]

    def _draw_lines(self, landscape: Optional[Landscape], metric: str) -> None:
        """One curve per direction through its computed points, and its quadratic model once ``L(0)`` is known."""
        if landscape is None:
            offsets, values, labels, models = np.zeros(0), np.zeros((0, 0)), (), np.zeros((0, 0))
            diverged = np.zeros((0, 0), dtype=bool)
        else:
            offsets, values, labels = landscape.offsets, landscape[metric], landscape.labels
            lines, model = quadratic_rows(landscape, metric)
            models = np.full(values.shape, np.nan)
            models[lines] = model
            diverged = landscape.not_finite
        self._line_marks(len(labels))
        with hold_sync(*self.curves, *self.quadratic_lines, self.diverged, self.value_axis, self.legend):
            set_range(self.offset_axis, *padded_range(offsets, margin=0.03))  # every t from the start
            # the range of the curves: a quadratic model leaving it is clipped, not allowed to flatten them
            low, high = padded_range(values)
            if diverged.any() and low is None:
                low, high = 0.0, 1.0  # nothing finite to span: the crosses still need an axis
            set_range(self.value_axis, low, high)
            if low is not None:
                # far outside the axis a model is drawn as if it ended MODEL_REACH spans away: a segment leaving
                # the axis crosses its edge where it would (to 1/MODEL_REACH of a step), and the SVG coordinates
                # stay numbers a browser parses (a model of 1e72 is not: nothing of the figure is drawn then)
                reach = MODEL_REACH * (high - low)
                models = np.clip(models, low - reach, high + reach)
            for curve, quadratic, row, model_row in zip(self.curves, self.quadratic_lines, values, models):
                curve.x, curve.y = finite_points(offsets, row)
                quadratic.x, quadratic.y = finite_points(offsets, model_row)
            # a point computed where the loss is not finite is not left out like one not computed yet
            crosses = np.broadcast_to(offsets, diverged.shape)[diverged]
            top = high - 0.03 * (high - low) if crosses.size else 0.0  # inside the axis' padding above the data
            self.diverged.x, self.diverged.y = crosses, np.full(crosses.size, top)
            self.value_axis.label = metric.replace("_", " ")
            entries = [(label, curve.colors[0], "line") for label, curve in zip(labels, self.curves)]
            if np.isfinite(models).any():
                entries.append(("quadratic model L(0) + θt²/2", "#555555", "dashed"))
            if crosses.size:
                entries.append(("loss NaN or infinite", DIVERGED_COLOR, "cross"))
            self.legend.value = legend_html(entries)

    def _draw_plane(self, landscape: Optional[Landscape], metric: str) -> None:
        """The columns of the grid computed so far (the first direction's points fill in one after another)."""
        if landscape is None:
            self.heatmap.visible = False
            return
        values, edges = landscape[metric], cell_edges(landscape.offsets)
        values = np.where(landscape.not_finite, np.nan, values)  # drawn in the heatmap's null colour
        complete = landscape.computed.all(axis=1)
        filled = int(complete.size if complete.all() else np.argmin(complete))
        filled = filled if filled >= 2 else 0  # bqplot reads a single column as a row
        low, high = padded_range(values[:filled], margin=0.0)
        with hold_sync(self.heatmap, self.plane_x_axis, self.plane_y_axis, self.color_axis, self.legend):
            for axis in (self.plane_x_axis, self.plane_y_axis):
                set_range(axis, float(edges[0]), float(edges[-1]))  # the whole grid from the first column
            if filled:
                # bqplot's colour bar rebuilds its axis when the range changes and then ignores tick values:
                # its own three evenly spaced ticks (num_ticks) are the ones that survive
                self.color_axis.scale.min, self.color_axis.scale.max = low, high
                self.heatmap.color = values[:filled].T  # first: bqplot checks row and column against its shape
                self.heatmap.row, self.heatmap.column = edges, edges[: filled + 1]
            self.heatmap.visible = bool(filled)
            self.plane_x_axis.label, self.plane_y_axis.label = landscape.labels
            self.color_axis.label = metric.replace("_", " ")
            self.legend.value = ""


def _check_normalisation(norm: Any, one_axis: Any, states: Any) -> None:
    """``ValueError`` for options of normalised directions that the widget cannot show or the API would refuse."""
    choice("norm", norm, LI_NORMS)
    choice("one_axis", one_axis, ONE_AXIS_OPTIONS)
    if boolean("states", states) and one_axis != "weights":
        raise ValueError("states=True moves the BatchNorm running statistics by their own values, which needs "
                         "one_axis='weights'")


def _checked_numbers(count: Any, seed: Any, dist: Any, n_points: Any,
                     points_per_pass: Any) -> Tuple[int, int, float, int]:
    """The :class:`LandscapeWidget`'s numeric arguments, of the kinds of their fields.

    The fields hold any int or float: their range is checked when a run
    starts (the error shown in the widget). ``points_per_pass`` has no field.
    """
    if points_per_pass is not None:
        positive_int("points_per_pass", points_per_pass)
    return integer("count", count), integer("seed", seed), real("dist", dist), integer("n_points", n_points)
