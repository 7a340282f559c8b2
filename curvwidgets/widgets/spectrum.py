"""The Lanczos spectrum of a network's Hessian or GGN, live: stems, smoothed density, convergence, summary."""

from __future__ import annotations

import contextlib
import html
import numbers
import os
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import bqplot as bq
import ipywidgets as widgets
import numpy as np
from torch import nn

from .._validate import boolean, choice, device_value, integer, non_negative, path_text, text_value, type_name
from ..curvature.operators import BN_MODES
from ..curvature.spectrum import MATRICES
from ..linalg import LanczosResult
from ..linalg.densities import default_sigma
from ..linalg.estimates import format_with_error
from ..progress import ProgressEvent
from ..results import ZERO_BAND, Spectrum
from ._spectrum_task import SpectrumSettings, run_spectrum
from ._view import (controls_row, field_layout, hold_sync, legend_html, linear_scale, log_floor, padded_range,
                   set_range, set_slider, stem_segments, wide_html)
from ._checkpoints import CheckpointSource
from .runner import TaskRunner

__all__ = ["SpectrumWidget", "convergence_points"]

LANCZOS_COLOR, DENSITY_COLOR, PENDING_COLOR = "#d62728", "#1f77b4", "#9e9e9e"
BAND_OPACITY = 0.25
"""Opacity of the band of ± one standard error around the density (that of :func:`curvwidgets.plots.density_curve`)."""
SUMMARY_ROWS = (("lambda_max", "λ<sub>max</sub>", "{:.6g}"), ("lambda_min", "λ<sub>min</sub>", "{:.6g}"),
                ("negative_mass", "negative mass", "{:.2%}"),
                ("negative_mass_beyond_zero", f"… beyond zero (θ &lt; −{ZERO_BAND:g}·λ<sub>max</sub>)",
                 "{:.2%}"),
                ("trace_estimate", "trace estimate", "{:.6g}"),
                ("num_vectors", "start vectors", "{:d}"),
                ("converged", "converged Ritz pairs", "{:d}"), ("dim", "parameters P", "{:,d}"))
"""Rows of the summary table: key of :meth:`Spectrum.summary`, label, format. A key with a finite ``key + "_se"``
is shown ``± one standard error`` over the start vectors."""


