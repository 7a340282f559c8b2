"""The Binder app, ``app/dashboard.ipynb``, served by Voila as a visitor gets it, and used in headless chromium.

Three tests, each with its own server in a scratch folder holding a copy of the app:

* Binder's route: ``jupyter server`` (what Binder runs) renders the README badge's
  ``urlpath``, ``voila/render/app/dashboard.ipynb``, through Voila's server
  extension: the page holds the dashboard as a widget and no error.
* The front end: standalone ``voila app/dashboard.ipynb`` serves the JupyterLab
  extensions that draw the widgets (ipywidgets' manager and bqplot), listed in
  the page's configuration and fetched from where the page loads them.
* The browser: chromium (1280 x 800) opens the standalone app and uses the
  dashboard as a visitor does, through :class:`browser_user.WidgetUser` on the
  dashboard's widget root: opened; **Train** (waited for until the training
  ends); the **Spectrum** tab; **Run**; the checkpoint slider moved with the
  keyboard (ArrowLeft: the spectrum of a checkpoint not computed yet);
  the **Landscape** tab; **Run**. After each step
  :func:`browser_user.assert_drawn_right` checks the DOM (every figure shown
  draws finite geometry, with tick labels on its axes once it draws data;
  the controls the step needs show, none cut; no error in the widget or the
  browser console) and a screenshot of the dashboard goes to
  ``test-artefacts/browser/voila-NN-<step>.png`` (``$CURVWIDGETS_ARTEFACTS/browser/``
  when that is set), beside ``voila.log`` and ``voila-timing.txt``; a failure
  leaves ``voila-99-failure.png`` and ``.html`` of the whole page. The only
  console errors let through are the failed requests for Font Awesome's style
  sheets on a CDN (:data:`CDN_STYLES`; this machine has no network), listed in
  ``voila-timing.txt``.

The tests need voila (a dependency of the package); the browser test also
Playwright and Debian's chromium (``$CURVWIDGETS_CHROMIUM``, default
``/usr/bin/chromium``). Without them they skip, saying how to enable them;
with ``CURVWIDGETS_REQUIRE_BROWSER=1`` (set by ``.ci/run``) they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from browser_user import (ConsoleLog, WidgetUser, chromium, free_port, playwright_entry, stop_process_group,
                          unavailable)

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "dashboard.ipynb"
ARTEFACTS = Path(os.environ.get("CURVWIDGETS_ARTEFACTS") or REPO / "test-artefacts") / "browser"
HOW_TO_ENABLE = ("install the package with its dependencies and the test tools (make test installs voila and "
                 "playwright into .venv) and Debian's chromium (as root: apt-get install chromium); "
                 "CURVWIDGETS_REQUIRE_BROWSER=1 turns this skip into a failure")
BINDER_URLPATH = "voila/render/app/dashboard.ipynb"
# the front-end extensions the dashboard needs, as Voila's page configuration names them
WIDGET_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "bqplot")
TABS = ["Train", "Spectrum", "Landscape"]
EPOCHS = 3               # the app's training
WIDGET_FAILURES = ("Error displaying widget", "Failed to load model class", "There was an error when executing")
SERVER_START_S = 60      # the server answering on its port
RENDER_S = 90            # the app's page, executed by its kernel, in the browser with its widgets
UI_S = 20                # a click's first reaction

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _unavailable(reason: str) -> None:
    unavailable("Voila app test", reason, HOW_TO_ENABLE)


@pytest.fixture(scope="module")
def voila():
    try:
        import voila
    except ImportError:
        _unavailable("the voila package is not installed")
    return voila


@pytest.fixture(scope="module")
def sync_playwright(voila):
    return playwright_entry("Voila app test", HOW_TO_ENABLE)


# -- the servers ---------------------------------------------------------------------------------------------------


def _get(url: str, timeout: float = 5) -> str:
    """The body of ``url``; raises for anything but 200 (redirects to a login page included)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        if response.status != 200 or response.url != url:
            raise urllib.error.HTTPError(url, response.status, f"answered from {response.url}", response.headers, None)
        return response.read().decode()


def _answers(url: str) -> bool:
    try:
        _get(url)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False
    return True


def _started(process: subprocess.Popen, url: str) -> bool:
    """Wait until ``url`` answers (True), or the process ends or :data:`SERVER_START_S` pass (False)."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(url):
            return True
        time.sleep(0.5)
    return False


@contextlib.contextmanager
def _serve(command: Callable[[int], List[str]], folder: Path, ready: str, log_name: str) -> Iterator[str]:
    """Run ``command(port)`` in ``folder`` on a free port until the block ends; yield its base URL.

    The server counts as started once ``base + ready`` answers 200; a port
    taken between the probe and the bind gets another try. Its output goes to
    ``ARTEFACTS / log_name``.
    """
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1", PYTHONWARNINGS="ignore::DeprecationWarning",
               JUPYTER_CONFIG_DIR=str(folder / ".jupyter-config"), JUPYTER_RUNTIME_DIR=str(folder / ".jupyter-runtime"),
               IPYTHONDIR=str(folder / ".ipython"), MPLBACKEND="agg")
    with open(ARTEFACTS / log_name, "w") as log:
        for _attempt in range(3):
            port = free_port()
            log.write(f"$ {' '.join(command(port))}\n")
            log.flush()
            process = subprocess.Popen(command(port), cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            try:
                if _started(process, base + ready):
                    yield base
                    return
            finally:
                stop_process_group(process)
    pytest.fail(f"the server did not start; see {ARTEFACTS / log_name}", pytrace=False)


def _scratch_copy(tmp_path_factory, name: str) -> Path:
    """A scratch folder holding ``app/dashboard.ipynb``, so that the repository's file is never written."""
    folder = tmp_path_factory.mktemp(name)
    (folder / "app").mkdir()
    shutil.copy2(APP, folder / "app" / APP.name)
    return folder


