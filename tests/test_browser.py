"""The widgets in a real browser: JupyterLab serves ``notebooks/10_dashboard.ipynb`` and headless chromium runs it.

The test starts JupyterLab on a free loopback port with a random token, in a
scratch folder holding a copy of the notebook (so that the repository's file is
never autosaved over), and drives Debian's ``chromium`` with Playwright: it
runs all cells from the Run menu, checks that every widget rendered as a widget
(not as an error or a plain-text repr), clicks Run on the spectrum widget, waits
for the Lanczos stems to appear as bqplot SVG marks, moves the step slider with
the keyboard and checks that the stems were redrawn. Screenshots go to
``test-artefacts/browser/`` (``$CURVWIDGETS_ARTEFACTS/browser/`` when that is
set), with the server's log beside them.

Playwright's own browser download does not work everywhere, so the test uses
the system chromium (``$CURVWIDGETS_CHROMIUM``, default ``/usr/bin/chromium``).
Without it the test skips, saying how to enable it; with
``CURVWIDGETS_REQUIRE_BROWSER=1`` (set by ``.ci/run``) it fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "10_dashboard.ipynb"
ARTEFACTS = Path(os.environ.get("CURVWIDGETS_ARTEFACTS") or REPO / "test-artefacts") / "browser"
CHROMIUM = os.environ.get("CURVWIDGETS_CHROMIUM", "/usr/bin/chromium")
REQUIRED = os.environ.get("CURVWIDGETS_REQUIRE_BROWSER", "") == "1"
HOW_TO_ENABLE = ("install Debian's chromium (as root: apt-get install chromium) and the test tools "
                 "(make test installs jupyterlab and playwright into .venv), then run make test; "
                 "CURVWIDGETS_REQUIRE_BROWSER=1 turns this skip into a failure")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the JupyterLab front-end extensions the widgets need, as `jupyter labextension list` names them
LAB_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "bqplot")
SERVER_START_S = 90      # JupyterLab answering on its port
PAGE_S = 60              # the notebook open with its kernel idle
CELLS_S = 90             # all cells executed
RUN_S = 90               # the spectrum computed after clicking Run
UI_S = 20                # a redraw after a click or a key press
STEPS = 8                # Lanczos steps typed into the widget before Run (fewer than the notebook's default)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _unavailable(reason: str) -> None:
    message = f"browser test not run: {reason}; to run it, {HOW_TO_ENABLE}"
    if REQUIRED:
        pytest.fail(message + " (CURVWIDGETS_REQUIRE_BROWSER=1 is set)", pytrace=False)
    pytest.skip(message)


def _require_jupyterlab() -> None:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _unavailable("the jupyterlab package is not installed")


@pytest.fixture(scope="module")
def sync_playwright():
    _require_jupyterlab()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no chromium at {CHROMIUM}")
    return sync_playwright


# -- the front-end extensions ------------------------------------------------------------------------------------


def test_lab_extensions_for_the_widgets_are_installed_and_enabled():
    _require_jupyterlab()
    listing = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True,
                             text=True, timeout=120, env=_quiet_env())
    text = re.sub(r"\x1b\[[0-9;]*m", "", listing.stdout + listing.stderr)   # drop the colours
    for name in LAB_EXTENSIONS:
        lines = [line for line in text.splitlines() if line.split()[:1] == [name]]
        assert lines, f"JupyterLab extension {name} is missing; `jupyter labextension list` said:\n{text}"
        assert "enabled" in lines[0] and "OK" in lines[0], f"{name} is not enabled and OK: {lines[0]!r}"


# -- the JupyterLab server -----------------------------------------------------------------------------------------


def _quiet_env(**extra: str) -> dict:
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    """End the server and the kernels it started (its own process group), politely first."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sync_playwright):
    """A JupyterLab server on a free port serving a copy of the notebook; yields (base URL, token)."""
    root = tmp_path_factory.mktemp("lab")
    served = root / "notebooks"
    served.mkdir()
    shutil.copy2(NOTEBOOK, served / NOTEBOOK.name)
    private = root / "jupyter"
    # fresh user settings: every cell in the DOM (no windowing), no news or update checks (no network)
    settings = private / "settings"
    _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                {"windowingMode": "none", "autoStartDefaultKernel": True})
    _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    env = _quiet_env(JUPYTER_CONFIG_DIR=str(private / "config"), JUPYTER_RUNTIME_DIR=str(private / "runtime"),
                     JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(private / "workspaces"),
                     IPYTHONDIR=str(private / "ipython"), MPLBACKEND="agg")
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    for stale in [*ARTEFACTS.glob("*.png"), *ARTEFACTS.glob("*.html")]:   # screenshots of an earlier run
        stale.unlink()
    token = secrets.token_hex(16)
    process = None
    log = open(ARTEFACTS / "jupyterlab.log", "w")
    try:
        for _attempt in range(3):   # a port taken between the probe and the bind: try another
            port = _free_port()
            command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                       "--ServerApp.port_retries=0", f"--ServerApp.token={token}", f"--ServerApp.root_dir={served}",
                       "--ServerApp.allow_root=True", "--LabApp.news_url=None",
                       "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(command, cwd=served, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + SERVER_START_S
            while time.monotonic() < deadline and process.poll() is None:
                if _answers(f"{base}/api/status?token={token}"):
                    break
                time.sleep(0.5)
            if process.poll() is None and _answers(f"{base}/api/status?token={token}"):
                break
            _stop(process)
            process = None
        if process is None:
            pytest.fail(f"JupyterLab did not start; see {ARTEFACTS / 'jupyterlab.log'}", pytrace=False)
        yield base, token
    finally:
        if process is not None:
            _stop(process)
        log.close()