def convergence_points(spectrum: Spectrum, run: int = 0, tolerance: Optional[float] = None,
                       first: int = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ritz values of one start vector against the step, and which have converged.

    Parameters
    ----------
    spectrum : Spectrum
    run : int, default: 0
        Which start vector.
    tolerance : float, optional
        Residual-estimate threshold of :meth:`Spectrum.converged` (default: its own).
    first : int, default: 1
        The first step ``k`` to include. The points of ``k < spectrum.steps``
        do not change as a run goes on, so a live plot computes each step once.

    Returns
    -------
    steps : ndarray of int, shape (n,)
        ``k`` for every Ritz value of ``spectrum.truncate(k)``, ``k = first .. steps``.
    values : ndarray, shape (n,)
        Those Ritz values (eigenvalue units), ascending within each ``k``.
    converged : ndarray of bool, shape (n,)
        ``spectrum.truncate(k).converged(tolerance)`` for each of them.
    """
    steps, values, converged = [np.zeros(0, dtype=int)], [np.zeros(0)], [np.zeros(0, dtype=bool)]
    for k in range(first, spectrum.steps + 1):
        shown = spectrum if k == spectrum.steps else spectrum.truncate(k)
        count = int(shown.lanczos.num_steps[run])
        steps.append(np.full(count, k))
        values.append(shown.ritz_values[run, :count])
        converged.append(shown.converged(tolerance)[run, :count])
    return np.concatenate(steps), np.concatenate(values), np.concatenate(converged)


class SpectrumWidget(widgets.VBox):
    """Lanczos spectrum of a model's Hessian or GGN, computed with :func:`curvwidgets.spectrum`.

    The stems of eq. 8 (Ritz values on x, Gauss weights on y) grow as each
    Lanczos step lands; the Gaussian-smoothed density is drawn on the same
    eigenvalue axis; a second figure shows the Ritz values of one start vector
    against the step ``k`` (from ``truncate(k)``), the converged ones (residual
    estimate below the tolerance of :meth:`Spectrum.converged`) filled and red,
    the others hollow and grey; it grows with the run, each step's points
    computed once. With several start vectors a shaded band of ``±`` one
    standard error over them (:meth:`Spectrum.smooth_spread`, the band of
    :func:`curvwidgets.plots.density_curve`, clipped at zero below) surrounds
    the density, redrawn with it: as steps land, for the final result, and
    for every ``k``, ``σ`` or spectrum shown; one start vector gives no band
    and the legend and summary say it has no error bars. Legends are HTML
    lines below the figures. The widget computes nothing itself: every
    number it draws comes from the :class:`~curvwidgets.Spectrum`.

    Parameters
    ----------
    model : nn.Module, optional
    data : DataSet or re-iterable of (inputs, targets), optional
        What :func:`curvwidgets.spectrum` takes. Either both, or a checkpoint path.
    checkpoint : str, default: ""
        A checkpoint file or run folder, loaded with :func:`curvwidgets.load_trained`
        (on ``device``) when the run starts; it takes precedence over ``model``.
    loss_fn : callable, optional
        Default cross-entropy.
    matrix : {"hessian", "ggn"}, default: "hessian"
    steps : int, default: 30
    num_vectors : int, default: 1
    params : str, default: ""
        Comma-separated glob patterns over parameter names (e.g. ``"fc2.*"``); empty for all.
    num_samples : int, default: 0
        A seeded subset of this many samples; 0 for all.
    seed : int, default: 0
    bn_mode : {"eval", "train"}, default: "eval"
    device : str, optional
        Where a checkpoint's model goes (default: CUDA when available).
    tolerance : float, optional
        Residual threshold of the convergence plot (default: :meth:`Spectrum.converged`'s).
    save_path : str, default: "spectrum.npz"
    backend : str, default: "auto"
        How curvature products are differentiated (see :class:`curvwidgets.Hessian`).
    save_vectors : bool, default: False
        Keep the Ritz vectors in the result (a landscape along eigenvectors needs them).

    Attributes
    ----------
    result : Spectrum or None
        The spectrum of the last run that finished or was cancelled (then partial).
    runner : TaskRunner
    step_slider : ipywidgets.IntSlider
        ``k``: stems, density and summary of ``result.truncate(k)``.
    weight_scale : ipywidgets.ToggleButtons
        ``"linear"`` or ``"log"`` Gauss weights: ``log`` draws ``log10`` of
        the weights on the same linear axis, relabelled (one scale throughout:
        bqplot draws broken ticks while a mark's scale object is swapped).
    sigma_slider : ipywidgets.FloatLogSlider
        Gaussian width of the density in eigenvalue units: ``default_sigma`` of
        the stems shown until the user moves it, then the user's value, kept
        across runs (its range grows to hold both).
    eigenvalue_range : (float, float) or None
        Fixed limits of the eigenvalue axis; None (default) fits each spectrum.
        A :class:`Dashboard` sets it so that scrubbing checkpoints keeps one axis.
    run_picker : ipywidgets.Dropdown
        Start vector shown in the convergence plot.
    stem_lines : bqplot.Lines
        One segment per stem, ``x``/``y`` of shape ``(n, 2)``; bottoms at 0
        (linear) or at ``log10`` of :func:`log_floor` of the weights (log).
    stem_heads : bqplot.Scatter
        ``x, y = result.truncate(k).stem()`` (``y`` in ``log10``, at least the floor, for log).
    density_line : bqplot.Lines
        ``x, y = result.truncate(k).smooth(sigma=sigma_slider.value)``.
    density_band : bqplot.Lines
        ``fill="between"`` its two rows: with ``grid, density, se =
        result.truncate(k).smooth_spread(sigma=sigma_slider.value)``, ``x =
        grid`` and ``y = [max(density - se, 0), density + se]`` (points where
        either is not finite dropped); empty (``x = y = []``) from one start
        vector, whose standard error is NaN. The density axis reaches its top.
    converged_marks, pending_marks : bqplot.Scatter
        ``convergence_points`` split by the converged flag.
    step_marker : bqplot.Lines
        Vertical line at ``k`` in the convergence plot.
    summary : ipywidgets.HTML
        ``result.truncate(k).summary()`` as a table (also in :attr:`summary_values`),
        the negative mass with and without the Ritz values within
        ``ZERO_BAND * lambda_max`` of zero.
    legend, convergence_legend : ipywidgets.HTML
    """

    def __init__(self, model: Optional[nn.Module] = None, data: Any = None, *, checkpoint: str = "",
                 loss_fn: Optional[Callable] = None, matrix: str = "hessian", steps: int = 30, num_vectors: int = 1,
                 params: str = "", num_samples: int = 0, seed: int = 0, bn_mode: str = "eval",
                 device: Optional[str] = None, tolerance: Optional[float] = None, save_path: str = "spectrum.npz",
                 backend: str = "auto", save_vectors: bool = False):
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be None or a torch.nn.Module; got {type_name(model)}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be None or callable as loss_fn(outputs, targets); got {type_name(loss_fn)}")
        checkpoint, save_path = path_text("checkpoint", checkpoint), path_text("save_path", save_path)
        text_value("params", params)
        choice("matrix", matrix, tuple(MATRICES))
        choice("bn_mode", bn_mode, BN_MODES)
        # the fields hold any int (their range is checked when a run starts, the error shown in the widget)
        steps, num_vectors, num_samples, seed = (integer(name, value) for name, value in (
            ("steps", steps), ("num_vectors", num_vectors), ("num_samples", num_samples), ("seed", seed)))
        device_value("device", device)
        tolerance = None if tolerance is None else non_negative("tolerance", tolerance)
        choice("backend", backend, ("auto", MATRICES[matrix].preferred_backend, "double-backward"))
        boolean("save_vectors", save_vectors)
        self.model, self.data, self.loss_fn, self.device, self.tolerance = model, data, loss_fn, device, tolerance
        self.backend = backend
        self.checkpoint = widgets.Text(value=checkpoint, description="checkpoint", placeholder="run folder or .pt file",
                                       layout=widgets.Layout(width="420px"))
        self.matrix = widgets.ToggleButtons(options=[("Hessian", "hessian"), ("GGN", "ggn")], value=matrix,
                                            style={"button_width": "80px"})
        self.bn_mode = widgets.Dropdown(options=["eval", "train"], value=bn_mode, description="BatchNorm",
                                        layout=field_layout())
        self.steps = widgets.IntText(value=steps, description="steps m", layout=field_layout())
        self.num_vectors = widgets.IntText(value=num_vectors, description="vectors", layout=field_layout())
        self.num_samples = widgets.IntText(value=num_samples, description="samples", layout=field_layout(),
                                           tooltip="0: every sample")
        self.seed = widgets.IntText(value=seed, description="seed", layout=field_layout())
        self.params = widgets.Text(value=params, description="parameters", placeholder="all (or e.g. fc2.*, *.bias)",
                                   layout=widgets.Layout(width="360px"))
        self.save_vectors = widgets.Checkbox(value=save_vectors, description="keep eigenvectors", indent=False,
                                             tooltip="store the Ritz vectors (for landscapes along them)")
        self.step_slider = widgets.IntSlider(value=1, min=1, max=1, description="steps k",
                                             layout=widgets.Layout(width="360px"))
        self.weight_scale = widgets.ToggleButtons(options=["linear", "log"], value="linear",
                                                  style={"button_width": "60px"}, tooltip="Gauss-weight axis",
                                                  layout=widgets.Layout(width="auto"))
        self.sigma_slider = widgets.FloatLogSlider(value=1.0, base=10, min=-2, max=2, step=0.05, description="σ",
                                                   readout_format=".3g", layout=widgets.Layout(width="360px"))
        self.run_picker = widgets.Dropdown(options=[("vector 1", 0)], value=0, description="convergence of",
                                           layout=widgets.Layout(width="220px"), style={"description_width": "initial"})
        self.summary = widgets.HTML()
        self.summary_values: Dict[str, Any] = {}
        self.save_path = widgets.Text(value=save_path, description="save to", layout=widgets.Layout(width="420px"))
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.save_status = widgets.HTML()
        self.runner = TaskRunner(on_run=self.run)
        self._drawn: Optional[Spectrum] = None
        self._convergence_of: Optional[Tuple[Spectrum, int]] = None
        self._shown: Optional[Tuple[Spectrum, int, Spectrum]] = None
        self.source = CheckpointSource(device)
        self._quiet = False
        self._sigma_chosen = False  # the user moved the sigma slider: keep their value
        self._trace = _ConvergenceTrace()
        self._eigenvalue_range: Optional[Tuple[float, float]] = None
        self._planned_steps = 1  # steps m of the run going (the convergence plot's step axis)
        self._build_figures()

        self.step_slider.observe(self._redraw_on_change, "value")
        self.sigma_slider.observe(self._sigma_moved, "value")
        self.weight_scale.observe(self._redraw_on_change, "value")
        self.run_picker.observe(self._pick_run, "value")
        self.save_button.on_click(lambda _button: self.save())
        super().__init__([
            controls_row(self.checkpoint, self.matrix, self.bn_mode),
            controls_row(self.steps, self.num_vectors, self.num_samples, self.seed),
            controls_row(self.params, self.save_vectors),
            self.runner,
            widgets.HBox([widgets.VBox([self.figure, self.legend], layout=widgets.Layout(width="58%")),
                          widgets.VBox([self.convergence_figure, self.convergence_legend],
                                       layout=widgets.Layout(width="40%"))]),
            controls_row(self.step_slider, self.weight_scale, self.sigma_slider),
            controls_row(self.summary, self.run_picker),
            controls_row(self.save_path, self.save_button, self.save_status),
        ])

    def _build_figures(self) -> None:
        eigenvalue, density = linear_scale(), linear_scale()
        weight = {"x": eigenvalue, "y": linear_scale()}
        self.stem_lines = bq.Lines(x=[], y=[], scales=weight, colors=[LANCZOS_COLOR], stroke_width=1.5)
        self.stem_heads = bq.Scatter(x=[], y=[], scales=weight, colors=[LANCZOS_COLOR], default_size=18)
        self.density_line = bq.Lines(x=[], y=[], scales={"x": eigenvalue, "y": density}, colors=[DENSITY_COLOR])
        # no outline, as matplotlib's fill_between of the static plot: the area between row 0 and row 1 is filled
        self.density_band = bq.Lines(x=[], y=[], scales={"x": eigenvalue, "y": density}, fill="between",
                                     colors=[DENSITY_COLOR], fill_colors=[DENSITY_COLOR],
                                     fill_opacities=[BAND_OPACITY, 0.0], stroke_width=0)
        self.weight_axis = bq.Axis(scale=weight["y"], side="left", label="Gauss weight", label_color=LANCZOS_COLOR)
        self.eigenvalue_axis = bq.Axis(scale=eigenvalue, label="eigenvalue")
        self.density_axis = bq.Axis(scale=density, side="right", label="density", label_color=DENSITY_COLOR,
                                    label_offset="52px")
        self.figure = bq.Figure(
            marks=[self.density_band, self.density_line, self.stem_lines, self.stem_heads],
            axes=[self.eigenvalue_axis, self.weight_axis, self.density_axis],
            fig_margin={"top": 20, "bottom": 50, "left": 60, "right": 80},
            layout=widgets.Layout(width="100%", height="380px"))
        self.legend = wide_html(_legend(None))

        step, value = linear_scale(), linear_scale()
        scales = {"x": step, "y": value}
        self.converged_marks = bq.Scatter(x=[], y=[], scales=scales, colors=[LANCZOS_COLOR], default_size=14)
        self.pending_marks = bq.Scatter(x=[], y=[], scales=scales, colors=[PENDING_COLOR], fill=False,
                                        default_size=14)
        self.step_marker = bq.Lines(x=[], y=[], scales=scales, colors=["black"], line_style="dashed")
        self.convergence_figure = bq.Figure(
            marks=[self.pending_marks, self.converged_marks, self.step_marker],
            axes=[bq.Axis(scale=step, label="Lanczos step k"), bq.Axis(scale=value, side="left", label="Ritz value")],
            fig_margin={"top": 20, "bottom": 50, "left": 60, "right": 20},
            layout=widgets.Layout(width="100%", height="380px"))
        self.convergence_legend = wide_html(
            legend_html([("converged", LANCZOS_COLOR, "dot"), ("not converged", PENDING_COLOR, "circle"),
                         ("step k shown", "black", "dashed")]))

    # -- public -----------------------------------------------------------------------------------------------------

    @property
    def result(self) -> Optional[Spectrum]:
        """The spectrum of the last run that finished or was cancelled (then partial), or None."""
        return self.runner.result

    @property
    def settings(self) -> SpectrumSettings:
        """The computation the controls describe now."""
        return SpectrumSettings(checkpoint=self.checkpoint.value, matrix=self.matrix.value, steps=self.steps.value,
                                num_vectors=self.num_vectors.value, params=self.params.value,
                                num_samples=self.num_samples.value, seed=self.seed.value, bn_mode=self.bn_mode.value,
                                backend=self.backend, save_vectors=self.save_vectors.value)

    def run(self, block: bool = False) -> bool:
        """Compute the spectrum of the current controls (see :meth:`TaskRunner.start`).

        Returns False, starting nothing, while a run is going.
        """
        settings = self.settings
        self._planned_steps = settings.steps if isinstance(settings.steps, int) else 1

        def task(progress, cancel):
            return run_spectrum(settings, self.model, self.data, self.loss_fn, self.source, progress, cancel)

        return self.runner.start(task, on_progress=self._show_progress, on_done=self._show_final, block=block)

    def show(self, spectrum: Spectrum) -> None:
        """Display ``spectrum`` (computed earlier, e.g. a cached one) as if a run had just produced it.

        Nothing is computed; :attr:`result` becomes ``spectrum``.

        Raises
        ------
        TypeError
            ``spectrum`` is not a :class:`~curvwidgets.Spectrum`.
        RuntimeError
            A run is going (cancel it first).
        """
        if not isinstance(spectrum, Spectrum):
            raise TypeError(f"spectrum must be a curvwidgets Spectrum; got {type_name(spectrum)}")
        if self.runner.running:
            raise RuntimeError("a spectrum is being computed: cancel it before showing another")
        self.runner.result = spectrum
        self._planned_steps = spectrum.steps
        self._show(spectrum, final=True)

    def save(self) -> Optional[str]:
        """Write :attr:`result` to the path in the text box (``Spectrum.save``); returns the path written.

        A failure (no result, a folder that does not exist, ...) is shown beside the button and returns None.
        """
        try:
            if self.result is None:
                raise ValueError("nothing to save yet: run first")
            if not self.save_path.value.strip():
                raise ValueError("save_path is empty: give the path of a file to write the spectrum to")
            path = os.fspath(self.result.save(self.save_path.value))
        except (OSError, ValueError) as error:
            self.save_status.value = f'<span style="color:#b00020">{html.escape(f"{type(error).__name__}: {error}")}</span>'
            return None
        self.save_status.value = f"saved {html.escape(path)}"
        return path

    # -- drawing (UI thread only: through the runner's dispatcher) --------------------------------------------------

    def _show_progress(self, event: ProgressEvent) -> None:
        if isinstance(event.partial, LanczosResult):
            self._show(Spectrum.from_lanczos(event.partial), final=False)

    def _show_final(self, spectrum: Optional[Spectrum]) -> None:
        self._show(spectrum, final=True)

    def _show(self, spectrum: Optional[Spectrum], final: bool) -> None:
        """Draw a (partial) spectrum at its last step, with its convergence plot so far."""
        self._drawn = spectrum
        steps = 1 if spectrum is None else spectrum.steps
        with self._quietly():
            set_slider(self.step_slider, steps, 1, steps)
            if spectrum is not None:
                self._set_sigma(default_sigma(spectrum.stem()[0], spectrum.steps))
        with self._quietly(), hold_sync(self.sigma_slider, self.run_picker, self.save_button):
            self.sigma_slider.disabled = not final
            self.save_button.disabled = self.result is None
            if spectrum is not None and final:
                self.run_picker.options = [(f"vector {run + 1}", run) for run in range(spectrum.num_vectors)]
                self.run_picker.value = 0
        self._draw()
        self._draw_convergence(spectrum)

    def _set_sigma(self, default: float) -> None:
        """The default width unless the user chose one; the range spans two decades around both."""
        value = self.sigma_slider.value if self._sigma_chosen else default
        low = min(np.log10(default) - 2, np.log10(value))
        high = max(np.log10(default) + 2, np.log10(value))
        set_slider(self.sigma_slider, value, low, high)

    @property
    def eigenvalue_range(self) -> Optional[Tuple[float, float]]:
        """Fixed ``(low, high)`` of the eigenvalue axis, or None to fit each spectrum shown."""
        return self._eigenvalue_range

    @eigenvalue_range.setter
    def eigenvalue_range(self, limits: Optional[Tuple[float, float]]) -> None:
        pair = isinstance(limits, (tuple, list, np.ndarray)) and len(limits) == 2 and \
            all(isinstance(limit, numbers.Real) and not isinstance(limit, bool) for limit in limits)
        low, high = (float(limits[0]), float(limits[1])) if pair else (None, None)
        if limits is not None and not (pair and np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"eigenvalue_range must be None or finite (low, high) with low < high; got {limits!r}")
        self._eigenvalue_range = None if low is None else (low, high)
        self.runner.dispatch(self._draw)

    def _draw(self) -> None:
        """Stems, density and summary of the first ``k`` steps, the axes' ranges, and the step marker."""
        spectrum = self._drawn
        if spectrum is None:
            nodes = weights = grid = density = error = np.zeros(0)
            self.summary_values = {}
        else:
            shown = self._truncated(spectrum, min(self.step_slider.value, spectrum.steps))
            nodes, weights = shown.stem()
            grid, density, error = shown.smooth_spread(sigma=self.sigma_slider.value)
            self.summary_values = shown.summary()
        band_x, band_y = _band(grid, density, error)
        if self.weight_scale.value == "log":
            floor = log_floor(weights)
            heights, base, label = np.log10(np.maximum(weights, floor)), np.log10(floor), "log₁₀ Gauss weight"
            low, high = padded_range(heights, [base])
        else:
            heights, base, label = weights, 0.0, "Gauss weight"
            low, high = 0.0, padded_range(weights, [0.0])[1]
        top = padded_range(density, band_y)[1]
        with hold_sync(self.stem_lines, self.stem_heads, self.density_line, self.density_band, self.weight_axis,
                       self.step_marker, self.summary, self.legend):
            set_range(self.eigenvalue_axis, *(self._eigenvalue_range or padded_range(nodes, grid, margin=0.02)))
            set_range(self.weight_axis, low if spectrum is not None else None, high)
            set_range(self.density_axis, 0.0 if top is not None else None, top)
            self.stem_lines.x, self.stem_lines.y = stem_segments(nodes, heights, base)
            self.stem_heads.x, self.stem_heads.y = nodes, heights
            self.density_line.x, self.density_line.y = grid, density
            self.density_band.x, self.density_band.y = band_x, band_y
            self.weight_axis.label = label
            self.summary.value = _summary_table(self.summary_values)
            self.legend.value = _legend(None if spectrum is None else spectrum.num_vectors)
            self._draw_step_marker()

    def _truncated(self, spectrum: Spectrum, k: int) -> Spectrum:
        """``spectrum.truncate(k)``, kept for the next draw: a smoothing or scale change reuses it."""
        if self._shown is None or self._shown[:2] != (spectrum, k):
            self._shown = (spectrum, k, spectrum if k == spectrum.steps else spectrum.truncate(k))
        return self._shown[2]

    def _draw_step_marker(self) -> None:
        low, high = padded_range(self.converged_marks.y, self.pending_marks.y, margin=0.0)
        if low is not None:
            k = float(self.step_slider.value)
            self.step_marker.x, self.step_marker.y = [k, k], [low, high]
        else:
            self.step_marker.x = self.step_marker.y = np.zeros(0)

    def _draw_convergence(self, spectrum: Optional[Spectrum]) -> None:
        """Ritz values against the step for the chosen start vector, as far as ``spectrum`` goes; None clears.

        The step axis spans the steps of the run (``steps m`` while it goes), so it does not stretch as steps land.
        """
        run = self.run_picker.value
        if self._convergence_of == (spectrum, run):
            return
        self._convergence_of = (spectrum, run)
        if spectrum is None or run >= spectrum.num_vectors:
            steps = values = np.zeros(0)
            converged = np.zeros(0, dtype=bool)
        else:
            steps, values, converged = self._trace.points(spectrum, run, self.tolerance)
        step_axis, value_axis = self.convergence_figure.axes
        last = max(spectrum.steps if spectrum is not None else 1, self._planned_steps)
        with hold_sync(self.converged_marks, self.pending_marks, self.step_marker):
            set_range(step_axis, 0.5 if spectrum is not None else None, last + 0.5, count=min(last, 6))
            set_range(value_axis, *padded_range(values))
            self.converged_marks.x, self.converged_marks.y = steps[converged], values[converged]
            self.pending_marks.x, self.pending_marks.y = steps[~converged], values[~converged]
            self._draw_step_marker()

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _redraw_on_change(self, _change: dict) -> None:
        if not self._quiet:
            self.runner.dispatch(self._draw)

    def _sigma_moved(self, change: dict) -> None:
        if not self._quiet:
            self._sigma_chosen = True
            self._redraw_on_change(change)

    def _pick_run(self, _change: dict) -> None:
        if not self._quiet:
            self.runner.dispatch(lambda: self._draw_convergence(self.result))


class _ConvergenceTrace:
    """The convergence plot's points of one start vector, extended as a run's steps land.

    The points of step ``k`` depend only on the first ``k`` steps of the
    tridiagonal matrices, so they are kept while each newer spectrum starts
    with the same ``alpha``, and computed again otherwise (another run, start
    vector or tolerance). The last step is always recomputed: its residual
    estimate is final only once the next step is known.
    """

    def __init__(self) -> None:
        self._start(None, np.zeros((0, 0)))

    def _start(self, key: Optional[Tuple[int, Optional[float]]], alpha: np.ndarray) -> None:
        """Keep nothing yet, for the start vector and tolerance ``key`` of a run whose ``alpha`` this is."""
        self.key, self.alpha = key, alpha[:, :0]
        self.kept = tuple(np.zeros(0, dtype=dtype) for dtype in (int, float, bool))

    def points(self, spectrum: Spectrum, run: int,
               tolerance: Optional[float]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``convergence_points(spectrum, run, tolerance)``, computing only the steps not kept."""
        kept_steps = self.alpha.shape[1]
        alpha = spectrum.lanczos.alpha
        if self.key != (run, tolerance) or kept_steps >= spectrum.steps or \
                not np.array_equal(alpha[:, :kept_steps], self.alpha, equal_nan=True):
            self._start((run, tolerance), alpha)
            kept_steps = 0
        new = convergence_points(spectrum, run, tolerance, first=kept_steps + 1)
        points = tuple(np.concatenate([old, fresh]) for old, fresh in zip(self.kept, new))
        final = points[0] < spectrum.steps  # all but the last step's
        self.kept, self.alpha = tuple(array[final] for array in points), alpha[:, : spectrum.steps - 1].copy()
        return points


def _band(grid: np.ndarray, density: np.ndarray, error: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of the band mark: ``grid`` and the rows ``max(density - error, 0)``, ``density + error``.

    Only the points where both rows are finite are kept (bqplot draws nothing
    right from a NaN), so one start vector, whose ``error`` is NaN, gives an
    empty band: ``x`` of shape ``(0,)``, ``y`` of shape ``(0,)``. The clip
    catches rounding only: the densities of the start vectors are not
    negative, and the standard error of non-negative numbers never exceeds
    their mean.
    """
    lower, upper = np.maximum(density - error, 0.0), density + error
    keep = np.isfinite(grid) & np.isfinite(lower) & np.isfinite(upper)
    if not keep.any():
        return np.zeros(0), np.zeros(0)
    return grid[keep], np.stack([lower[keep], upper[keep]])


def _legend(num_vectors: Optional[int]) -> str:
    """The spectrum figure's legend: the band's entry says over how many start vectors, or that one gives none."""
    entries = [("Lanczos stems: Ritz values and Gauss weights", LANCZOS_COLOR, "dot"),
               ("smoothed density (right axis)", DENSITY_COLOR, "line")]
    if num_vectors is not None and num_vectors > 1:
        entries.append((f"± 1 s.e. over {num_vectors} start vectors", _translucent(DENSITY_COLOR, BAND_OPACITY),
                        "bar"))
    elif num_vectors is not None:
        entries[1] = ("smoothed density (right axis; 1 start vector: no error bars)", DENSITY_COLOR, "line")
    return legend_html(entries)


def _translucent(colour: str, opacity: float) -> str:
    """``"#rrggbb"`` with the alpha ``opacity`` appended (``"#rrggbbaa"``), as the band is drawn."""
    return f"{colour}{round(255 * opacity):02x}"


def _summary_table(values: Dict[str, Any]) -> str:
    """The summary numbers as a small HTML table (empty before the first result)."""
    if not values:
        return ""
    rows = "".join(f"<tr><td style='padding-right:12px'>{label}</td><td><b>{_shown(values, key, form)}</b></td></tr>"
                   for key, label, form in SUMMARY_ROWS if key in values)
    return f"<table>{rows}</table>"


def _shown(values: Dict[str, Any], key: str, form: str) -> str:
    """``values[key]`` in ``form``, with ``± standard error`` where the summary has a finite one.

    The start vectors' row says what the error bars rest on, or that one vector gives none.
    """
    error = values.get(f"{key}_se")
    if key == "num_vectors":
        return form.format(values[key]) + (" (± one standard error)" if values[key] > 1 else " (no error bars)")
    if error is None or not np.isfinite(error):
        return form.format(values[key])
    if form == "{:.6g}":
        return format_with_error(values[key], error)
    return f"{form.format(values[key])} ± {form.format(error)}"
