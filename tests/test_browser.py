"""What the user sees: every widget of the notebooks used in JupyterLab in headless chromium, checked after each action.

Run it with ``make test-browser`` (or ``.venv/bin/python -m pytest -p no:cacheprovider -v tests/test_browser.py``;
``make test`` runs it too). One JupyterLab server (on a free loopback port, with a random token, in a scratch
folder, so that no repository file is autosaved over) and one chromium serve every test:

* ``synthetic_widgets.ipynb``, built by :func:`browser_user.scratch_notebook` from the widget cells of notebooks
  01 to 06 and the cells they need, with smaller sizes put after each "parameters" cell (their static figures are
  never computed): the six SyntheticSpectrumWidgets as the notebooks leave them, then one of them used: step
  slider, diagonal toggle, every ensemble of the dropdown (which controls show), typed eigenvalues, Run;
* ``notebooks/10_dashboard.ipynb`` as it is, with smaller parameters injected: the SpectrumWidget (Run, the
  figures while it computes, Cancel, step and sigma sliders, log/linear), the LandscapeWidget it feeds (stem
  clicks, Run, train/test and loss/accuracy, the three kinds of directions and the options of the normalised
  ones, the plane while it computes, Cancel), and the Dashboard (measure curvature ticked on a small subset, Train
  with the sharpness, 2/eta and gradient-overlap curves checked while the epochs come in and after, then its
  Spectrum tab: Run, checkpoint slider, All checkpoints; then its Landscape tab: Run, toggles);
* ``transformer_dashboard.ipynb``, one cell making a Dashboard at its defaults (but two epochs, ten Lanczos steps):
  the user picks TinyTransformer, tinytext and AdamW, trains, computes the Hessian and GGN spectra of the last
  checkpoint, then its landscape (at the sizes the Dashboard gives tinytext: a few seconds of compute in all).

After every action the test waits for the widget to react and for what it computes, takes a screenshot of the
widget and calls :func:`browser_user.assert_drawn_right` (finite marks, tick labels present and apart, legends
off the data, no squashed plot, no cut label, the controls the user needs showing, no error in the widget, no
browser console error). The screenshots go to ``test-artefacts/browser/`` (``$CURVWIDGETS_ARTEFACTS/browser/``
when that is set) as ``<widget>-<nn>-<action>.png``, in the order taken, beside the server's log
(``jupyterlab.log``), the wall time (``timing.txt``) and, for a failed test, ``failure-<test>.png`` and
``.html`` of the whole page.

Playwright's own browser download does not work everywhere, so the tests use the system chromium
(``$CURVWIDGETS_CHROMIUM``, default ``/usr/bin/chromium``). Without it, JupyterLab or Playwright they skip,
saying how to enable them; with ``CURVWIDGETS_REQUIRE_BROWSER=1`` (set by ``.ci/run``) they fail instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from curvwidgets.widgets.training import OVERLAP_COLOR, SHARPNESS_COLOR, THRESHOLD_COLOR

from browser_user import (JupyterLabServer, Lab, WidgetUser, chromium, inject_parameters, playwright_entry, quiet_env,
                          scratch_notebook, unavailable)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTEFACTS = Path(os.environ.get("CURVWIDGETS_ARTEFACTS") or REPO / "test-artefacts") / "browser"
HOW_TO_ENABLE = ("install Debian's chromium (as root: apt-get install chromium) and the test tools "
                 "(make test installs jupyterlab and playwright into .venv), then run make test; "
                 "CURVWIDGETS_REQUIRE_BROWSER=1 turns this skip into a failure")
# the JupyterLab front-end extensions the widgets need, as `jupyter labextension list` names them
LAB_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "bqplot")
CELLS_S = 300            # all cells of a notebook executed

# notebooks 01-06: the ensemble of each one's widget, and smaller sizes for its cells (their "parameters" names)
SYNTHETIC = {
    "01_lanczos_vs_power": ("typed", {"P": 60, "steps": 10}),
    "02_lanczos_myths": ("typed", {"P": 60, "m": 6}),
    "03_wigner": ("wigner", {"P_small": 100, "steps": 12, "bins": 30}),
    "04_marchenko_pastur": ("marchenko-pastur", {"P_small": 100, "steps": 12, "bins": 30}),
    "05_diagonal_approximation": ("marchenko-pastur", {"P": 100, "steps": 12, "bins": 30}),
    "06_synthetic_spectrum": ("section53", {"steps_list": [5, 10]}),
}
SCRATCH = "synthetic_widgets.ipynb"
# the dropdown's text for each ensemble
ENSEMBLE_LABELS = {"wigner": "Wigner", "marchenko-pastur": "Marchenko-Pastur", "typed": "typed spectrum",
                   "section53": "section 5.3"}
# (the Run button is left out: it reads Cancel while a run goes, and every run clicks it)
SYNTHETIC_CONTROLS = ("ensemble", "P", "steps m", "vectors", "seed", "steps k", "diagonal baseline")
# controls that apply to one ensemble only
ENSEMBLE_ONLY = {"T / P": "marchenko-pastur", "eigenvalues": "typed"}

# a Dashboard the test points at TinyTransformer on tinytext: two epochs, ten Lanczos steps, the rest its defaults
TRANSFORMER = "transformer_dashboard.ipynb"
TRANSFORMER_CELL = """from curvwidgets.widgets import Dashboard