# -- the browser -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(lab, sync_playwright, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, timeout=60_000)
        try:
            tab = context.pages[0] if context.pages else context.new_page()
            tab.set_default_timeout(UI_S * 1000)
            yield tab
        finally:
            context.close()


def _shot(page, name: str) -> Path:
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


# What the bqplot figures draw, read in the page: one entry per SVG element of a mark (bqplot draws Lines as
# path.line, Scatter as path.dot, Bars as rect.bar), legends left out. "stems" counts the elements of the
# Lines and Scatter marks that hold data (a stem plot draws one segment and one dot per Ritz value).
MARKS_JS = """() => {
    const drawn = Array.from(document.querySelectorAll(
        '.bqplot svg.svg-figure path.line, .bqplot svg.svg-figure .dot, .bqplot svg.svg-figure rect.bar'))
        .filter(node => !node.closest('.g_legend'));
    const shape = node => ['tagName', 'class', 'd', 'transform', 'x', 'y', 'width', 'height', 'visibility']
        .map(name => name === 'tagName' ? node.tagName : (node.getAttribute(name) || '')).join('|');
    const holdsData = node => !node.matches('path.line') || /L/.test(node.getAttribute('d') || '');
    return {shapes: drawn.map(shape),
            stems: drawn.filter(node => !node.matches('rect.bar') && holdsData(node)).length};
}"""


def _marks(page) -> dict:
    return page.evaluate(MARKS_JS)


def _settled_marks(page, timeout_s: float = UI_S, quiet_s: float = 1.0) -> dict:
    """The marks once they have stopped changing for ``quiet_s`` (redraws are throttled and batched)."""
    deadline = time.monotonic() + timeout_s
    marks, since = _marks(page), time.monotonic()
    while time.monotonic() < deadline:
        page.wait_for_timeout(200)
        now = _marks(page)
        if now != marks:
            marks, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return marks


def _button(page, label: str):
    return page.locator(".jupyter-widgets button.widget-button", has_text=re.compile(rf"^\s*{label}\s*$")).first


def _execution_state(page) -> dict:
    return page.evaluate("""() => {
        const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
            .map(node => node.textContent.trim());
        return {prompts, errors: Array.from(document.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]')).map(n => n.textContent)};
    }""")


KERNEL_IDLE_JS = """() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
    .some(node => /^(?!No Kernel).+\\| Idle$/.test(node.textContent.trim()))"""


def _accept_kernel_dialog(page) -> None:
    """Answer JupyterLab's "Select Kernel" dialog, if it asks, with the notebook's own kernel."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    if dialog.count():
        dialog.locator("button.jp-mod-accept").click()


def _open_notebook(page, base: str, token: str) -> None:
    """Open the notebook and wait until its kernel is idle; reload once if the kernel does not come up."""
    url = f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    for attempt in range(2):
        page.goto(url, timeout=PAGE_S * 1000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=PAGE_S * 1000)
        deadline = time.monotonic() + PAGE_S
        while time.monotonic() < deadline:
            _accept_kernel_dialog(page)
            if page.evaluate(KERNEL_IDLE_JS):
                return
            page.wait_for_timeout(250)
        _shot(page, f"00-kernel-not-idle-{attempt}")
    pytest.fail("the notebook's kernel never became idle", pytrace=False)


def _run_all_cells(page) -> None:
    """Run > Run All Cells, from JupyterLab's menu bar, as a user would."""
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')


