"""Train, then the spectrum of any checkpoint, then the landscape along its eigenvectors: one tabbed widget."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import ipywidgets as widgets

from .._validate import type_name
from ..results import Spectrum
from ._view import controls_row, padded_range
from ..training import data as datasets
from ..training.checkpoint import checkpoint_epoch
from ._sizes import sizes_for
from ._spectrum_task import SpectrumSettings
from .landscape import LandscapeWidget
from .spectrum import SpectrumWidget
from .training import TrainingWidget

__all__ = ["Dashboard", "checkpoint_label"]

TAB_TITLES = ("Train", "Spectrum", "Landscape")


def checkpoint_label(path: str) -> str:
    """The checkpoint slider's label of a checkpoint file: ``"epoch 12"``, or the file name when it has no epoch.

    Examples
    --------
    >>> checkpoint_label("runs/dashboard/checkpoint-00012.pt")
    'epoch 12'
    """
    epoch = checkpoint_epoch(path)
    return f"epoch {epoch}" if epoch is not None else Path(path).name


class Dashboard(widgets.VBox):
    """Tabs Train -> Spectrum -> Landscape over one training run, with a checkpoint slider.

    **Train** is a :class:`TrainingWidget` writing a checkpoint every
    ``save_every`` epochs into ``out_dir``; its *measure curvature* box draws
    the sharpness against the optimiser's stability threshold (2/η, (2+2β)/η with momentum) and the gradient overlap as the run goes (ticked
    from the start with ``training_options={"monitor": cw.CurvatureMonitor(...)}``),
    and changes no weight, so the checkpoints are those of the run without
    it. Each checkpoint, as it is written,
    becomes a stop of the **checkpoint** slider above the **Spectrum** tab's
    :class:`SpectrumWidget` (which keeps the eigenvectors). Moving the slider
    shows the spectrum of that checkpoint: computed the first time (in the
    worker; a move while one is computing cancels it and computes the new
    one), taken from a cache afterwards, so scrubbing back and forth across
    training is instant. **All checkpoints** computes those not cached yet,
    one after the other. A spectrum that was cancelled is shown but not
    cached; changing the spectrum's controls (matrix, steps, ...) makes a new
    cache key, so every cached spectrum answers exactly the controls shown.
    The **Landscape** tab's :class:`LandscapeWidget` walks the model of the
    checkpoint shown along the eigenvectors of its spectrum (click stems to
    pick them), or along random directions. The Spectrum tab's eigenvalue
    axis spans every cached spectrum of the controls shown, so it stays put
    while the slider scrubs; the slider is its only checkpoint control.

    The sizes of the spectra and landscapes follow the data set picked in the
    Train tab (:data:`~curvwidgets.widgets._sizes.WIDGET_SIZES`), unless
    given: for ``tinytext`` (trained with ``model="TinyTransformer"``, the
    model that reads its token windows, e.g. with ``optimizer="AdamW"``) the
    Spectrum tab's *samples* is 64 and the Landscape tab's *points* 11, so
    that training (400 windows, see :class:`TrainingWidget`), each spectrum
    and each landscape take a few seconds on a CPU; for the other data sets,
    every sample and 21 points.

    Every tab is the widget of its own, usable alone, and reachable as an
    attribute. In a notebook run headless (papermill, nbval),
    ``dashboard.run(block=True)`` trains, computes the spectrum of every
    checkpoint, and the landscape of the last one along the eigenvectors of
    its largest and smallest Ritz values, in the calling thread.

    Parameters
    ----------
    data : DataSet, optional
        Train on this data set; default: the one named ``dataset``, loaded when training starts.
    model, dataset, optimizer, epochs, save_every, seed, device
        Of the :class:`TrainingWidget` (``out_dir`` defaults to ``"runs/dashboard"``).
    matrix, steps, num_vectors
        Of the :class:`SpectrumWidget`.
    num_samples : int, optional
        Of the :class:`SpectrumWidget`; default: the data set's
        (:func:`~curvwidgets.widgets._sizes.sizes_for`), following the data set picked.
    dist : float, default: 1.0
        Of the :class:`LandscapeWidget`: ``t`` runs over ``[-dist, dist]``.
    n_points : int, optional
        Of the :class:`LandscapeWidget`: points per line; default: the data
        set's, following the data set picked. A spectrum handed to the
        landscape comes with the eigenvectors of its largest and smallest
        Ritz values picked.
    training_options, spectrum_options, landscape_options : dict, optional
        Further keyword arguments of each widget.

    Attributes
    ----------
    training : TrainingWidget
    spectrum : SpectrumWidget
    landscape : LandscapeWidget
    panes : (TrainingWidget, ipywidgets.VBox, LandscapeWidget)
        The content of each tab (the VBox holds the checkpoint slider and the
        spectrum widget); only the tab shown holds its pane.
    tabs : ipywidgets.Tab
    checkpoint_slider : ipywidgets.SelectionSlider
        Options ``(checkpoint_label(path), path)`` of the checkpoints written so far.
    all_button : ipywidgets.Button
        Computes the spectra of the checkpoints not cached yet.
    cache : dict
        ``SpectrumSettings -> Spectrum`` of every spectrum computed to its end.
    """

    def __init__(self, data: Optional[datasets.DataSet] = None, *, model: str = "MLP", dataset: str = "digits",
                 optimizer: str = "SGD", epochs: int = 10, out_dir: str = "runs/dashboard", save_every: int = 1,
                 seed: int = 0, device: Optional[str] = None, matrix: str = "hessian", steps: int = 20,
                 num_vectors: int = 1, num_samples: Optional[int] = None, dist: float = 1.0,
                 n_points: Optional[int] = None,
                 training_options: Optional[Dict[str, Any]] = None,
                 spectrum_options: Optional[Dict[str, Any]] = None,
                 landscape_options: Optional[Dict[str, Any]] = None):
        sizes = sizes_for(data.name if isinstance(data, datasets.DataSet) else dataset)
        self._follows_data = (num_samples is None, n_points is None)  # which sizes follow the data set picked
        num_samples = sizes.num_samples if num_samples is None else num_samples
        n_points = sizes.n_points if n_points is None else n_points
        training = dict(model=model, dataset=dataset, optimizer=optimizer, epochs=epochs, out_dir=out_dir,
                        save_every=save_every, seed=seed, device=device)
        spectrum = dict(matrix=matrix, steps=steps, num_vectors=num_vectors, num_samples=num_samples, seed=seed,
                        device=device, save_vectors=True)
        landscape = dict(dist=dist, n_points=n_points, device=device)
        self.training = TrainingWidget(data, **training, **_options("training_options", training_options,
                                                                    "TrainingWidget", training))
        self.spectrum = SpectrumWidget(**spectrum, **_options("spectrum_options", spectrum_options, "SpectrumWidget",
                                                              spectrum))
        self.landscape = LandscapeWidget(**landscape, **_options("landscape_options", landscape_options,
                                                                 "LandscapeWidget", landscape))
        self.landscape.source = self.spectrum.source  # a checkpoint is read once for both tabs
        self.spectrum.checkpoint.layout.display = "none"  # the slider above chooses the checkpoint
        self.cache: Dict[SpectrumSettings, Spectrum] = {}
        self.checkpoint_slider = widgets.SelectionSlider(options=[("none yet", "")], value="", description="checkpoint",
                                                         continuous_update=False, disabled=True,
                                                         layout=widgets.Layout(width="520px"))
        self.all_button = widgets.Button(description="All checkpoints", icon="forward", disabled=True,
                                         tooltip="compute the spectrum of every checkpoint not cached yet")
        self.cache_status = widgets.Label()
        self._queue: List[str] = []  # checkpoints of "All checkpoints" still to compute, the next first
        self._pending: Optional[str] = None  # the slider's pick, to compute once the run going ends
        self._stopping = False  # the run going was cancelled for the pick
        self._from_queue = False  # the run going is one of "All checkpoints" (a pick does not cancel it)
        self._blocking = False  # run(block=True) drives the computations itself
        self._moving = False  # the slider is being moved by the dashboard, not by the user
        self._computing: Optional[SpectrumSettings] = None  # what the spectrum run going (or last) computes

        self.training.observe(self._checkpoints_written, "checkpoints")
        self.training.dataset_name.observe(self._data_picked, "value")
        self.checkpoint_slider.observe(self._checkpoint_moved, "value")
        self.all_button.on_click(lambda _button: self.compute_all())
        self.spectrum.runner.on_run = self._compute  # the spectrum's own Run button, too, fills the cache
        self.spectrum.runner.on_finish(self._spectrum_finished)
        self.panes = (self.training,
                      widgets.VBox([controls_row(self.checkpoint_slider, self.all_button, self.cache_status),
                                    self.spectrum]),
                      self.landscape)
        self.tabs = widgets.Tab(children=[widgets.VBox(layout=widgets.Layout(width="100%")) for _ in self.panes],
                                titles=TAB_TITLES)
        self.tabs.observe(self._tab_shown, "selected_index")
        self._tab_shown()
        super().__init__([self.tabs])
        self._checkpoints_written({"new": list(self.training.checkpoints)})

    # -- public -----------------------------------------------------------------------------------------------------

    @property
    def checkpoints(self) -> Tuple[str, ...]:
        """The checkpoints on the slider, oldest first."""
        return tuple(path for _label, path in self.checkpoint_slider.options if path)

    def show_checkpoint(self, path: str, block: bool = False) -> bool:
        """Show the spectrum of checkpoint ``path``: from the cache, or computed now (what a slider move does).

        With ``block`` the computation runs in the calling thread. Without, it
        runs in the worker; while another spectrum is being computed, this one
        follows it, and the other is cancelled when it was an earlier pick
        (not one of :meth:`compute_all`'s). Returns False only when nothing
        could be started.
        """
        return self._show_checkpoint(path, block, from_queue=False)

    def _show_checkpoint(self, path: str, block: bool, from_queue: bool) -> bool:
        self.spectrum.checkpoint.value = path
        cached = self.cache.get(self.spectrum.settings)
        if self.spectrum.runner.running:
            on_its_way = self._computing == self.spectrum.settings and not self._stopping
            self._pending = None if on_its_way else path
            if not on_its_way and not self._stopping and not self._from_queue:
                self._stopping = self.spectrum.runner.cancel()  # a pick the user moved away from
            return True
        if cached is not None:
            self._fix_eigenvalue_axis()
            self.spectrum.show(cached)
            self._hand_to_landscape(path, cached)
            return True
        return self._compute(block, from_queue)

    def compute_all(self, block: bool = False) -> None:
        """Compute the spectrum of every checkpoint not cached yet (in order), showing each as it ends."""
        self._queue = [path for path in self.checkpoints if self._settings_for(path) not in self.cache]
        if block:
            while self._queue:
                self._select(self._queue.pop(0), block=True, from_queue=True)
        elif self._queue and not self.spectrum.runner.running:
            self._select(self._queue.pop(0), from_queue=True)

    def run(self, block: bool = False) -> bool:
        """Train; with ``block``, then every checkpoint's spectrum and the last one's landscape, in this thread.

        Without ``block`` this is the Train button: the rest follows the
        user's clicks. Returns False when training did not start (one is going).
        """
        if not block:
            return self.training.run()
        self._blocking = True
        try:
            if not self.training.run(block=True):
                return False
            self.compute_all(block=True)
            if self.landscape.spectrum is not None:
                self.landscape.run(block=True)
        finally:
            self._blocking = False
        return True

    # -- reactions (UI thread) --------------------------------------------------------------------------------------

    def _compute(self, block: bool = False, from_queue: bool = False) -> bool:
        """Start the spectrum of the controls shown, remembering what it computes (its cache key)."""
        self._computing, self._from_queue = self.spectrum.settings, from_queue
        return self.spectrum.run(block=block)

    def _settings_for(self, path: str) -> SpectrumSettings:
        """The cache key of ``path``'s spectrum at the controls shown now."""
        return dataclasses.replace(self.spectrum.settings, checkpoint=path)

    def _select(self, path: str, block: bool = False, from_queue: bool = False) -> None:
        """Move the slider to ``path`` (quietly) and show its spectrum."""
        self._moving = True
        try:
            self.checkpoint_slider.value = path
        finally:
            self._moving = False
        self._show_checkpoint(path, block, from_queue)

    def _tab_shown(self, _change: Optional[Dict[str, Any]] = None) -> None:
        """Only the tab shown holds its pane.

        bqplot lays a figure out when its view is attached; a view attached in
        a hidden tab is laid out at zero size (negative SVG sizes, errors in the
        browser console). A pane's widgets keep their state while it is out of
        view, and their views are drawn afresh when its tab is shown.
        """
        for index, (holder, pane) in enumerate(zip(self.tabs.children, self.panes)):
            holder.children = (pane,) if index == self.tabs.selected_index else ()

    def _checkpoints_written(self, change: Dict[str, Any]) -> None:
        paths: Sequence[str] = change["new"]
        if not paths:
            return
        follow = self.checkpoint_slider.value in ("", *self.checkpoints[-1:])  # the newest was shown: stay newest
        shown = paths[-1] if follow else self.checkpoint_slider.value
        self._moving = True  # new stops (and following the newest) compute nothing
        try:
            with self.checkpoint_slider.hold_sync():
                self.checkpoint_slider.options = [(checkpoint_label(path), path) for path in paths]
                self.checkpoint_slider.value = shown
                self.checkpoint_slider.disabled = False
        finally:
            self._moving = False
        if not self.spectrum.runner.running:
            self.spectrum.checkpoint.value = shown  # what the spectrum's Run computes is what the slider shows
        self.all_button.disabled = False
        self._show_cache_status()

    def _data_picked(self, change: Dict[str, Any]) -> None:
        """The spectrum's samples and the landscape's points become the new data set's, where not given."""
        sizes = sizes_for(change["new"])
        samples, points = self._follows_data
        if samples:
            self.spectrum.runner.dispatch(lambda: setattr(self.spectrum.num_samples, "value", sizes.num_samples))
        if points:
            self.landscape.runner.dispatch(lambda: setattr(self.landscape.n_points, "value", sizes.n_points))

    def _checkpoint_moved(self, change: Dict[str, Any]) -> None:
        if change["new"] and not self._moving:
            self.show_checkpoint(change["new"])

    def _spectrum_finished(self, outcome: str, spectrum: Optional[Spectrum]) -> None:
        """After every spectrum run: cache a finished one, hand it to the landscape, start the next queued."""
        computed, self._computing, self._stopping = self._computing, None, False
        if outcome == "done" and spectrum is not None and computed is not None and computed.checkpoint:
            self.cache[computed] = spectrum
            self._fix_eigenvalue_axis()
            if computed == self.spectrum.settings:  # not a run overtaken by another pick
                self._hand_to_landscape(computed.checkpoint, spectrum)
        self._show_cache_status()
        if outcome == "failed":  # the error is shown; nothing more is started
            self._queue, self._pending = [], None
        if self._blocking:
            return
        if self._pending is not None:
            pick, self._pending = self._pending, None
            self._select(pick)
        elif self._queue:
            self._select(self._queue.pop(0), from_queue=True)

    def _fix_eigenvalue_axis(self) -> None:
        """The spectrum's eigenvalue axis spans every cached spectrum of the controls shown (None before one)."""
        controls = dataclasses.replace(self.spectrum.settings, checkpoint="")
        values = [spectrum.ritz_values for key, spectrum in self.cache.items()
                  if dataclasses.replace(key, checkpoint="") == controls]
        low, high = padded_range(*values)
        self.spectrum.eigenvalue_range = None if low is None else (low, high)

    def _hand_to_landscape(self, path: str, spectrum: Spectrum) -> None:
        self.landscape.checkpoint.value = path
        self.landscape.spectrum = spectrum

    def _show_cache_status(self) -> None:
        cached = sum(self._settings_for(path) in self.cache for path in self.checkpoints)
        self.cache_status.value = f"{cached}/{len(self.checkpoints)} spectra cached"


def _options(name: str, options: Any, widget: str, given: Dict[str, Any]) -> Dict[str, Any]:
    """``options`` for ``widget`` as a dict, none of whose keys the Dashboard sets itself (``given``)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(key, str) for key in options):
        raise TypeError(f"{name} must be None or a dict of {widget} arguments; got {type_name(options)}")
    for key, value in options.items():
        if key == "save_vectors":
            raise ValueError(f"{name}: the Dashboard sets save_vectors=True itself (its landscapes walk along the "
                             "eigenvectors)")
        if key in given:
            raise ValueError(f"{name}: {key!r} is an argument of Dashboard itself; give {key}={value!r}")
    return dict(options)