dashboard = Dashboard(epochs=2, steps=10, out_dir="runs/transformer")
dashboard"""
# notebook 10, CPU-sized already, made smaller still: no training before the widgets, a short spectrum on few
# samples, five points per line, two epochs of the dashboard
DASHBOARD = "10_dashboard.ipynb"
DASHBOARD_PARAMETERS = {"epochs": 0, "steps": 10, "num_samples": 64, "n_points": 5, "dashboard_epochs": 2}
SPECTRUM_STEPS = "30"    # typed into the spectrum widget, so that it runs long enough to be seen computing
PLANE_POINTS = 5         # points per axis of the plane
SPECTRUM_CONTROLS = ("checkpoint", "Hessian", "GGN", "BatchNorm", "steps m", "vectors", "samples", "seed",
                     "parameters", "keep eigenvectors", "steps k", "linear", "log", "σ", "convergence of",
                     "save to", "Save")
LANDSCAPE_CONTROLS = ("checkpoint", "eigenvectors", "random", "normalised", "count", "seed", "dist", "points",
                      "BatchNorm", "plane of two directions", "stems of", "train", "test", "loss", "accuracy")
# the options of the normalised directions, shown for them only
NORMALISATION_CONTROLS = ("norm", "bias, BN", "move BN statistics")
TRAINING_CONTROLS = ("model", "data", "optimiser", "lr", "epochs", "schedule", "SWA from", "SWA lr", "out_dir",
                     "save every", "seed", "resume from out_dir", "measure curvature", "every", "subset size",
                     "checkpoints")
CURVATURE_SAMPLES = "64"  # the monitor's subset in the Dashboard's training (256, the default, two choices lower)
SHARPNESS_TITLE, OVERLAP_TITLE = "sharpness and stability threshold", "gradient overlap"
TABS = ("Train", "Spectrum", "Landscape")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _unavailable(reason: str) -> None:
    unavailable("browser test", reason, HOW_TO_ENABLE)


def _require_jupyterlab() -> None:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _unavailable("the jupyterlab package is not installed")


# -- the front-end extensions ------------------------------------------------------------------------------------


def test_lab_extensions_for_the_widgets_are_installed_and_enabled():
    _require_jupyterlab()
    listing = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                             text=True, timeout=120, env=quiet_env())
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)   # drop the colours
    for name in LAB_EXTENSIONS:
        lines = [line for line in text.splitlines() if line.split()[:1] == [name]]
        assert lines, f"JupyterLab extension {name} is missing; `jupyter labextension list` said:\n{text}"
        assert "enabled" in lines[0] and "OK" in lines[0], f"{name} is not enabled and OK: {lines[0]!r}"


# -- server, browser, notebooks (one each for the whole module) --------------------------------------------------


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's entry point, once JupyterLab, Playwright and chromium are known to be there."""
    _require_jupyterlab()
    return playwright_entry("browser test", HOW_TO_ENABLE)


def _transformer_notebook(kernelspec: dict) -> nbformat.NotebookNode:
    """A notebook of one cell, :data:`TRANSFORMER_CELL`, for the kernel ``kernelspec``."""
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": kernelspec})
    notebook.cells = [nbformat.v4.new_markdown_cell("## TinyTransformer on tinytext in the Dashboard"),
                      nbformat.v4.new_code_cell(TRANSFORMER_CELL)]
    return notebook