def _record_time(line: str) -> None:
    with open(ARTEFACTS / "voila-timing.txt", "a") as timing:
        timing.write(line + "\n")


def _voila_command(port: int) -> List[str]:
    return [sys.executable, "-m", "voila", "app/dashboard.ipynb", "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--Voila.port_retries=0"]


@pytest.fixture(scope="module")
def standalone(voila, tmp_path_factory) -> Iterator[str]:
    """``voila app/dashboard.ipynb`` on a free loopback port; yields its base URL."""
    folder = _scratch_copy(tmp_path_factory, "voila")
    ready = "/voila/labextensions/@jupyter-widgets/jupyterlab-manager/package.json"
    with _serve(_voila_command, folder, ready, "voila.log") as base:
        (ARTEFACTS / "voila-timing.txt").unlink(missing_ok=True)
        yield base


def _assert_renders_the_dashboard(page: str) -> None:
    """The HTML of a Voila page: the notebook ran without error and displayed one widget."""
    for failure in WIDGET_FAILURES:
        assert failure not in page, f"the app's page says {failure!r}"
    assert page.count("application/vnd.jupyter.widget-view+json") == 1, "the app's page shows no widget (or several)"


def _page_config(page: str) -> dict:
    match = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "the page holds no jupyter-config-data"
    return json.loads(match.group(1))


# -- without a browser -----------------------------------------------------------------------------------------


def test_jupyter_server_renders_the_binder_badge_urlpath(voila, tmp_path_factory):
    folder = _scratch_copy(tmp_path_factory, "jupyter-server")
    token = secrets.token_hex(16)

    def command(port: int) -> List[str]:
        return [sys.executable, "-m", "jupyter", "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
                "--ServerApp.allow_root=True"]

    with _serve(command, folder, f"/api/status?token={token}", "voila-jupyter-server.log") as base:
        page = _get(f"{base}/{BINDER_URLPATH}?token={token}", timeout=RENDER_S)
    _assert_renders_the_dashboard(page)


def test_voila_serves_the_widget_front_ends(standalone):
    began = time.monotonic()
    page = _get(standalone + "/", timeout=RENDER_S)
    seconds = time.monotonic() - began
    _assert_renders_the_dashboard(page)
    config = _page_config(page)
    extensions: Dict[str, dict] = {entry["name"]: entry for entry in config["federated_extensions"]}
    for name in WIDGET_EXTENSIONS:
        assert name in extensions, f"Voila does not load the {name} front end; it loads {sorted(extensions)}"
        script = f"{standalone}{config['fullLabextensionsUrl']}/{name}/{extensions[name]['load']}"
        bundle = _get(script)
        assert "_JUPYTERLAB" in bundle and f'"{name}"' in bundle, f"{script} is not {name}'s federated bundle"
    _record_time(f"first page (kernel start, app executed): {seconds:.1f} s")


# -- in the browser ------------------------------------------------------------------------------------------------

# What Voila's page loads from other hosts: Font Awesome's style sheets (the buttons' icons) from a CDN. A visitor's
# browser reaches it; this machine has no network. Only these requests may fail, and only for want of a network.
CDN_STYLES = re.compile(r"^https://cdn\.jsdelivr\.net/npm/@fortawesome/fontawesome-free@[^/]+/css/[\w.-]+\.css$")
NETWORK_FAILURE = re.compile(r"net::ERR_(NAME_NOT_RESOLVED|INTERNET_DISCONNECTED|NAME_RESOLUTION_FAILED|"
                             r"CONNECTION_REFUSED|ADDRESS_UNREACHABLE|CONNECTION_TIMED_OUT)")
# the labels of the dashboard's controls the user needs, per tab (as tests/test_browser.py lists them)
TRAINING_CONTROLS = ("model", "data", "optimiser", "lr", "epochs", "schedule", "SWA from", "SWA lr", "out_dir",
                     "save every", "seed", "resume from out_dir", "measure curvature", "every", "subset size",
                     "checkpoints")
SPECTRUM_CONTROLS = ("checkpoint", "All checkpoints", "Hessian", "GGN", "BatchNorm", "steps m", "vectors", "samples",
                     "seed", "parameters", "keep eigenvectors", "steps k", "linear", "log", "σ", "convergence of",
                     "save to", "Save")
