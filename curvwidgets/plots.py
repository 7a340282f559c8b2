"""Static matplotlib figures of spectra (the paper's figures, for papermill, CI and GitHub).

Every function draws into ``ax`` (a new figure's axes when None) and returns
the axes, so figures compose: a stem plot and a histogram can share one panel.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.axes import Axes

from ._validate import positive_int
from .linalg.bounds import BoundsTable
from .linalg.densities import DensityLike, check_density, density_spread, smooth_density, stem_density
from .linalg.lanczos import LanczosResult
from .results import Diagonal, Landscape, Spectrum, TrainingHistory

__all__ = [
    "stem_plot",
    "density_curve",
    "eigenvalue_histogram",
    "spectrum_comparison",
    "convergence_plot",
    "bounds_table_plot",
    "training_curves",
    "has_sharpness",
    "sharpness_curve",
    "gradient_overlap_curve",
    "network_spectrum",
    "landscape_lines",
    "landscape_plane",
]

TRUE_COLOR, LANCZOS_COLOR, DIAGONAL_COLOR = "tab:blue", "tab:red", "gold"
MATRIX_NAMES = {"hessian": "Hessian", "ggn": "GGN"}


def _axes(ax: Optional[Axes]) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5, 3.5), layout="constrained")[1]


def stem_plot(
    density: DensityLike,
    ax: Optional[Axes] = None,
    log: bool = False,
    color: str = LANCZOS_COLOR,
    label: Optional[str] = "Lanczos",
) -> Axes:
    """Stem plot of a discrete spectral density (eq. 8): Ritz values on x, Gauss weights on y.

    Parameters
    ----------
    density : LanczosResult or (nodes, weights)
    log : bool, default: False
        Weights on a logarithmic axis, which shows the small weights of
        outlying Ritz values (as the paper's VGG figures do).

    Raises
    ------
    TypeError, ValueError
        When ``density`` is not a ``LanczosResult`` or a valid pair (see
        :func:`~curvwidgets.linalg.densities.check_density`).
    """
    nodes, weights = stem_density(check_density(density, "density"))
    ax = _axes(ax)
    markers, stems, base = ax.stem(nodes, weights, label=label, basefmt=" ")
    markers.set_color(color)
    markers.set_markersize(4)
    stems.set_color(color)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(max(weights[weights > 0].min() / 2, 1e-12), 1.5)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("Gauss weight")
    return ax


def density_curve(
    density: DensityLike, ax: Optional[Axes] = None, sigma: Optional[float] = None, color: str = LANCZOS_COLOR,
    label: Optional[str] = "smoothed Lanczos",
) -> Axes:
    """The Gaussian-smoothed density of :func:`~curvwidgets.linalg.smooth_density` as a line.

    For a Lanczos run from several start vectors, a band of ``±`` one standard
    error over them (:func:`~curvwidgets.linalg.density_spread`) is shaded around it.
    """
    density = check_density(density, "density")
    ax = _axes(ax)
    if isinstance(density, LanczosResult) and density.num_vectors > 1:
        grid, values, error = density_spread(density, sigma=sigma)
        ax.fill_between(grid, values - error, values + error, color=color, alpha=0.25, linewidth=0,
                        label=f"± 1 s.e. over {density.num_vectors} start vectors")
    else:
        grid, values = smooth_density(density, sigma=sigma)
    ax.plot(grid, values, color=color, label=label)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    return ax


def eigenvalue_histogram(
    eigenvalues: np.ndarray,
    ax: Optional[Axes] = None,
    bins: Union[int, Sequence[float]] = 100,
    pdf: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    color: str = TRUE_COLOR,
    label: Optional[str] = "eigenvalues",
    pdf_label: Optional[str] = "limiting density",
) -> Axes:
    """Normalised histogram of exact eigenvalues, with an optional density ``pdf(x)`` drawn over it."""
    ax = _axes(ax)
    values = np.ravel(eigenvalues)
    _, edges, _ = ax.hist(values, bins=bins, density=True, color=color, alpha=0.6, label=label)
    if pdf is not None:
        grid = np.linspace(edges[0], edges[-1], 800)
        ax.plot(grid, pdf(grid), color="black", lw=1.2, label=pdf_label)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    return ax


def spectrum_comparison(
    eigenvalues: np.ndarray,
    density: DensityLike,
    diagonal: np.ndarray,
    ax: Optional[Axes] = None,
    bins: int = 60,
) -> Axes:
    """Figures 4 and 5: true eigenvalues (blue), Lanczos stems (red), the diagonal (yellow).

    All three show fractions of one unit of spectral mass on the same axis:
    the histograms the fraction of values per bin, the stems the Gauss weight
    (fraction of mass) at each Ritz value.
    """
    density = check_density(density, "density")
    ax = _axes(ax)
    values, diagonal = np.ravel(eigenvalues), np.ravel(diagonal)
    edges = np.histogram_bin_edges(np.concatenate([values, diagonal]), bins=bins)
    for data, color, label in ((values, TRUE_COLOR, "eigenvalues"), (diagonal, DIAGONAL_COLOR, "diagonal")):
        ax.hist(data, bins=edges, weights=np.full(data.size, 1.0 / data.size), color=color, alpha=0.6, label=label)
    stem_plot(density, ax=ax, label="Lanczos")
    ax.set_ylabel("fraction of spectral mass")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def convergence_plot(
    exact: float,
    estimates: dict,
    ax: Optional[Axes] = None,
) -> Axes:
    """Error ``|exact - estimate|`` against the number of operator products, one line per method.

    ``estimates`` maps a label (e.g. ``"Lanczos"``) to an array whose entry
    ``k - 1`` is the estimate after ``k`` products.
    """
    ax = _axes(ax)
    floor = np.finfo(float).eps * max(1.0, abs(exact))
    for label, values in estimates.items():
        values = np.asarray(values, dtype=float)
        ax.semilogy(np.arange(1, values.size + 1), np.maximum(np.abs(exact - values), floor), marker=".", label=label)
    ax.set_xlabel("operator products")
    ax.set_ylabel("error in top eigenvalue")
    ax.legend()
    return ax


def bounds_table_plot(table: BoundsTable, ax: Optional[Axes] = None) -> Axes:
    """Table 1 drawn as a table: each cell ``L_{m-1} / R_{m-1}`` and their ratio."""
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.subplots(figsize=(9, 2.8), layout="constrained")[1]
    ax.axis("off")
    cells = [
        [f"{lanczos:.1e} / {power:.1e}\n(ratio {lanczos / power:.1e})" for lanczos, power in zip(lrow, prow)]
        for lrow, prow in zip(table.lanczos, table.power)
    ]
    drawn = ax.table(
        cellText=cells,
        rowLabels=[f"l1/l2 = {gap:g}" for gap in table.gaps],
        colLabels=[f"m = {m}" for m in table.steps],
        loc="center",
        cellLoc="center",
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(7)
    drawn.scale(1.0, 2.6)
    ax.set_title("Table 1: Lanczos bound term L / power bound term R")
    return ax


def training_curves(history: TrainingHistory, axes: Optional[Sequence[Axes]] = None) -> Sequence[Axes]:
    """Loss and top-1 accuracy per epoch, train and test, as ``plot_training`` draws them.

    When the history has measured sharpness (``cw.train(..., monitor=...)``) a
    third panel shows it against the optimiser's stability threshold (:func:`sharpness_curve`), with the
    gradient overlap on a twin axis (:func:`gradient_overlap_curve`): every
    measurement of ``history.measurements`` (a step monitor's at their
    fractional epochs), or of the epoch rows for a history without that table. ``axes``:
    two axes for the loss and accuracy, and a third for that panel (without
    it the panel is left out).
    """
    if axes is None:
        import matplotlib.pyplot as plt

        panels = 3 if has_sharpness(history) else 2
        axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), layout="constrained")[1]
    epochs = history["epoch"]
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "top1", "top-1 accuracy")):
        ax.plot(epochs, history[f"train_{metric}"], marker=".", label="train")
        ax.plot(epochs, history[f"test_{metric}"], marker=".", label="test")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    if len(axes) > 2 and has_sharpness(history):
        sharpness_curve(history, ax=axes[2])
        twin = gradient_overlap_curve(history, ax=axes[2].twinx())
        handles = [handle for ax in (axes[2], twin) for handle in ax.get_legend_handles_labels()[0]]
        # above the panel: the sharpness and the overlap leave no corner free
        axes[2].legend(handles=handles, fontsize="small", loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=3,
                       frameon=False, borderaxespad=0.2)
    return axes


def has_sharpness(history: TrainingHistory) -> bool:
    """Whether ``history`` has a measured sharpness (a curvature monitor ran), in its epochs or its measurements."""
    return bool(np.isfinite(history["sharpness"]).any() or np.isfinite(history.measured("sharpness")).any())


def _measured(history: TrainingHistory, column: str) -> Tuple[np.ndarray, np.ndarray]:
    """The (fractional) epochs at which ``column`` was measured, and its values there.

    From the measurement table (``history.measurements``: every measurement,
    a step monitor's within the epochs too) when it has one, else from the
    epoch rows (a history saved before the table was kept; NaN where not measured).
    """
    if history.measurements:
        epochs, values = history.measured("epoch"), history.measured(column)
    else:
        epochs, values = history["epoch"], history[column]
    kept = np.isfinite(values) & np.isfinite(epochs)
    return epochs[kept], values[kept]


def sharpness_curve(history: TrainingHistory, ax: Optional[Axes] = None, color: Optional[str] = None,
                    label: Optional[str] = "sharpness", threshold_label: Optional[str] = "stability threshold",
                    steps_per_epoch: Optional[int] = None) -> Axes:
    """The sharpness where measured (markers) and the optimiser's stability threshold of every epoch (dashed).

    The measurements are those of ``history.measurements`` at their
    fractional epochs (a monitor with ``unit="step"`` measures within the
    epochs), or the epoch rows' for a history without that table.

    As Cohen et al. (2021) draw it: gradient descent with step size ``eta``
    is unstable along directions of curvature above ``2 / eta``; SGD with
    momentum ``beta`` above ``(2 + 2 beta) / eta``. The dashed line is each
    row's threshold (:meth:`~curvwidgets.results.TrainingHistory.stability_thresholds`:
    ``2 / lr`` for histories without one) and steps with the schedule (it
    holds over that epoch); none for adaptive optimisers.
    Called again on the same ``ax`` (another run, another colour), the axis
    keeps zero, every run's sharpness and the lowest threshold of each in
    view; larger thresholds (a decaying schedule) may leave it.
    ``steps_per_epoch``: the x axis counts optimiser steps, ``epoch *
    steps_per_epoch`` (1 for full-batch gradient descent), instead of epochs.
    """
    ax = _axes(ax)
    scale = 1 if steps_per_epoch is None else positive_int("steps_per_epoch", steps_per_epoch)
    epochs, sharpness = _measured(history, "sharpness")
    line = ax.plot(epochs * scale, sharpness, marker=".", color=color, label=label)[0]
    # each epoch's threshold over that epoch, (e - 1, e]: "steps-pre" from a point at the first epoch's start
    threshold = np.r_[history.stability_thresholds()[:1], history.stability_thresholds()]
    steps = np.r_[history["epoch"][:1] - 1, history["epoch"]] * scale
    limits = ax.dataLim.frozen()  # the view grows to zero and the lowest threshold only, not to a decayed rate's
    ax.plot(steps, threshold, linestyle="--", drawstyle="steps-pre", color=line.get_color(), label=threshold_label)
    ax.dataLim.set(limits)
    finite = threshold[np.isfinite(threshold)]
    if finite.size:
        ax.update_datalim([(steps[0], finite.min()), (steps[-1], 0.0)])
    ax.autoscale_view()
    matrix = (history.config.get("monitor") or {}).get("matrix", "hessian")
    ax.set_xlabel("epoch" if steps_per_epoch is None else "step")
    ax.set_ylabel(f"sharpness (top {MATRIX_NAMES.get(matrix, matrix)} eigenvalue)")
    return ax


def gradient_overlap_curve(history: TrainingHistory, ax: Optional[Axes] = None, color: str = "tab:gray") -> Axes:
    """The fraction of the gradient in the top eigenvectors where measured (as :func:`sharpness_curve`), on 0 to 1."""
    ax = _axes(ax)
    epochs, overlap = _measured(history, "gradient_overlap")
    ax.plot(epochs, overlap, marker="x", markersize=4, linestyle=":", linewidth=1, color=color,
            label="gradient overlap")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("gradient overlap", color=color)
    ax.set_xlabel("epoch")
    return ax


def network_spectrum(
    spectra: Sequence[Spectrum],
    diagonal: Optional[Diagonal] = None,
    ax: Optional[Axes] = None,
    log: bool = True,
    bins: int = 80,
) -> Axes:
    """Figure 6: Lanczos stems of each spectrum (labelled by its matrix) against the diagonal's histogram.

    Stems are Gauss weights and the histogram fractions of the diagonal
    entries per bin, so both are fractions of one unit of spectral mass.
    """
    ax = _axes(ax)
    colors = {"hessian": LANCZOS_COLOR, "ggn": "tab:green"}
    names = {"hessian": "Lanc-Hess", "ggn": "Lanc-GGN"}
    if diagonal is not None:
        fractions, edges = diagonal.histogram(bins)
        ax.bar(edges[:-1], fractions, width=np.diff(edges), align="edge", color=DIAGONAL_COLOR, alpha=0.7,
               label="Diag-GGN" if diagonal.meta.get("matrix") == "ggn_diag" else "diagonal")
    for spectrum in spectra:
        matrix = spectrum.meta.get("matrix", "")
        stem_plot(spectrum.stem(), ax=ax, color=colors.get(matrix, "tab:purple"), label=names.get(matrix, matrix))
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("fraction of spectral mass")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def landscape_lines(landscape: Landscape, metric: str = "train_loss", ax: Optional[Axes] = None) -> Axes:
    """Figures 8 to 11: ``metric`` along each direction, one curve per direction labelled by it."""
    ax = _axes(ax)
    for label, values in zip(landscape.labels, landscape[metric]):
        ax.plot(landscape.offsets, values, marker=".", label=label)
    ax.set_xlabel("t (distance along the direction)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.legend(fontsize="x-small")
    return ax


def landscape_plane(landscape: Landscape, metric: str = "train_loss", ax: Optional[Axes] = None) -> Axes:
    """A plane landscape as filled contours of ``metric`` over the two directions' steps."""
    ax = _axes(ax)
    grid = ax.contourf(landscape.offsets, landscape.offsets, landscape[metric].T, levels=20, cmap="viridis")
    ax.figure.colorbar(grid, ax=ax, label=metric.replace("_", " "))
    ax.set_xlabel(landscape.labels[0])
    ax.set_ylabel(landscape.labels[1])
    return ax