def _write_notebooks(folder: Path) -> None:
    """The scratch notebook of notebooks 01-06, notebook 10 with smaller parameters, and the transformer's."""
    nbformat.write(scratch_notebook({NOTEBOOKS / f"{stem}.ipynb": values
                                     for stem, (_ensemble, values) in SYNTHETIC.items()}), folder / SCRATCH)
    dashboard = nbformat.read(NOTEBOOKS / DASHBOARD, as_version=4)
    nbformat.write(inject_parameters(dashboard, DASHBOARD_PARAMETERS), folder / DASHBOARD)
    nbformat.write(_transformer_notebook(dashboard.metadata["kernelspec"]), folder / TRANSFORMER)


@pytest.fixture(scope="module")
def server(tmp_path_factory, sync_playwright) -> Iterator[JupyterLabServer]:
    """JupyterLab serving the notebooks from a scratch folder; its log goes to the artefacts."""
    root = tmp_path_factory.mktemp("lab")
    served = root / "notebooks"
    served.mkdir()
    _write_notebooks(served)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for stale in [*ARTEFACTS.glob("*.png"), *ARTEFACTS.glob("*.html")]:   # screenshots of an earlier run
        stale.unlink()
    started = time.monotonic()
    # one BLAS/torch thread per kernel: the browser needs the other core
    with JupyterLabServer(served, root / "jupyter", ARTEFACTS / "jupyterlab.log", env={"OMP_NUM_THREADS": "1"}) as lab:
        yield lab
    (ARTEFACTS / "timing.txt").write_text(f"browser tests: {time.monotonic() - started:.1f} s\n")


