"""Figures 1 to 5 of the paper, live: a synthetic matrix's exact spectrum against its Lanczos stems."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from .._validate import choice, integer, positive_int, real, text_value
from ..linalg import LanczosResult, stem_density
from ..synthetic import section53_eigenvalues
from ._synthetic_task import ENSEMBLES, SyntheticRun, SyntheticSettings, parse_eigenvalues, run_synthetic
from ._view import (controls_row, field_layout, hold_sync, legend_html, linear_scale, padded_range, set_range,
                   set_slider, stem_segments, wide_html)
from .runner import TaskRunner

__all__ = ["SyntheticSpectrumWidget"]

EIGEN_COLOR, DIAGONAL_COLOR, LANCZOS_COLOR = "#1f77b4", "#e6b800", "#d62728"


def _histogram(values: Optional[np.ndarray], bins: int) -> tuple:
    """Bin centres and density-normalised heights (``np.histogram(..., density=True)``); empty for None."""
    if values is None:
        return np.zeros(0), np.zeros(0)
    heights, edges = np.histogram(values, bins=bins, density=True)
    return (edges[:-1] + edges[1:]) / 2, heights


class SyntheticSpectrumWidget(widgets.VBox):
    """Lanczos on a synthetic matrix (section 5 of the paper), drawn against its exact spectrum.

    One figure shares the eigenvalue axis between, on the left axis (density,
    1 / eigenvalue units), the histogram of the exact eigenvalues, the limiting
    density (semicircle or Marchenko-Pastur, where one exists) and the histogram
    of the diagonal baseline; and on the right axis (fraction of spectral mass),
    the Lanczos stems of eq. 8: Ritz values on x, Gauss weights on y, pooled over
    the start vectors. The stems grow as Lanczos steps land; the exact
    eigenvalues, which cost ``O(P^3)``, come last.

    Parameters
    ----------
    ensemble : {"wigner", "marchenko-pastur", "typed", "section53"}, default: "wigner"
        Figure 1 (Wigner, normalised to the semicircle on ``[-2, 2]``), Figures
        2 and 3 (Marchenko-Pastur with ``T = ratio * P``), a spectrum typed as
        comma-separated eigenvalues (rotated by a random orthogonal matrix), and
        Figure 5 (the 1000 x 1000 matrix of section 5.3).
    P : int, default: 225
    ratio : float, default: 2.0
        ``T / P`` for Marchenko-Pastur.
    eigenvalues : str, default: ""
        The typed spectrum, e.g. ``"0, 0, 1, 2, 10"``.
    steps : int, default: 30
        Lanczos steps ``m``.
    num_vectors : int, default: 1
        Random start vectors.
    seed : int, default: 0
        Seed of the matrix and of the start vectors.
    bins : int, default: 60
        Histogram bins.

    Attributes
    ----------
    result : LanczosResult or None
        The Lanczos run of the last run (partial after a cancel).
    last_run : SyntheticRun or None
        Everything computed: the Lanczos run, the diagonal, the exact eigenvalues.
        While a run goes, the figure shows its snapshots; at its end (a failed
        run included) it shows :attr:`last_run`.
    runner : TaskRunner
        Run/Cancel button, progress bar, error area.
    step_slider : ipywidgets.IntSlider
        ``k <= m``: the stems of the first ``k`` steps (``result.truncate(k)``), without recomputing.
    figure : bqplot.Figure
    eigen_bars, diagonal_bars : bqplot.Bars
        ``x`` bin centres, ``y`` densities.
    limit_line : bqplot.Lines
        The limiting density.
    stem_lines : bqplot.Lines
        One vertical segment per stem, ``x`` and ``y`` of shape ``(n, 2)``.
    stem_heads : bqplot.Scatter
        ``x`` Ritz values, ``y`` weights (``cw.stem_density(result.truncate(k))``).
    legend : ipywidgets.HTML
        Below the figure: the marks that hold data, in their colours.

    Examples
    --------
    >>> widget = SyntheticSpectrumWidget(P=100, steps=10)
    >>> widget.run(block=True)
    True
    >>> widget.result.steps
    10
    """

    def __init__(self, ensemble: str = "wigner", P: int = 225, ratio: float = 2.0, eigenvalues: str = "",
                 steps: int = 30, num_vectors: int = 1, seed: int = 0, bins: int = 60):
        choice("ensemble", ensemble, tuple(ENSEMBLES))
        # the fields hold any number (their range is checked when a run starts, the error shown in the widget)
        P, ratio, steps = integer("P", P), real("ratio", ratio), integer("steps", steps)
        num_vectors, seed, bins = integer("num_vectors", num_vectors), integer("seed", seed), positive_int("bins", bins)
        text_value("eigenvalues", eigenvalues, "a str of comma-separated numbers, e.g. '0, 1, 2.5'")
        self.ensemble = widgets.Dropdown(options=[(label, key) for key, label in ENSEMBLES.items()], value=ensemble,
                                         description="ensemble", layout=widgets.Layout(width="260px"))
        self.dim = widgets.IntText(value=P, description="P", layout=field_layout("190px"))
        self.ratio = widgets.FloatText(value=ratio, description="T / P", layout=field_layout("190px"))
        self.eigenvalues = widgets.Text(value=eigenvalues, description="eigenvalues",
                                        placeholder="0, 0, 1, 2.5, 10", layout=widgets.Layout(width="390px"))
        self.steps = widgets.IntText(value=steps, description="steps m", layout=field_layout("190px"))
        self.num_vectors = widgets.IntText(value=num_vectors, description="vectors", layout=field_layout("190px"))
        self.seed = widgets.IntText(value=seed, description="seed", layout=field_layout("190px"))
        self.show_diagonal = widgets.Checkbox(value=True, description="diagonal baseline", indent=False)
        self.step_slider = widgets.IntSlider(value=1, min=1, max=1, description="steps k", continuous_update=True,
                                             layout=widgets.Layout(width="390px"))
        self.bins = bins
        self.runner = TaskRunner(on_run=self.run)
        self._drawn: Optional[SyntheticRun] = None
        self._quiet_slider = False
        self._chosen_P = P  # the user's P, shown again when leaving an ensemble of fixed size
        self._build_figure()

        self.ensemble.observe(self._show_relevant_controls, "value")
        self.step_slider.observe(self._step_moved, "value")
        self.show_diagonal.observe(self._toggle_diagonal, "value")
        self._show_relevant_controls()
        self.eigenvalues.observe(self._show_relevant_controls, "value")
        controls = widgets.VBox([
            controls_row(self.ensemble, self.dim, self.ratio),
            self.eigenvalues,
            controls_row(self.steps, self.num_vectors, self.seed),
        ])
        super().__init__([controls, self.runner, self.figure, self.legend,
                          controls_row(self.step_slider, self.show_diagonal)])

    def _build_figure(self) -> None:
        x, density, weight = linear_scale(), linear_scale(), linear_scale()
        self.eigen_bars = bq.Bars(x=[], y=[], scales={"x": x, "y": density}, colors=[EIGEN_COLOR], opacities=[0.55],
                                  padding=0.0)
        self.diagonal_bars = bq.Bars(x=[], y=[], scales={"x": x, "y": density}, colors=[DIAGONAL_COLOR],
                                     opacities=[0.55], padding=0.0)
        self.limit_line = bq.Lines(x=[], y=[], scales={"x": x, "y": density}, colors=["black"])
        self.stem_lines = bq.Lines(x=[], y=[], scales={"x": x, "y": weight}, colors=[LANCZOS_COLOR], stroke_width=1.5)
        self.stem_heads = bq.Scatter(x=[], y=[], scales={"x": x, "y": weight}, colors=[LANCZOS_COLOR],
                                     default_size=18)
        self.x_axis = bq.Axis(scale=x, label="eigenvalue")
        self.density_axis = bq.Axis(scale=density, side="left", label="density")
        self.weight_axis = bq.Axis(scale=weight, side="right", label="Gauss weight", label_color=LANCZOS_COLOR,
                                   label_offset="52px")
        axes = [self.x_axis, self.density_axis, self.weight_axis]
        self.figure = bq.Figure(marks=[self.eigen_bars, self.diagonal_bars, self.limit_line, self.stem_lines,
                                       self.stem_heads], axes=axes,
                                fig_margin={"top": 50, "bottom": 50, "left": 60, "right": 80},
                                layout=widgets.Layout(width="100%", height="420px"))
        self.legend = wide_html()

    # -- public -----------------------------------------------------------------------------------------------------

    @property
    def last_run(self) -> Optional[SyntheticRun]:
        """Everything computed by the last run that finished or was cancelled, or None."""
        return self.runner.result

    @property
    def result(self) -> Optional[LanczosResult]:
        """The Lanczos run of the last run that finished or was cancelled (then partial), or None."""
        return None if self.last_run is None else self.last_run.lanczos

    @property
    def settings(self) -> SyntheticSettings:
        """The experiment the controls describe now."""
        return SyntheticSettings(ensemble=self.ensemble.value, P=self.dim.value, ratio=self.ratio.value,
                                 eigenvalues=self.eigenvalues.value, steps=self.steps.value,
                                 num_vectors=self.num_vectors.value, seed=self.seed.value)

    def run(self, block: bool = False) -> bool:
        """Compute the experiment of the current controls (see :meth:`TaskRunner.start`).

        Returns False, starting nothing, while a run is going.
        """
        settings = self.settings
        return self.runner.start(lambda progress, cancel: run_synthetic(settings, progress, cancel),
                                 on_progress=lambda event: self._show(event.partial), on_done=self._show, block=block)

    # -- drawing (always on the UI thread, through the runner's dispatcher) -----------------------------------------

    def _show(self, run: Optional[SyntheticRun]) -> None:
        """Draw a run (or a snapshot of one; None clears); the slider follows the number of steps done."""
        previous, self._drawn = self._drawn, run
        if previous is None or run is None or previous.diagonal is not run.diagonal \
                or previous.eigenvalues is not run.eigenvalues:
            with hold_sync(self.eigen_bars, self.diagonal_bars, self.limit_line):
                self.eigen_bars.x, self.eigen_bars.y = _histogram(None if run is None else run.eigenvalues, self.bins)
                self.diagonal_bars.x, self.diagonal_bars.y = _histogram(None if run is None else run.diagonal,
                                                                        self.bins)
                self.limit_line.x, self.limit_line.y = (run and run.limiting_density) or (np.zeros(0), np.zeros(0))
            top = padded_range(self.eigen_bars.y, self.diagonal_bars.y, self.limit_line.y)[1]
            set_range(self.density_axis, 0.0 if top is not None else None, top)
        self.figure.title = "" if run is None else run.caption
        steps = 1 if run is None or run.lanczos is None else run.lanczos.steps
        with self._slider_quiet():
            set_slider(self.step_slider, steps, 1, steps)
        self._draw_stems()
        self._draw_legend()

    def _draw_stems(self) -> None:
        """Stems of the first ``k`` steps (``k`` from the slider) of the run drawn."""
        result = None if self._drawn is None else self._drawn.lanczos
        if result is None:
            nodes, weights = np.zeros(0), np.zeros(0)
        else:
            k = min(self.step_slider.value, result.steps)
            nodes, weights = stem_density(result if k == result.steps else result.truncate(k))
        drawn = [nodes, np.asarray(self.limit_line.x)]  # and every eigenvalue of the run, so the axis stays put
        if self._drawn is not None:
            drawn += [self._drawn.diagonal, *([] if self._drawn.eigenvalues is None else [self._drawn.eigenvalues]),
                      *([] if result is None else [result.ritz_values])]
        low, high = padded_range(*drawn)
        top = padded_range(weights)[1]
        with hold_sync(self.stem_lines, self.stem_heads):
            set_range(self.x_axis, low, high, count=8)
            set_range(self.weight_axis, 0.0 if top is not None else None, top)
            self.stem_lines.x, self.stem_lines.y = stem_segments(nodes, weights)
            self.stem_heads.x, self.stem_heads.y = nodes, weights

    @contextlib.contextmanager
    def _slider_quiet(self) -> Iterator[None]:
        self._quiet_slider = True
        try:
            yield
        finally:
            self._quiet_slider = False

    def _step_moved(self, _change: dict) -> None:
        if not self._quiet_slider:
            self.runner.dispatch(self._draw_stems)

    def _toggle_diagonal(self, change: dict) -> None:
        def toggle() -> None:
            self.diagonal_bars.visible = change["new"]
            self._draw_legend()

        self.runner.dispatch(toggle)

    def _draw_legend(self) -> None:
        """Name the marks that hold data, in their colours."""
        marks = ((self.eigen_bars, "exact eigenvalues", EIGEN_COLOR, "bar"),
                 (self.diagonal_bars, "diagonal baseline", DIAGONAL_COLOR, "bar"),
                 (self.limit_line, "limiting density", "black", "line"),
                 (self.stem_heads, "Lanczos stems (right axis)", LANCZOS_COLOR, "dot"))
        self.legend.value = legend_html([(label, colour, kind) for mark, label, colour, kind in marks
                                         if mark.visible and np.asarray(mark.x).size])

    def _show_relevant_controls(self, _change: Optional[dict] = None) -> None:
        """T / P for Marchenko-Pastur, the eigenvalues for a typed spectrum; P shows the size the ensemble has."""
        ensemble = self.ensemble.value
        self.ratio.layout.display = "" if ensemble == "marchenko-pastur" else "none"
        self.eigenvalues.layout.display = "" if ensemble == "typed" else "none"
        fixed = ensemble in ("typed", "section53")
        if fixed and not self.dim.disabled:
            self._chosen_P = self.dim.value
        if fixed:
            self.dim.value = self._fixed_size(ensemble) or self.dim.value
        elif self.dim.disabled:
            self.dim.value = self._chosen_P
        self.dim.disabled = fixed

    def _fixed_size(self, ensemble: str) -> Optional[int]:
        """The size of a typed spectrum (None while the text is not numbers) or of section 5.3's matrix."""
        if ensemble == "section53":
            return section53_eigenvalues().size
        try:
            return parse_eigenvalues(self.eigenvalues.value).size
        except ValueError:
            return None
