"""Use the widgets in JupyterLab as a person does, and check after every step that what they see is right.

The pieces, from the outside in:

* :class:`JupyterLabServer` runs JupyterLab on a free loopback port with a
  random token, in a scratch folder, with private settings (no news, no
  windowing: every cell is in the DOM).
* :func:`inject_parameters` and :func:`scratch_notebook` prepare what it
  serves: a notebook with smaller parameters put in the way papermill does,
  and one notebook holding only the widget cells of several notebooks (with
  the cells they need), so that their heavy static cells are never run.
* :class:`Lab` is a chromium page showing one notebook: it opens it, runs all
  cells from the Run menu, and hands out :class:`WidgetUser` objects for the
  widgets the cells displayed.
* :class:`WidgetUser` acts on one widget as a user does (click a button,
  move a slider with the keyboard, tick a box, pick from a menu, type, click
  a stem, switch tab, cancel). Every action waits for the widget to react and
  to finish what it computes, then calls :meth:`WidgetUser.looks_right`,
  which takes a screenshot and calls :func:`assert_drawn_right`.
* :func:`assert_drawn_right` reads the widget's DOM: finite geometry of the
  bqplot marks and axes, tick labels present and apart, legends off the data,
  plot areas not squashed, labels not cut, the controls that must show
  showing (and those that must not, hidden), no two controls with one label,
  no error in the widget's error area, no browser console error.

A new widget gets its browser test in a few lines::

    lab.open_notebook("my.ipynb")
    lab.run_all_cells(widgets=1)
    user = lab.widget(0, "mine", controls=("steps", "Run"))
    user.looks_right("rendered")
    user.click("Run")
    user.move_slider("steps", "Home")
"""

from __future__ import annotations

import ast
import collections
import contextlib
import copy
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

__all__ = ["JupyterLabServer", "ConsoleLog", "Lab", "WidgetUser", "assert_drawn_right", "inject_parameters",
           "scratch_notebook", "widget_cells", "quiet_env", "free_port", "answers", "stop_process_group",
           "playwright_entry", "unavailable", "chromium", "BUSY_LABELS", "CHROMIUM", "CHROMIUM_ARGS", "VIEWPORT"]

# Playwright's own browser download does not work everywhere: Debian's chromium, with the flags that keep it
# from reaching for the network, at the viewport the checks use
CHROMIUM = os.environ.get("CURVWIDGETS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 800}
REQUIRED = os.environ.get("CURVWIDGETS_REQUIRE_BROWSER", "") == "1"   # .ci/run: a missing tool fails, not skips

SERVER_START_S = 90      # JupyterLab answering on its port
PAGE_S = 90              # a notebook open with its kernel idle
REACTION_S = 3           # the widget's DOM changes after an action (soft: some actions change nothing)
QUIET_MS = 600           # the DOM unchanged this long counts as drawn
SETTLE_S = 15            # at most this long waiting for QUIET_MS
UI_S = 30                # a click target or a tab to appear
SCREENSHOT_MARGIN_PX = 160  # JupyterLab's bars above and below the notebook, when a tall widget is taken
# labels of a TaskRunner's button while it runs (the Dashboard's training says Stop)
BUSY_LABELS = ("Cancel", "Cancelling", "Stop", "Stopping")
# console errors that say nothing about the widgets: JupyterLab asking the server for optional things
HARMLESS_CONSOLE = (
    re.compile(r"Failed to load resource: the server responded with a status of 404 \(Not Found\)"),
)


# -- the server ----------------------------------------------------------------------------------------------------


def quiet_env(**extra: str) -> Dict[str, str]:
    """This process's environment for a Jupyter tool: platform dirs, no deprecation noise, plus ``extra``."""
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    env.update(extra)
    return env


def unavailable(what: str, reason: str, how_to_enable: str) -> None:
    """Skip the test ``what`` saying why and how to run it; fail instead under ``CURVWIDGETS_REQUIRE_BROWSER=1``."""
    message = f"{what} not run: {reason}; to run it, {how_to_enable}"
    if REQUIRED:
        pytest.fail(message + " (CURVWIDGETS_REQUIRE_BROWSER=1 is set)", pytrace=False)
    pytest.skip(message)


def playwright_entry(what: str, how_to_enable: str) -> Any:
    """Playwright's ``sync_playwright``, once it imports and :data:`CHROMIUM` is there (else :func:`unavailable`)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(what, "the playwright package is not installed", how_to_enable)
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(what, f"no chromium at {CHROMIUM}", how_to_enable)
    return sync_playwright


@contextlib.contextmanager
def chromium(sync_playwright: Any, profile: Path) -> Iterator[Any]:
    """Headless :data:`CHROMIUM` at :data:`VIEWPORT` with the profile folder ``profile``; yields its context."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT,
            timeout=60_000)
        try:
            yield context
        finally:
            context.close()