@pytest.fixture(scope="module")
def browser(server, sync_playwright, tmp_path_factory):
    """A headless chromium at a 1280 x 800 viewport, pages opened from it."""
    with chromium(sync_playwright, tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def _lab_on(browser, server, notebook: str, widgets: int) -> Iterator[Lab]:
    """A page showing ``notebook`` with all its cells run (screenshot and HTML kept if that fails)."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    lab = Lab(page, server, ARTEFACTS)
    try:
        lab.open_notebook(notebook)
        lab.run_all_cells(widgets=widgets, timeout_s=CELLS_S)
    except BaseException:
        lab.save_failure(f"failure-{Path(notebook).stem}-run-all")
        raise
    yield lab
    page.close()


@pytest.fixture(scope="module")
def synthetic_lab(browser, server) -> Iterator[Lab]:
    """The scratch notebook of notebooks 01-06, run."""
    yield from _lab_on(browser, server, SCRATCH, widgets=len(SYNTHETIC))


@pytest.fixture(scope="module")
def dashboard_lab(browser, server) -> Iterator[Lab]:
    """Notebook 10 (spectrum, landscape, dashboard), run."""
    yield from _lab_on(browser, server, DASHBOARD, widgets=3)


@pytest.fixture(scope="module")
def transformer_lab(browser, server) -> Iterator[Lab]:
    """The transformer's Dashboard notebook, run."""
    yield from _lab_on(browser, server, TRANSFORMER, widgets=1)


@pytest.fixture(autouse=True)
def _failure_artefacts(request):
    """Screenshot and HTML of the page of a test that failed."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        for value in request.node.funcargs.values():
            if isinstance(value, Lab):
                value.save_failure(f"failure-{request.node.name}")


# -- notebooks 01-06: SyntheticSpectrumWidget ------------------------------------------------------------------------


def _expect_ensemble(user: WidgetUser, ensemble: str) -> None:
    """The controls that must show, and those that must not, for ``ensemble``."""
    only = [label for label, owner in ENSEMBLE_ONLY.items() if owner == ensemble]
    user.controls = SYNTHETIC_CONTROLS + tuple(only)
    user.hidden = tuple(label for label in ENSEMBLE_ONLY if label not in only)


def test_synthetic_widgets_as_notebooks_01_to_06_leave_them(synthetic_lab):
    for index, (stem, (ensemble, _values)) in enumerate(SYNTHETIC.items()):
        widget = synthetic_lab.widget(index, f"synthetic-{stem}")
        _expect_ensemble(widget, ensemble)
        widget.expect_data = True   # each cell runs its widget
        widget.looks_right("as-run")


def test_synthetic_widget_slider_diagonal_ensembles_and_run(synthetic_lab):
    stem = "03_wigner"
    widget = synthetic_lab.widget(list(SYNTHETIC).index(stem), "synthetic-used")
    _expect_ensemble(widget, "wigner")
    widget.expect_data = True
    steps = widget.readout("steps k")
    widget.move_slider("steps k", "Home")
    assert widget.readout("steps k") == "1"
    widget.move_slider("steps k", "End")
    assert widget.readout("steps k") == steps
    widget.check("diagonal baseline")
    widget.check("diagonal baseline")
    for ensemble in ("marchenko-pastur", "section53", "typed", "wigner", "typed"):
        _expect_ensemble(widget, ensemble)
        widget.choose("ensemble", ENSEMBLE_LABELS[ensemble])
    widget.type_into("eigenvalues", "0, 0, 0.5, 1, 2.5, 10")
    widget.click("Run")
    _expect_ensemble(widget, "marchenko-pastur")
    widget.choose("ensemble", ENSEMBLE_LABELS["marchenko-pastur"])
    widget.type_into("P", "150")
    widget.click("Run")


# -- notebook 10: SpectrumWidget, the LandscapeWidget it feeds, Dashboard ----------------------------------------------


def test_spectrum_widget_run_cancel_sliders_and_scale(dashboard_lab):
    spectrum = dashboard_lab.widget(0, "spectrum", SPECTRUM_CONTROLS)
    spectrum.looks_right("before-run")
    spectrum.type_into("steps m", SPECTRUM_STEPS)
    spectrum.start("Run")
    spectrum.wait_progress(3)
    spectrum.expect_data = True   # stems, density and convergence grow with the run
    spectrum.looks_right("computing", settle_s=1)
    spectrum.cancel()
    assert "1 (no error bars)" in spectrum.root.inner_text(), "one start vector: the summary must say it has no error bars"
    assert _band(spectrum) == "", "one start vector: the density must have no band of standard errors"
    spectrum.type_into("vectors", "3")
    spectrum.click("Run")
    summary = spectrum.root.inner_text()
    assert "3 (± one standard error)" in summary and re.search(r"trace estimate\s+-?[\d.]+ ± [\d.]+", summary), \
        "with 3 start vectors the summary must give the trace and negative mass with their ± error bars"
    assert "± 1 s.e. over 3 start vectors" in summary, "the legend must name the band of standard errors"
    assert _band(spectrum), "with 3 start vectors the density must be drawn with its band of standard errors"
    spectrum.looks_right("three-start-vectors")
    assert spectrum.readout("steps k") == SPECTRUM_STEPS, "after the run the step slider is not at k = m"
    spectrum.move_slider("steps k", "Home")
    assert spectrum.readout("steps k") == "1"
    # not End: noUiSlider's End goes to the maximum the slider had when first drawn (1 here, before any run)
    spectrum.move_slider("steps k", "ArrowRight")
    assert spectrum.readout("steps k") == "2"
    band = _band(spectrum)
    spectrum.move_slider("σ", "ArrowLeft")
    assert _band(spectrum) not in ("", band), "moving σ must redraw the band of standard errors with the density"
    spectrum.toggle("log")
    spectrum.toggle("linear")


# the filled areas (bqplot Lines with fill) of the widget's first figure shown: their path, vertices, fill, opacity
AREAS_JS = """root => {
    const shown = el => el.checkVisibility() && el.getBoundingClientRect().width > 0;
    const figure = Array.from(root.querySelectorAll('.bqplot.figure')).find(shown);
    return figure ? Array.from(figure.querySelectorAll('svg.svg-figure g.curve path.area')).map(area => {
        const d = area.getAttribute('d') || '', style = getComputedStyle(area);
        return {d, vertices: (d.match(/[ML]/g) || []).length, fill: style.fill, opacity: Number(style.opacity),
                finite: !/NaN|null|undefined|Infinity/.test(d)};
    }) : [];
}"""


def _band(spectrum: WidgetUser) -> str:
    """The path of the density's band of standard errors as drawn now ("" when none is: one start vector)."""
    areas = spectrum.root.evaluate(AREAS_JS)
    filled = [area for area in areas if area["vertices"] > 2 and area["opacity"] > 0 and area["fill"] != "none"]
    assert all(area["finite"] for area in areas), f"a filled area has non-finite geometry: {areas}"
    assert len(filled) <= 1, f"the spectrum figure fills more than the band: {filled}"
    return filled[0]["d"] if filled else ""


def _spectrum_computed(lab: Lab) -> None:
    """The notebook's spectrum widget has a result (it feeds the landscape widget): run it when it has none."""
    spectrum = lab.widget(0, "spectrum-for-landscape", SPECTRUM_CONTROLS)
    spectrum.wait_idle()
    if "done" not in spectrum.root.inner_text():
        spectrum.click("Run")


def test_landscape_widget_stems_run_toggles_directions_and_plane(dashboard_lab):
    _spectrum_computed(dashboard_lab)
    landscape = dashboard_lab.widget(1, "landscape", LANDSCAPE_CONTROLS)
    landscape.hidden = NORMALISATION_CONTROLS   # they apply to normalised directions only
    landscape.looks_right("before-run")
    landscape.click_stem(1)
    landscape.click_stem(2, ctrl=True)
    assert landscape.root.inner_text().count("picked:") == 1
    landscape.expect_data = True
    landscape.click("Run")
    for toggle in ("test", "accuracy", "train", "loss", "random"):
        landscape.toggle(toggle)
    landscape.controls, landscape.hidden = LANDSCAPE_CONTROLS + NORMALISATION_CONTROLS, ()
    landscape.toggle("normalised")
    landscape.click("Run")
    assert "filter-normalised 1" in landscape.root.inner_text(), "the default normalisation is not filter"
    landscape.choose("norm", "layer")
    landscape.choose("bias, BN", "own values")
    landscape.check("move BN statistics")   # the notebook's SmallCNN has BatchNorm
    landscape.click("Run")
    assert "layer-normalised 1" in landscape.root.inner_text(), "the normalisation picked is not the one drawn"
    landscape.controls, landscape.hidden = LANDSCAPE_CONTROLS, NORMALISATION_CONTROLS
    landscape.toggle("eigenvectors")
    landscape.check("plane of two directions")
    landscape.type_into("points", str(PLANE_POINTS))
    landscape.start("Run")
    landscape.wait_progress(2 * PLANE_POINTS + 1)   # two columns of the plane computed: the first it draws
    landscape.looks_right("plane-computing", settle_s=1)
    landscape.cancel()
    landscape.check("plane of two directions")
    landscape.type_into("dist", "1e36")   # so far that the network's outputs overflow everywhere but at t = 0
    landscape.click("Run")
    assert "NaN or infinite" in landscape.root.inner_text(), "a diverged sweep does not say so"
    red = landscape.root.evaluate("""root => [...root.querySelectorAll('.bqplot.figure path')]
        .filter(node => node.getBoundingClientRect().width > 0 && getComputedStyle(node).fill === 'rgb(224, 0, 0)')
        .length""")
    assert red == 2 * (PLANE_POINTS - 1), f"{red} red crosses drawn for the {2 * (PLANE_POINTS - 1)} diverged points"


def _rgb(colour: str) -> str:
    """``"#2ca02c"`` as the browser computes a stroke: ``"rgb(44, 160, 44)"``."""
    return "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))


# the sharpness figure: the sharpness line with a marker per measurement, then 2/eta dashed with a step (two
# vertices) per epoch; measured every epoch, so as many steps as markers
SHARPNESS_DRAWN = """curves => curves.length === 2 && curves.every(curve => curve.finite) && curves[0].dots >= 1
    && curves[1].vertices === 2 * curves[0].dots"""


def _assert_curvature_drawn(user: WidgetUser, epochs: int) -> None:
    """The sharpness, 2/eta and overlap curves of ``epochs`` measured epochs are drawn in their colours."""
    sharpness, threshold = user.curves(SHARPNESS_TITLE)
    assert (sharpness["colour"], sharpness["dashed"], sharpness["dots"], sharpness["vertices"]) == (
        _rgb(SHARPNESS_COLOR), False, epochs, epochs), f"the sharpness of {epochs} epochs is not drawn: {sharpness}"
    assert (threshold["colour"], threshold["dashed"], threshold["vertices"]) == (
        _rgb(THRESHOLD_COLOR), True, 2 * epochs), f"the stability threshold steps of {epochs} epochs are not drawn: {threshold}"
    (overlap,) = user.curves(OVERLAP_TITLE)
    assert (overlap["colour"], overlap["dots"]) == (_rgb(OVERLAP_COLOR), epochs), \
        f"the gradient overlap of {epochs} epochs is not drawn: {overlap}"


def _train_measuring_the_curvature(dashboard: WidgetUser, epochs: int) -> None:
    """Tick measure curvature, Train, and check its figures while the epochs come in and after."""
    assert dashboard.curves(SHARPNESS_TITLE) is None, "the sharpness figure shows with the monitor off"
    dashboard.check("measure curvature")   # the empty curvature figures show
    assert dashboard.curves(SHARPNESS_TITLE) is not None, "ticking measure curvature does not show its figures"
    for _ in range(2):
        dashboard.move_slider("subset size", "ArrowLeft")
    assert dashboard.readout("subset size") == CURVATURE_SAMPLES, dashboard.readout("subset size")
    dashboard.expect_data = True
    dashboard.start("Train")
    during = dashboard.wait_for_curves(SHARPNESS_TITLE, SHARPNESS_DRAWN, running=True)
    dashboard.screenshot("training-sharpness-drawn")
    assert during[0]["dots"] < epochs, "the sharpness was drawn only once training was over"
    dashboard.looks_right("training", settle_s=1)
    dashboard.wait_idle()
    dashboard.looks_right("trained")
    _assert_curvature_drawn(dashboard, epochs)


def test_dashboard_train_then_spectrum_then_landscape(dashboard_lab):
    dashboard = dashboard_lab.widget(2, "dashboard", TRAINING_CONTROLS + TABS)
    dashboard.looks_right("before-training")
    _train_measuring_the_curvature(dashboard, DASHBOARD_PARAMETERS["dashboard_epochs"])
    dashboard.controls, dashboard.expect_data = SPECTRUM_CONTROLS + TABS + ("All checkpoints",), False
    dashboard.tab("Spectrum")
    dashboard.expect_data = True
    dashboard.click("Run")
    dashboard.move_slider("checkpoint", "Home", starts_run=True)   # epoch 1 is not cached yet
    assert dashboard.readout("checkpoint") == "epoch 1"
    dashboard.move_slider("checkpoint", "ArrowRight")   # not End: see the spectrum widget's test
    assert dashboard.readout("checkpoint") == f"epoch {DASHBOARD_PARAMETERS['dashboard_epochs']}"
    dashboard.click("All checkpoints")
    dashboard.controls, dashboard.expect_data = LANDSCAPE_CONTROLS + TABS, False
    dashboard.tab("Landscape")
    last = f"checkpoint-{DASHBOARD_PARAMETERS['dashboard_epochs']:05d}.pt"
    assert dashboard.value_of("checkpoint").endswith(last), "the Landscape tab is not on the checkpoint shown"
    dashboard.expect_data = True
    dashboard.click("Run")
    dashboard.toggle("test")
    dashboard.toggle("accuracy")


# -- a Dashboard pointed at TinyTransformer on tinytext ---------------------------------------------------------------


def test_dashboard_trains_the_transformer_on_tinytext_then_its_spectra_and_landscape(transformer_lab):
    dashboard = transformer_lab.widget(0, "transformer", TRAINING_CONTROLS + TABS)
    dashboard.looks_right("before-training")
    for control, option in (("model", "TinyTransformer"), ("data", "tinytext"), ("optimiser", "AdamW")):
        dashboard.choose(control, option)
    assert dashboard.value_of("lr") == "0.001", "picking AdamW did not set its learning rate"
    title = dashboard.root.locator(".bqplot.figure .mainheading", has_text="top-1 accuracy per token")
    assert title.count() == 1, "the accuracy of token windows is not said to be per token"
    dashboard.expect_data = True
    dashboard.click("Train")
    dashboard.controls, dashboard.expect_data = SPECTRUM_CONTROLS + TABS + ("All checkpoints",), False
    dashboard.tab("Spectrum")
    assert dashboard.value_of("samples") == "64", "the spectrum's samples did not follow tinytext"
    dashboard.expect_data = True
    dashboard.click("Run")
    dashboard.toggle("GGN")
    dashboard.click("Run")
    dashboard.controls, dashboard.hidden = LANDSCAPE_CONTROLS + TABS, NORMALISATION_CONTROLS
    dashboard.expect_data = False
    dashboard.tab("Landscape")
    assert dashboard.value_of("points") == "11", "the landscape's points did not follow tinytext"
    dashboard.expect_data = True
    dashboard.click("Run")
    dashboard.toggle("accuracy")
    dashboard.toggle("test")