LANDSCAPE_CONTROLS = ("checkpoint", "eigenvectors", "random", "normalised", "count", "seed", "dist", "points",
                      "BatchNorm", "plane of two directions", "stems of", "train", "test", "loss", "accuracy")
# the dashboard: the outermost widget holding the tab bar (Voila shows it in an output area, as JupyterLab does)
DASHBOARD_ROOT = ".jupyter-widgets:has(.lm-TabBar-tab)"


class VoilaConsole(ConsoleLog):
    """:class:`browser_user.ConsoleLog` of the Voila page, less the failed CDN requests of :data:`CDN_STYLES`.

    Attributes
    ----------
    offline : list of str
        The URLs of those requests, to report.
    """

    def __init__(self, page) -> None:
        self.offline: List[str] = []
        super().__init__(page)

    def _console(self, message) -> None:
        url = message.location.get("url", "")
        if message.type == "error" and CDN_STYLES.match(url) and NETWORK_FAILURE.search(message.text):
            self.offline.append(url)
        else:
            super()._console(message)


class VoilaApp:
    """The chromium page showing the app, in the role of :class:`browser_user.Lab` for a :class:`WidgetUser`.

    Attributes
    ----------
    page : playwright.sync_api.Page
    console : VoilaConsole
    shots : Path
        Where screenshots go.
    """

    def __init__(self, page, shots: Path) -> None:
        self.page, self.shots = page, shots
        self.console = VoilaConsole(page)

    def open(self, url: str) -> WidgetUser:
        """Open the app at ``url``, wait for the dashboard to render, and hand it out as :class:`WidgetUser` "voila"."""
        self.page.goto(url, timeout=RENDER_S * 1000)
        root = self.page.locator(DASHBOARD_ROOT).first
        root.wait_for(state="visible", timeout=RENDER_S * 1000)
        root.locator(".bqplot.figure").first.wait_for(state="visible", timeout=UI_S * 1000)
        body = self.page.inner_text("body")
        for failure in WIDGET_FAILURES:
            assert failure not in body, f"the app shows {failure!r}"
        titles = [tab.strip() for tab in root.locator(".lm-TabBar-tab").all_inner_texts()]
        assert titles == TABS, f"the dashboard's tabs: {titles}"
        return WidgetUser(self, root, "voila", TRAINING_CONTROLS + tuple(TABS))

    def save_failure(self, name: str) -> None:
        """The whole page as it is, as ``<shots>/<name>.png`` and ``.html``."""
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)
        (self.shots / f"{name}.html").write_text(self.page.content())


@pytest.fixture(scope="module")
def app(sync_playwright, standalone, tmp_path_factory) -> Iterator[VoilaApp]:
    """A chromium page at 1280 x 800 for the app, watched from the start."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for stale in [*ARTEFACTS.glob("voila-*.png"), *ARTEFACTS.glob("voila-*.html")]:   # of an earlier run
        stale.unlink()
    with chromium(sync_playwright, tmp_path_factory.mktemp("chromium-profile")) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(UI_S * 1000)
        yield VoilaApp(page, ARTEFACTS)


def test_the_app_trains_then_draws_spectra_and_a_landscape_in_the_browser(app, standalone):
    """Each step as a visitor takes it; after each, :meth:`WidgetUser.looks_right` checks the dashboard and shoots it."""
    began = time.monotonic()
    try:
        dashboard = app.open(standalone + "/")
        dashboard.looks_right("opened")

        dashboard.expect_data = True   # the training curves
        dashboard.click("Train")

        dashboard.controls, dashboard.expect_data = SPECTRUM_CONTROLS + tuple(TABS), False
        dashboard.tab("Spectrum")
        assert dashboard.readout("checkpoint") == f"epoch {EPOCHS}", "the Spectrum tab is not on the last checkpoint"
        dashboard.expect_data = True   # the Lanczos stems, the density, the convergence
        dashboard.click("Run")
        # a checkpoint not computed yet: moving the slider computes its spectrum (End is not used: noUiSlider's
        # End goes to the maximum the slider had when first drawn)
        dashboard.move_slider("checkpoint", "ArrowLeft", starts_run=True)
        assert dashboard.readout("checkpoint") == f"epoch {EPOCHS - 1}"

        dashboard.controls, dashboard.expect_data = LANDSCAPE_CONTROLS + tuple(TABS), False
        dashboard.tab("Landscape")
        shown = f"checkpoint-{EPOCHS - 1:05d}.pt"
        assert dashboard.value_of("checkpoint").endswith(shown), "the Landscape tab is not on the checkpoint shown"
        dashboard.expect_data = True   # the loss along the eigenvectors
        dashboard.click("Run")
    except BaseException:
        with contextlib.suppress(Exception):
            app.save_failure("voila-99-failure")
        raise
    finally:
        _record_time(f"browser part: {time.monotonic() - began:.1f} s; "
                     f"not loaded (no network here): {sorted(set(app.console.offline))}")