def test_notebook_widgets_run_and_redraw_in_jupyterlab(lab, page):
    base, token = lab
    started = time.monotonic()
    try:
        _open_notebook(page, base, token)
        _shot(page, "01-opened")
        _run_all_cells(page)

        # every code cell executed ([n]: prompts, none pending), none raised
        deadline = time.monotonic() + CELLS_S
        while True:
            _accept_kernel_dialog(page)
            state = _execution_state(page)
            prompts = state["prompts"]
            if prompts and all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts):
                break
            if state["errors"] or time.monotonic() > deadline:
                break
            page.wait_for_timeout(500)
        assert not state["errors"], f"a cell raised:\n{state['errors'][0]}"
        assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"cells not all executed: {prompts}"

        # the widgets rendered as widgets: no error box, no plain-text repr left behind
        page.wait_for_selector(".jp-OutputArea-output .jupyter-widgets", timeout=UI_S * 1000)
        page.wait_for_selector(".bqplot svg", timeout=UI_S * 1000)
        body = page.inner_text(".jp-NotebookPanel")
        for failure in ("Error displaying widget", "Failed to load model class", "Loading widget..."):
            assert failure not in body, f"the widget front end failed: {failure!r} on the page"
        assert not page.query_selector(
            '.jp-OutputArea-output[data-mime-type="text/plain"]:has-text("Widget(")'), \
            "a widget shows as its plain-text repr: the ipywidgets front end is missing"
        run = _button(page, "Run")
        run.scroll_into_view_if_needed()
        _shot(page, "02-rendered")
        marks_before = _settled_marks(page)

        # type the number of steps, as a user would, then Run: the button becomes Cancel while the worker
        # computes, stems appear, then the button is Run again
        steps_box = page.locator(".widget-text", has=page.locator(".widget-label", has_text=re.compile(r"^steps m$")))
        steps_box.first.locator("input").fill(str(STEPS))
        steps_box.first.locator("input").press("Enter")
        run.click()
        page.wait_for_function("""() => Array.from(document.querySelectorAll('.jupyter-widgets button.widget-button'))
            .some(node => node.textContent.trim() === 'Cancel')""", timeout=UI_S * 1000)
        page.wait_for_function("""() => !Array.from(document.querySelectorAll('.jupyter-widgets button.widget-button'))
            .some(node => node.textContent.trim() === 'Cancel')""", timeout=RUN_S * 1000)  # other widgets have Runs
        marks_after_run = _settled_marks(page)
        _shot(page, "03-after-run")
        assert marks_after_run["stems"] > 0, "no stems drawn after the run"
        assert marks_after_run != marks_before

        # after the run the step slider stands at its last step, k = m, in the browser as in the kernel
        slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=re.compile("step"))).first
        readout, handle = slider.locator(".widget-readout"), slider.locator(".noUi-handle").first
        value_after_run = readout.inner_text().strip()
        assert float(handle.get_attribute("aria-valuemax")) == STEPS, "the slider's range is not the steps run"
        assert value_after_run == str(STEPS), (
            f"after the run the step slider shows k = {value_after_run} of {STEPS} while the plot shows all "
            f"{STEPS} steps: the slider's browser state diverged from the kernel's")

        # the step slider, from the keyboard: Home moves it to the first step, and fewer stems are drawn
        handle.focus()
        page.keyboard.press("Home")
        page.wait_for_function("([node, before]) => node.textContent.trim() !== before",
                               arg=[readout.element_handle(), value_after_run], timeout=UI_S * 1000)
        marks_after_slider = _settled_marks(page)
        _shot(page, "04-after-slider")
        assert int(readout.inner_text().strip()) < int(value_after_run)
        assert marks_after_slider["shapes"] != marks_after_run["shapes"], "moving the slider redrew nothing"
        assert 0 < marks_after_slider["stems"] < marks_after_run["stems"], \
            f"fewer steps should draw fewer stems: {marks_after_run['stems']} -> {marks_after_slider['stems']}"

        # the dashboard renders its three tabs, and a click on one shows that tab's widget
        tabs = page.locator(".jupyter-widgets .lm-TabBar-tab")
        titles = [tabs.nth(index).inner_text().strip() for index in range(tabs.count())]
        assert titles[-3:] == ["Train", "Spectrum", "Landscape"], f"dashboard tabs: {titles}"
        spectrum_tab = tabs.nth(tabs.count() - 2)
        spectrum_tab.scroll_into_view_if_needed()
        spectrum_tab.click()
        page.wait_for_function("node => node.classList.contains('lm-mod-current')",
                               arg=spectrum_tab.element_handle(), timeout=UI_S * 1000)
        page.get_by_text("All checkpoints").last.wait_for(state="visible", timeout=UI_S * 1000)
        page.wait_for_function("""() => {  // the figures of a tab shown late are laid out at their size
            const button = Array.from(document.querySelectorAll('.jupyter-widgets button'))
                .filter(node => node.textContent.includes('All checkpoints')).pop();
            let tab = button;
            while (tab && !tab.querySelector('svg.svg-figure')) tab = tab.parentElement;
            const figures = tab ? Array.from(tab.querySelectorAll('svg.svg-figure')) : [];
            return figures.length > 0 && figures.every(svg => svg.getBoundingClientRect().width > 200);
        }""", timeout=UI_S * 1000)
        page.wait_for_timeout(1500)  # bqplot's relayout transition
        _shot(page, "05-dashboard-spectrum-tab")
    except BaseException:
        with contextlib.suppress(Exception):
            _shot(page, "99-failure")
            (ARTEFACTS / "99-failure.html").write_text(page.content())
        raise
    finally:
        (ARTEFACTS / "timing.txt").write_text(f"browser part: {time.monotonic() - started:.1f} s\n")