def free_port() -> int:
    """A loopback TCP port free at the time of asking (a server may still lose it: retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within 5 s."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def stop_process_group(process: subprocess.Popen) -> None:
    """End a server started with ``start_new_session=True`` and the kernels it started, politely first."""
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


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


class JupyterLabServer(contextlib.AbstractContextManager):
    """JupyterLab on a free loopback port with a random token, serving ``folder``; a context manager.

    Parameters
    ----------
    folder : Path
        The notebooks it serves (the server's root and working directory).
    private : Path
        Where its own configuration, runtime files, settings and workspaces
        go, so that the user's are never read or written.
    log : Path
        The server's output (and its kernels').
    env : mapping, optional
        Extra environment variables for the server and its kernels.

    Attributes
    ----------
    base : str
        ``http://127.0.0.1:<port>`` once started.
    token : str
    """

    def __init__(self, folder: Path, private: Path, log: Path, env: Optional[Mapping[str, str]] = None):
        self.folder, self.private, self.log_path = folder, private, log
        self.token = secrets.token_hex(16)
        self.base = ""
        self._extra_env = dict(env or {})
        self._process: Optional[subprocess.Popen] = None
        self._log = None

    def url(self, path: str) -> str:
        """The address of ``path`` (e.g. ``"lab/tree/x.ipynb"``) with the token."""
        return f"{self.base}/{path}?token={self.token}"

    def __enter__(self) -> "JupyterLabServer":
        settings = self.private / "settings"
        # every cell in the DOM (no windowing); no news or update checks (no network)
        _write_json(settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings",
                    {"windowingMode": "none", "autoStartDefaultKernel": True})
        _write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
                    {"fetchNews": "false", "checkForUpdates": False})
        env = quiet_env(JUPYTER_CONFIG_DIR=str(self.private / "config"),
                        JUPYTER_RUNTIME_DIR=str(self.private / "runtime"),
                        JUPYTERLAB_SETTINGS_DIR=str(settings),
                        JUPYTERLAB_WORKSPACES_DIR=str(self.private / "workspaces"),
                        IPYTHONDIR=str(self.private / "ipython"), MPLBACKEND="agg", **self._extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        for _attempt in range(3):   # a port taken between the probe and the bind: try another
            if self._start(env):
                return self
        self.__exit__(None, None, None)
        raise RuntimeError(f"JupyterLab did not start; see {self.log_path}")

    def _start(self, env: Dict[str, str]) -> bool:
        port = free_port()
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                   "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={self.folder}", "--ServerApp.allow_root=True", "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self._log.write(f"$ {' '.join(command)}\n")
        self._log.flush()
        self._process = subprocess.Popen(command, cwd=self.folder, env=env, stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and self._process.poll() is None:
            if answers(self.url("api/status")):
                return True
            time.sleep(0.5)
        self._stop()
        return False

    def _stop(self) -> None:
        """End the server and the kernels it started (its own process group), politely first."""
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process)

    def __exit__(self, *_exc) -> None:
        self._stop()
        if self._log is not None:
            self._log.close()
            self._log = None


# -- the notebooks it serves ---------------------------------------------------------------------------------------


def inject_parameters(notebook: nbformat.NotebookNode, values: Mapping[str, Any]) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with a cell assigning ``values`` right after its "parameters" cell, as papermill does.

    Raises
    ------
    ValueError
        No cell is tagged "parameters", or it does not assign a name of ``values``.
    """
    copied = copy.deepcopy(notebook)
    tagged = [index for index, cell in enumerate(copied.cells) if "parameters" in cell.metadata.get("tags", ())]
    if not tagged:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    known, _used = _names(copied.cells[tagged[0]].source)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"the parameters cell does not set {sorted(unknown)}: they would change nothing")
    source = "# Parameters injected for the browser test\n" + "".join(f"{name} = {value!r}\n"
                                                                       for name, value in values.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    copied.cells.insert(tagged[0] + 1, injected)
    return copied


def _names(source: str) -> Tuple[Set[str], Set[str]]:
    """The global names a cell binds and those it reads without binding them (IPython magics allowed)."""
    tree = ast.parse(TransformerManager().transform_cell(source))
    bound: Set[str] = set()
    read: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound, read - bound


def _widget_classes(cells: Sequence[nbformat.NotebookNode]) -> Set[str]:
    """The names the cells import from ``curvwidgets.widgets``."""
    names: Set[str] = set()
    for cell in cells:
        for node in ast.walk(ast.parse(TransformerManager().transform_cell(cell.source))):
            if isinstance(node, ast.ImportFrom) and node.module == "curvwidgets.widgets":
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def widget_cells(notebook: nbformat.NotebookNode) -> List[nbformat.NotebookNode]:
    """The code cells that make a widget of ``curvwidgets.widgets``, after every cell they need, in order.

    A cell is needed when it is the last one before a needed cell to bind a
    name that cell reads (found from the code, magics included).
    """
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    names = [_names(cell.source) for cell in cells]
    classes = _widget_classes(cells)
    wanted = {index for index, (bound, read) in enumerate(names) if read & classes and not bound & classes}
    todo = sorted(wanted)
    while todo:
        index = todo.pop()
        for name in names[index][1]:
            binders = [earlier for earlier in range(index) if name in names[earlier][0]]
            if binders and binders[-1] not in wanted:
                wanted.add(binders[-1])
                todo.append(binders[-1])
    return [cells[index] for index in sorted(wanted)]


def scratch_notebook(sources: Mapping[Path, Mapping[str, Any]]) -> nbformat.NotebookNode:
    """One notebook with the widget cells of every notebook in ``sources``, and the cells they need.

    Parameters
    ----------
    sources : mapping of Path to mapping
        Each notebook and the parameter values to put in after its
        "parameters" cell (:func:`inject_parameters`), e.g. smaller sizes.

    Returns
    -------
    NotebookNode
        A heading per source notebook, then its cells of :func:`widget_cells`
        (fresh ids, tags kept, no outputs), in the order of ``sources``.
    """
    scratch = nbformat.v4.new_notebook()
    for path, values in sources.items():
        notebook = inject_parameters(nbformat.read(path, as_version=4), values)
        scratch.metadata.setdefault("kernelspec", notebook.metadata["kernelspec"])
        scratch.cells.append(nbformat.v4.new_markdown_cell(f"## The widgets of `{path.name}`"))
        scratch.cells.extend(nbformat.v4.new_code_cell(cell.source, metadata=copy.deepcopy(cell.metadata))
                             for cell in widget_cells(notebook))
    return scratch


# -- the browser page ----------------------------------------------------------------------------------------------


class ConsoleLog:
    """The browser console's errors and the page's uncaught exceptions, as they come.

    Messages matching one of :data:`HARMLESS_CONSOLE` are dropped.
    """

    def __init__(self, page) -> None:
        self._messages: List[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self._messages.append(f"uncaught {error}"))

    def _console(self, message) -> None:
        if message.type == "error" and not any(pattern.search(message.text) for pattern in HARMLESS_CONSOLE):
            self._messages.append(message.text)

    def take(self) -> List[str]:
        """The errors logged since the last call."""
        taken, self._messages = self._messages, []
        return taken


KERNEL_IDLE_JS = """() => Array.from(document.querySelectorAll('.jp-StatusBar-TextItem'))
    .some(node => /^(?!No Kernel).+\\| Idle$/.test(node.textContent.trim()))"""

EXECUTION_JS = """() => ({
    prompts: Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(n => n.textContent.trim()),
    errors: Array.from(document.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]')).map(n => n.textContent),
})"""

WIDGET_OUTPUT = ".jp-OutputArea-output > .jupyter-widgets"
WIDGET_FAILURES = ("Error displaying widget", "Failed to load model class", "Loading widget...")


class Lab:
    """A chromium page on a :class:`JupyterLabServer`, showing one notebook.

    Parameters
    ----------
    page : playwright.sync_api.Page
        A fresh page; its console is watched from now on (:attr:`console`).
    server : JupyterLabServer
    shots : Path
        The folder for screenshots.
    """

    def __init__(self, page, server: JupyterLabServer, shots: Path):
        self.page, self.server, self.shots = page, server, shots
        self.console = ConsoleLog(page)
        self.notebook = ""

    def open_notebook(self, name: str) -> None:
        """Open notebook ``name`` in a workspace of its own and wait for its kernel to be idle (one reload allowed)."""
        self.notebook = name
        url = self.server.url(f"lab/workspaces/{Path(name).stem}/tree/{name}")
        for attempt in range(2):
            self.page.goto(url, timeout=PAGE_S * 1000)
            self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=PAGE_S * 1000)
            deadline = time.monotonic() + PAGE_S
            while time.monotonic() < deadline:
                self._accept_kernel_dialog()
                if self.page.evaluate(KERNEL_IDLE_JS):
                    return
                self.page.wait_for_timeout(250)
            self.screenshot(f"{Path(name).stem}-kernel-not-idle-{attempt}")
        raise AssertionError(f"the kernel of {name} never became idle")

    def _accept_kernel_dialog(self) -> None:
        """Answer JupyterLab's "Select Kernel" dialog, if it asks, with the notebook's own kernel."""
        dialog = self.page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():
            dialog.locator("button.jp-mod-accept").click()

    def run_all_cells(self, widgets: int, timeout_s: float) -> None:
        """Run > Run All Cells from the menu bar, wait until every cell ran, and check the widgets rendered.

        Parameters
        ----------
        widgets : int
            How many widget outputs the notebook shows once run.
        timeout_s : float
            For all the cells.

        Raises
        ------
        AssertionError
            A cell raised, cells were left unexecuted, a widget failed to
            render or showed as its plain-text repr, or fewer widgets showed.
        """
        self.page.click('.lm-MenuBar-itemLabel:text-is("Run")')
        self.page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')
        deadline = time.monotonic() + timeout_s
        while True:
            self._accept_kernel_dialog()
            state = self.page.evaluate(EXECUTION_JS)
            done = state["prompts"] and all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in state["prompts"])
            if done or state["errors"] or time.monotonic() > deadline:
                break
            self.page.wait_for_timeout(500)
        stem = Path(self.notebook).stem
        self.screenshot(f"{stem}-00-ran")
        assert not state["errors"], f"a cell of {self.notebook} raised:\n{state['errors'][0]}"
        assert done, f"cells of {self.notebook} not all executed after {timeout_s} s: {state['prompts']}"
        outputs = self.page.locator(WIDGET_OUTPUT)
        outputs.nth(widgets - 1).wait_for(state="attached", timeout=UI_S * 1000)
        body = self.page.inner_text(".jp-NotebookPanel")
        for failure in WIDGET_FAILURES:
            assert failure not in body, f"the widget front end failed: {failure!r} on the page"
        assert not self.page.query_selector(
            '.jp-OutputArea-output[data-mime-type="text/plain"]:has-text("Widget(")'), \
            "a widget shows as its plain-text repr: the ipywidgets front end is missing"
        assert outputs.count() == widgets, f"{self.notebook} shows {outputs.count()} widgets, not {widgets}"

    def widget(self, index: int, name: str, controls: Sequence[str] = ()) -> "WidgetUser":
        """The ``index``-th widget output of the notebook (0: the first), used as :class:`WidgetUser` ``name``."""
        return WidgetUser(self, self.page.locator(WIDGET_OUTPUT).nth(index), name, controls)

    def screenshot(self, name: str) -> Path:
        """The viewport as it is now, as ``<shots>/<name>.png``."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def save_failure(self, name: str) -> None:
        """Screenshot and HTML of the page as it is, for a failed test: ``<shots>/<name>.png`` and ``.html``."""
        self.screenshot(name)
        (self.shots / f"{name}.html").write_text(self.page.content())


# -- one widget, used as a person does -----------------------------------------------------------------------------


WATCH_JS = """root => {  // count the root's DOM changes and note when the last one was
    if (!root.__cwWatch) {
        root.__cwWatch = {count: 0, last: performance.now()};
        new MutationObserver(() => { root.__cwWatch.count += 1; root.__cwWatch.last = performance.now(); })
            .observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
    }
    return root.__cwWatch.count;
}"""

SHOWN_JS = """el => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
    && (el.getBoundingClientRect().width > 0 || el.getBoundingClientRect().height > 0)"""

BUSY_JS = f"""([root, busy]) => Array.from(root.querySelectorAll('button.widget-button'))
    .some(button => ({SHOWN_JS})(button) && busy.includes(button.textContent.trim()))"""

# the line marks (g.curve) of the figure shown titled `title`, in mark order: their stroke colour, whether dashed,
# the vertices of the line and its markers; null when no figure shown has that title
CURVES_JS = f"""([root, title]) => {{
    const figure = Array.from(root.querySelectorAll('.bqplot.figure')).filter({SHOWN_JS})
        .find(node => (node.querySelector('.mainheading')?.textContent || '').trim() === title);
    return figure ? Array.from(figure.querySelectorAll('svg.svg-figure g.curve')).map(curve => {{
        const line = curve.querySelector('path.line'), d = (line && line.getAttribute('d')) || '';
        const style = line ? getComputedStyle(line) : {{stroke: '', strokeDasharray: 'none'}};
        return {{colour: style.stroke, dashed: style.strokeDasharray !== 'none',
                 vertices: (d.match(/[ML]/g) || []).length, dots: curve.querySelectorAll('path.dot').length,
                 finite: !/NaN|null|undefined|Infinity/.test(d)}};
    }}) : null;
}}"""

PROGRESS_JS = f"""([root, busy]) => {{  // the step of the running task's status label, e.g. 12 of "lanczos 12/30 ..."
    const button = Array.from(root.querySelectorAll('button.widget-button'))
        .find(node => ({SHOWN_JS})(node) && busy.includes(node.textContent.trim()));
    const status = button && button.parentElement.querySelector('div.widget-label');
    const match = status && /(\\d+)\\/(\\d+)/.exec(status.textContent);
    return match ? Number(match[1]) : -1;
}}"""


class WidgetUser:
    """One widget output, used as a person does: each action waits, then checks and screenshots.

    After every action the widget is given time to react (its DOM changes),
    every run it started is waited for (its Run button comes back), the
    drawing is let to settle, and :meth:`looks_right` runs.

    Parameters
    ----------
    lab : Lab
    root : playwright.sync_api.Locator
        The widget's DOM root.
    name : str
        Prefix of its screenshots.
    controls : sequence of str
        Labels of the controls that must show (``must_show`` of
        :func:`assert_drawn_right`); change :attr:`controls` as the widget changes.

    Attributes
    ----------
    controls : tuple of str
    hidden : tuple of str
        Labels that must not show.
    expect_data : bool
        Every figure shown must draw data (set it once the widget has a result).
    """

    def __init__(self, lab: Lab, root, name: str, controls: Sequence[str] = ()):
        self.lab, self.root, self.name = lab, root, name
        self.controls: Tuple[str, ...] = tuple(controls)
        self.hidden: Tuple[str, ...] = ()
        self.expect_data = False
        self._shots = 0

    # -- waiting -------------------------------------------------------------------------------------------------

    def _watch(self) -> int:
        """Start counting the root's DOM changes (once); the count so far."""
        return self.root.evaluate(WATCH_JS)

    def _handle(self):
        """The root's element, to pass to a script run in the page."""
        return self.root.element_handle(timeout=UI_S * 1000)

    def _wait(self, expression: str, arg: Any, timeout_s: float) -> bool:
        """Wait until ``expression(arg)`` is true in the page; False when ``timeout_s`` ran out."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout  # only here: the module imports without it
        try:
            self.lab.page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000, polling=100)
        except PlaywrightTimeout:
            return False
        return True

    def _react(self, before: int) -> None:
        """Give the widget up to :data:`REACTION_S` to change after an action (some actions change nothing)."""
        self._wait("([root, before]) => root.__cwWatch.count > before", [self._handle(), before], REACTION_S)

    def wait_idle(self, timeout_s: float = 300) -> None:
        """Wait until no run of this widget is going (its Run button is back)."""
        idle = self._wait(f"args => !({BUSY_JS})(args)", [self._handle(), list(BUSY_LABELS)], timeout_s)
        assert idle, f"{self.name}: still running after {timeout_s} s"

    def wait_progress(self, step: int, timeout_s: float = 300) -> None:
        """Wait until the running task reports step ``step`` or beyond (its status label's ``step/total``).

        Raises
        ------
        AssertionError
            The run ended (or never reported) before: the check meant for a
            running task cannot be made (give the task more to compute).
        """
        reached = self._wait(f"args => ({PROGRESS_JS})(args) >= {step}", [self._handle(), list(BUSY_LABELS)],
                             timeout_s)
        assert reached, f"{self.name}: the run did not report step {step} while running (it ended, or is too slow)"

    def curves(self, title: str) -> Optional[List[Dict[str, Any]]]:
        """The line marks of the figure titled ``title`` as drawn now (None when no figure shown has that title).

        Each is a dict: ``colour`` (the stroke, ``"rgb(r, g, b)"``), ``dashed``,
        ``vertices`` (points of its line), ``dots`` (markers drawn), ``finite``
        (no ``NaN``, ``null`` ... in its path).
        """
        return self.root.evaluate(f"(root, title) => ({CURVES_JS})([root, title])", title)

    def wait_for_curves(self, title: str, condition: str, running: bool = False,
                        timeout_s: float = 120) -> List[Dict[str, Any]]:
        """Wait until the :meth:`curves` of the figure titled ``title`` satisfy ``condition``, and return them.

        ``condition`` is a JavaScript function of the list of curves (``curves
        => ...``), read in the same instant as the curves returned. With
        ``running``, a run must also still be going then (its busy label
        shows): the figure is drawn while the widget computes.

        Raises
        ------
        AssertionError
            Not within ``timeout_s`` (or the run ended first); says what was drawn last.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        script = f"""([root, title, busy, running]) => {{
            const curves = ({CURVES_JS})([root, title]);
            return curves && ({condition})(curves) && (!running || ({BUSY_JS})([root, busy])) ? curves : null;
        }}"""
        try:
            found = self.lab.page.wait_for_function(script, arg=[self._handle(), title, list(BUSY_LABELS), running],
                                                    timeout=timeout_s * 1000, polling=100)
        except PlaywrightTimeout:
            raise AssertionError(f"{self.name}: the figure {title!r} did not draw curves with {condition}"
                                 f"{' while running' if running else ''} in {timeout_s} s (see "
                                 f"{self.screenshot('curves-missing')}); drawn: {self.curves(title)}") from None
        return found.json_value()

    def settle(self, timeout_s: float = SETTLE_S) -> None:
        """Wait until the widget's DOM has not changed for :data:`QUIET_MS` (at most ``timeout_s``)."""
        self._watch()
        self._wait("([root, quiet]) => performance.now() - root.__cwWatch.last >= quiet",
                   [self._handle(), QUIET_MS], timeout_s)

    def _after(self, before: int, step: str) -> None:
        """The end of every action: its reaction, the end of the runs it started, then :meth:`looks_right`."""
        self._react(before)
        self.wait_idle()
        self.looks_right(step)

    # -- checking ------------------------------------------------------------------------------------------------

    def screenshot(self, step: str) -> Path:
        """The widget as it is now, as ``<shots>/<name>-<nn>-<step>.png`` (numbered in the order taken).

        A widget taller than the viewport is taken with the viewport made
        taller for the moment (its width, hence the layout, is kept): the
        notebook scrolls inside the page, so what lies below the viewport
        is not drawn otherwise.
        """
        self._shots += 1
        slug = re.sub(r"[^\w.]+", "-", step).strip("-")
        path = self.lab.shots / f"{self.name}-{self._shots:02d}-{slug}.png"
        page, size = self.lab.page, self.lab.page.viewport_size
        height = int(self.root.bounding_box()["height"]) + SCREENSHOT_MARGIN_PX
        if height > size["height"]:
            page.set_viewport_size({"width": size["width"], "height": height})
        try:
            self.root.scroll_into_view_if_needed()
            self.root.screenshot(path=str(path), animations="disabled")
        finally:
            page.set_viewport_size(size)
        return path

    def looks_right(self, step: str, settle_s: float = SETTLE_S) -> None:
        """Move the mouse away, let the drawing settle, :func:`assert_drawn_right` and take a screenshot.

        The check uses this user's :attr:`controls`, :attr:`hidden` and
        :attr:`expect_data`; its message names the screenshot.
        """
        self.lab.page.mouse.move(0, 0)   # no hover tooltip or figure toolbar in the way
        self.settle(settle_s)
        try:
            assert_drawn_right(self.root, must_show=self.controls, must_hide=self.hidden,
                               expect_data=self.expect_data, console=self.lab.console)
        except AssertionError as error:
            raise AssertionError(f"{self.name}, {step} (see {self.screenshot(step)}): {error}") from None
        self.screenshot(step)

    # -- actions -------------------------------------------------------------------------------------------------

    def _button(self, label: str):
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        return self.root.locator("button.widget-button:visible", has_text=exact).first

    def click(self, label: str) -> None:
        """Click the button labelled ``label`` and wait for whatever it started to end."""
        before = self._watch()
        self._button(label).click()
        self._after(before, f"click {label}")

    def start(self, label: str = "Run") -> None:
        """Click the button labelled ``label`` (a Run button) and return once the run has begun."""
        before = self._watch()
        self._button(label).click()
        self._react(before)

    def cancel(self) -> None:
        """Click the running task's Cancel (or Stop) button and wait until the run has stopped."""
        busy = "|".join(re.escape(label) for label in BUSY_LABELS[::2])
        before = self._watch()
        self.root.locator("button.widget-button:visible", has_text=re.compile(rf"^\s*({busy})\s*$")).first.click()
        self._after(before, "cancel")

    def _control(self, kind: str, label: str):
        """The visible widget of CSS class ``kind`` whose description reads ``label``."""
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        description = self.lab.page.locator("label.widget-label", has_text=exact)  # `has` is relative to `kind`
        return self.root.locator(f"{kind}:visible", has=description).first

    def move_slider(self, label: str, key: str, starts_run: bool = False) -> None:
        """Focus the handle of the slider labelled ``label`` and press ``key`` (``"Home"``, ``"ArrowLeft"``...).

        With ``starts_run``, the move must start a run (e.g. a checkpoint whose
        spectrum is not cached yet): it is waited for until it has begun (its
        busy label shows, after a round trip to the kernel; the slider's own
        change does not say so) and then until it ends.

        Raises
        ------
        AssertionError
            The slider did not move (it was not at the end the key moves it to),
            or, with ``starts_run``, no run began within :data:`UI_S`.
        """
        handle = self._control(".widget-slider", label).locator(".noUi-handle").first
        position = handle.get_attribute("aria-valuenow")
        end = handle.get_attribute({"Home": "aria-valuemin", "End": "aria-valuemax"}.get(key, "aria-valuenow"))
        before = self._watch()
        handle.focus()
        self.lab.page.keyboard.press(key)
        moved = self._wait("([node, was]) => node.getAttribute('aria-valuenow') !== was",
                           [handle.element_handle(), position], REACTION_S)
        assert moved or position == end, (f"{self.name}: pressing {key} on the slider {label!r} did not move it from "
                                          f"{position} (range {handle.get_attribute('aria-valuemin')} to "
                                          f"{handle.get_attribute('aria-valuemax')})")
        if starts_run:
            started = self._wait(BUSY_JS, [self._handle(), list(BUSY_LABELS)], UI_S)
            assert started, f"{self.name}: moving the slider {label!r} with {key} started no run in {UI_S} s"
        self._after(before, f"slider {label} {key}")

    def toggle(self, label: str) -> None:
        """Click the toggle button labelled ``label`` (one option of a ToggleButtons); it must become the one chosen."""
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        button = self.root.locator("button.widget-toggle-button:visible", has_text=exact).first
        before = self._watch()
        button.click()
        chosen = self._wait("node => node.classList.contains('mod-active')", button.element_handle(), UI_S)
        assert chosen, f"{self.name}: clicking the toggle button {label!r} did not choose it"
        self._after(before, f"toggle {label}")

    def value_of(self, label: str) -> str:
        """The text in the box labelled ``label``."""
        return self._control(".widget-text", label).locator("input").input_value()

    def readout(self, label: str) -> str:
        """The value the slider labelled ``label`` shows beside it."""
        return self._control(".widget-slider", label).locator(".widget-readout").inner_text().strip()

    def check(self, label: str) -> None:
        """Tick or untick the checkbox labelled ``label``."""
        before = self._watch()
        exact = re.compile(rf"^\s*{re.escape(label)}\s*$")
        box = self.root.locator(".widget-checkbox:visible .widget-label-basic", has_text=exact).first
        box.locator("input[type=checkbox]").click()
        self._after(before, f"check {label}")

    def choose(self, label: str, option: str) -> None:
        """Pick ``option`` (its text) in the dropdown labelled ``label``."""
        before = self._watch()
        self._control(".widget-dropdown", label).locator("select").select_option(label=option)
        self._after(before, f"{label} {option}")

    def type_into(self, label: str, text: str) -> None:
        """Replace the text of the box labelled ``label`` with ``text`` and press Enter."""
        field = self._control(".widget-text", label).locator("input")
        before = self._watch()
        field.fill(text)
        field.press("Enter")
        self._after(before, f"type {label} {text}")

    def click_stem(self, index: int, ctrl: bool = False, figure: int = 0) -> None:
        """Click the ``index``-th dot (data order) of the ``figure``-th figure shown; a ctrl-click if ``ctrl``."""
        dots = self.root.locator(".bqplot.figure:visible").nth(figure).locator("g.object_grp > path.dot")
        before = self._watch()
        dots.nth(index).click(modifiers=["Control"] if ctrl else None, force=True)
        self._after(before, f"{'ctrl-' if ctrl else ''}click stem {index}")

    def tab(self, title: str) -> None:
        """Switch to the tab titled ``title``."""
        tab = self.root.locator(".lm-TabBar-tab", has_text=re.compile(rf"^\s*{re.escape(title)}\s*$")).first
        before = self._watch()
        tab.click()
        self._wait("tab => tab.classList.contains('lm-mod-current')", tab.element_handle(), UI_S)
        self._after(before, f"tab {title}")


# -- what the user must see ----------------------------------------------------------------------------------------


# The checks of assert_drawn_right, run in the page: each `(root, opts) => [problem, ...]` on the widget's DOM.
CHECK_HELPERS_JS = """
const BAD = /NaN|null|undefined|Infinity/;
const GEOMETRY = ['d', 'transform', 'x', 'y', 'width', 'height', 'x1', 'x2', 'y1', 'y2', 'cx', 'cy', 'r'];
const shown = SHOWN_JS;
const textOf = el => (el ? el.textContent : '').replace(/\\s+/g, ' ').trim();
const px = r => `${Math.round(r.width)} x ${Math.round(r.height)} px`;
const apart = (a, b, gap) => a.right + gap <= b.left || b.right + gap <= a.left
    || a.bottom + gap <= b.top || b.bottom + gap <= a.top;
// how far two boxes run into each other (the smaller of the two directions), in whole pixels
const overlap = (a, b) => Math.round(Math.min(Math.min(a.right, b.right) - Math.max(a.left, b.left),
                                              Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top)));
const inside = (r, box, slack) => r.left >= box.left - slack && r.right <= box.right + slack
    && r.top >= box.top - slack && r.bottom <= box.bottom + slack;
const tag = el => `<${el.tagName.toLowerCase()} class="${el.getAttribute('class') || ''}">`;
// what the output area shows of the widget: the box of its first ancestor that clips overflow
const outputView = root => {
    let clip = root.parentElement;
    while (clip && getComputedStyle(clip).overflowX === 'visible') clip = clip.parentElement;
    return clip ? clip.getBoundingClientRect() : {left: 0, right: innerWidth};
};
// a control by its text, or else by its widget's description
const nameOf = el => textOf(el) || textOf(el.closest('.widget-inline-hbox')?.querySelector('label.widget-label'))
    || el.tagName.toLowerCase();

const drawsData = el => {
    if (BAD.test(GEOMETRY.map(name => el.getAttribute(name) || '').join(' ')) || !shown(el)) return false;
    if (el.matches('path.line')) return /L/.test(el.getAttribute('d') || '');
    if (el.matches('path.dot')) return (el.getAttribute('d') || '') !== '';
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
};
// points of the data in page coordinates: dot centres, bar tops, cell centres, points along lines
const dataPoints = marks => marks.flatMap(el => {
    if (el.matches('path.line')) {
        const matrix = el.getScreenCTM(), length = el.getTotalLength(), points = [];
        for (let at = 0; at <= length; at += opts.lineSampling) {
            const p = el.getPointAtLength(at).matrixTransform(matrix);
            points.push([p.x, p.y]);
        }
        return points;
    }
    const r = el.getBoundingClientRect();
    return [[r.left + r.width / 2, el.matches('rect.bar') ? r.top + 1 : r.top + r.height / 2]];
});
""".replace("SHOWN_JS", SHOWN_JS)

# every figure shown: size, finite geometry, data, ticks, texts inside it, legend off the data
FIGURES_JS = """(root, opts) => {
    const problems = [];
    Array.from(root.querySelectorAll('.bqplot.figure')).filter(shown).forEach((figure, index) => {
        const title = textOf(figure.querySelector('.mainheading'));
        const axisLabels = Array.from(figure.querySelectorAll('.axislabel')).map(textOf).filter(Boolean);
        const name = `figure ${index + 1} "${title || axisLabels.join(' / ')}"`;
        const box = figure.getBoundingClientRect();
        if (box.width < opts.minSize || box.height < opts.minSize) problems.push(`${name} is squashed to ${px(box)}`);
        const area = figure.querySelector('.plotarea_background');
        if (area && shown(area)) {
            const plot = area.getBoundingClientRect();
            if (plot.width < opts.minSize || plot.height < opts.minSize)
                problems.push(`${name}: its plot area is squashed to ${px(plot)}`);
        }
        const broken = Array.from(figure.querySelectorAll('svg *'))
            .filter(el => GEOMETRY.some(attr => BAD.test(el.getAttribute(attr) || '')));
        if (broken.length) {
            const first = broken[0], attr = GEOMETRY.find(a => BAD.test(first.getAttribute(a) || ''));
            problems.push(`${name}: ${broken.length} SVG elements with non-finite geometry, e.g. ${tag(first)} `
                + `${attr}="${first.getAttribute(attr).slice(0, 80)}"`);
        }
        const marks = Array.from(figure.querySelectorAll(['path.line', 'path.dot', 'rect.bar', 'rect.heatmapcell']
            .map(kind => `svg.svg-figure ${kind}`).join(', ')))
            .filter(el => !el.closest('.g_legend') && drawsData(el));
        if (opts.expectData && !marks.length) problems.push(`${name} draws no data`);
        // a colour bar draws its label (g.label_g) and gradient (g.g-rect) as g.axis groups of their own
        const axes = Array.from(figure.querySelectorAll('g.axis:not(.label_g):not(.g-rect)'))
            .filter(a => !a.closest('.g_legend') && shown(a));
        for (const axis of axes) {
            const title = axis.querySelector('.axislabel'), label = `axis "${textOf(title)}"`;
            const ticks = Array.from(axis.querySelectorAll('.tick text')).filter(t => shown(t) && textOf(t));
            if (marks.length && !ticks.length) problems.push(`${name}: ${label} has no tick labels`);
            const boxes = ticks.map(t => t.getBoundingClientRect());
            for (let i = 0; i < ticks.length; i++)
                for (let j = i + 1; j < ticks.length; j++)
                    if (!apart(boxes[i], boxes[j], opts.tickGap))
                        problems.push(`${name}: tick labels "${textOf(ticks[i])}" and "${textOf(ticks[j])}" `
                            + `of ${label} run into each other`);
            if (title && shown(title) && textOf(title))
                ticks.filter((tick, i) => !apart(boxes[i], title.getBoundingClientRect(), -opts.overlapSlack))
                    .forEach(tick => problems.push(`${name}: the ${label} label runs into its tick "${textOf(tick)}" `
                        + `(by ${overlap(tick.getBoundingClientRect(), title.getBoundingClientRect())} px)`));
        }
        for (const text of figure.querySelectorAll('.mainheading, .axislabel, .tick text, .legendtext'))
            if (shown(text) && textOf(text) && !inside(text.getBoundingClientRect(), box, 1))
                problems.push(`${name}: "${textOf(text)}" is cut off by the figure's edge`);
        const legend = figure.querySelector('.g_legend');
        if (legend && shown(legend) && legend.childElementCount) {
            const cover = legend.getBoundingClientRect();
            const under = dataPoints(marks).filter(([x, y]) => x > cover.left + 1 && x < cover.right - 1
                && y > cover.top + 1 && y < cover.bottom - 1).length;
            if (under > opts.legendPoints) problems.push(`${name}: the legend covers ${under} points of the data`);
        }
    });
    return problems;
}"""

# the controls: labels not cut, inside what the output shows, those needed showing, no label twice
CONTROLS_JS = """(root, opts) => {
    const problems = [];
    // labels of text boxes, sliders and menus; checkboxes; buttons; tab titles
    const described = Array.from(root.querySelectorAll('label.widget-label')).filter(shown);
    const checkboxes = Array.from(root.querySelectorAll('.widget-checkbox .widget-label-basic')).filter(shown);
    const buttons = Array.from(root.querySelectorAll('button.widget-button, button.widget-toggle-button'))
        .filter(shown);
    const tabs = Array.from(root.querySelectorAll('.lm-TabBar-tabLabel')).filter(shown);
    const status = Array.from(root.querySelectorAll('div.widget-label')).filter(shown);
    const controls = [...described, ...checkboxes, ...buttons, ...tabs];
    for (const el of [...controls, ...status]) {
        const cut = [el, ...el.querySelectorAll('span')].find(node => node.clientWidth > 0
            && node.scrollWidth > node.clientWidth + 1);
        if (cut) problems.push(`the label "${textOf(el)}" is cut to ${cut.clientWidth} of its ${cut.scrollWidth} px`);
    }
    const view = outputView(root);
    const fields = Array.from(root.querySelectorAll('input, select, textarea')).filter(shown);
    const drawn = root.querySelectorAll('.bqplot.figure .plotarea_background, .bqplot.figure svg text');
    const placed = [...controls, ...fields, ...drawn].filter(el => shown(el) && (textOf(el) || !el.matches('text')));
    for (const el of placed) {
        const r = el.getBoundingClientRect();
        if (r.left < view.left - 1 || r.right > view.right + 1)
            problems.push(`${el.matches('rect') ? 'a plot area' : `"${nameOf(el)}"`} runs past the output's edge `
                + `(${Math.round(r.left)}-${Math.round(r.right)} px shown in ${Math.round(view.left)}-`
                + `${Math.round(view.right)} px)`);
    }
    const labels = controls.map(textOf);
    for (const label of opts.mustShow)
        if (!labels.includes(label)) problems.push(`the control "${label}" does not show`);
    for (const label of opts.mustHide)
        if (labels.includes(label)) problems.push(`the control "${label}" shows but does not apply`);
    const names = [...described, ...checkboxes].map(textOf).filter(Boolean);
    for (const label of new Set(names.filter((label, i) => names.indexOf(label) !== i)))
        problems.push(`${names.filter(n => n === label).length} controls are labelled "${label}"`);
    return problems;
}"""

# HTML text (legends, status, summaries): inside what the output shows, not squeezed, not over other text
TEXTS_JS = """(root, opts) => {
    const problems = [];
    const view = outputView(root);
    // every line of HTML text shown, and how many lines each text takes
    const lines = [], wrapped = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode, owner = node.parentElement;
        if (!node.textContent.trim() || owner.closest('svg, select, label, button') || !shown(owner)) continue;
        const range = document.createRange();
        range.selectNodeContents(node);
        const rects = Array.from(range.getClientRects()).filter(r => r.width > 0 && r.height > 0);
        rects.forEach(r => lines.push([node, r]));
        wrapped.push([node, new Set(rects.map(r => Math.round(r.top))).size]);
    }
    for (const [node, r] of lines)
        if (r.left < view.left - 1 || r.right > view.right + 1)
            problems.push(`the text "${textOf(node)}" runs past the output's edge`);
    for (const [node, count] of wrapped)
        if (count >= opts.squeezedLines && node.parentElement.getBoundingClientRect().width < opts.minSize)
            problems.push(`the text "${textOf(node)}" is squeezed into ${count} lines `
                + `${Math.round(node.parentElement.getBoundingClientRect().width)} px wide`);
    for (let i = 0; i < lines.length; i++)
        for (let j = i + 1; j < lines.length; j++)
            if (lines[i][0] !== lines[j][0] && !apart(lines[i][1], lines[j][1], -opts.overlapSlack))
                problems.push(`the texts "${textOf(lines[i][0])}" and "${textOf(lines[j][0])}" overlap`);
    return problems;
}"""

# a TaskRunner's error area open on an error
ERRORS_JS = """root => {
    const problems = [];
    for (const header of root.querySelectorAll('.jupyter-widget-Collapse-header'))
        if (shown(header) && textOf(header) === 'Traceback') {
            const box = header.closest('.widget-vbox');
            problems.push(`the widget shows an error: ${textOf(box && box.querySelector('.widget-html-content'))}`);
        }
    return problems;
}"""

CHECK_JS = f"""(root, opts) => {{
    {CHECK_HELPERS_JS}
    const checks = [{FIGURES_JS}, {CONTROLS_JS}, {TEXTS_JS}, {ERRORS_JS}];
    return [...new Set(checks.flatMap(check => check(root, opts)))];
}}"""

MIN_PLOT_PX = 150        # a figure or plot area narrower or lower than this is squashed
TICK_GAP_PX = 1          # tick labels of one axis closer than this run into each other
OVERLAP_SLACK_PX = 4     # other texts (an axis label and its ticks, HTML texts) may share this much of their
                         # boxes: a glyph box is a few pixels larger than the ink (3 px is touching, not covering)
SQUEEZED_LINES = 3       # a text of this many lines in a box narrower than MIN_PLOT_PX is squeezed
LEGEND_POINTS = 2        # a legend may hide at most this many sampled points of the data
LINE_SAMPLING_PX = 4     # a line's points are taken every this many pixels along it


def assert_drawn_right(root, *, must_show: Sequence[str] = (), must_hide: Sequence[str] = (),
                       expect_data: bool = False, console: Optional[ConsoleLog] = None) -> None:
    """Check from the DOM that the widget under ``root`` shows what its user needs, drawn right.

    Every bqplot figure shown:

    * is at least :data:`MIN_PLOT_PX` wide and high, and so is its plot area;
    * has no SVG element whose geometry (``d``, ``transform``, ``x``, ``y``,
      ``width``, ``height``, ...) holds ``NaN``, ``null``, ``undefined`` or
      ``Infinity`` (marks, heatmap cells, axis ticks alike);
    * draws data (lines with a segment, dots, bars, heatmap cells), when
      ``expect_data``;
    * when it draws data, has tick labels on every axis shown, and the tick
      labels of one axis are :data:`TICK_GAP_PX` apart or more;
    * keeps its title, axis labels and tick labels inside its box;
    * has no legend over more than :data:`LEGEND_POINTS` points of the data.

    The controls: no label, checkbox, button or tab title is cut (its text
    wider than its box); every label of ``must_show`` shows, none of
    ``must_hide`` does; no two text boxes, sliders, menus or checkboxes
    share a label. No error shows in a TaskRunner's error area. No error
    reached the browser console since the last call (``console``).

    Parameters
    ----------
    root : playwright.sync_api.Locator
        The widget's DOM root; only what shows counts (other tabs do not).
    must_show, must_hide : sequence of str
        Exact texts of control labels, button texts or tab titles.
    expect_data : bool, default: False
    console : ConsoleLog, optional

    Raises
    ------
    AssertionError
        Listing every problem found.
    """
    problems = root.evaluate(CHECK_JS, {
        "mustShow": list(must_show), "mustHide": list(must_hide), "expectData": expect_data,
        "minSize": MIN_PLOT_PX, "tickGap": TICK_GAP_PX, "overlapSlack": OVERLAP_SLACK_PX,
        "squeezedLines": SQUEEZED_LINES, "legendPoints": LEGEND_POINTS,
        "lineSampling": LINE_SAMPLING_PX})
    if console is not None:
        errors = collections.Counter(message[:300] for message in console.take())
        problems += [f"browser console error{f' ({count} times)' if count > 1 else ''}: {message}"
                     for message, count in errors.items()]
    assert not problems, "what the user sees is wrong:\n  " + "\n  ".join(problems)
