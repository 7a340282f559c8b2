"""The task runner every widget shares: a computation in a worker thread, with Run/Cancel, progress and errors.

A *task* is a function ``task(progress, cancel) -> result`` that speaks the
package's progress protocol (:mod:`curvwidgets.progress`): it sends
:class:`~curvwidgets.progress.ProgressEvent` objects to ``progress`` and raises
:class:`~curvwidgets.progress.Cancelled`, carrying its partial result, once
``cancel.is_set()``. :class:`TaskRunner` runs it in a worker thread (or in the
calling thread with ``block=True``), and every widget change it makes goes
through one :class:`~curvwidgets.widgets.dispatch.UIDispatcher`, the only place
that is safe to call from the worker.
"""

from __future__ import annotations

import html
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

import ipywidgets as widgets

from ..progress import Cancelled, CancelToken, ProgressCallback, ProgressEvent
from ._view import hold_sync
from .dispatch import UIDispatcher

__all__ = ["TaskRunner", "Task", "status_text"]

Task = Callable[[ProgressCallback, CancelToken], Any]
BAR_STYLES = {"running": "info", "done": "success", "cancelled": "warning", "failed": "danger"}


def status_text(event: ProgressEvent, elapsed: float, start_step: int = 0) -> str:
    """The progress label: stage, step count, rate and ETA.

    Parameters
    ----------
    event : ProgressEvent
        The latest event of the current stage.
    elapsed : float
        Seconds since the stage's first event.
    start_step : int, default: 0
        The step of the stage's first event: the steps counted in the rate are
        those done since (a resumed training starts at the epoch it resumes).

    Returns
    -------
    str
        e.g. ``"lanczos 12/30 · 4.1 steps/s · ETA 4 s"``; the rate and ETA
        are left out until a step has been timed.

    Examples
    --------
    >>> status_text(ProgressEvent("lanczos", 10, 30), elapsed=5.0)
    'lanczos 10/30 · 2 steps/s · ETA 10 s'
    >>> status_text(ProgressEvent("train", 8, 10), elapsed=30.0, start_step=7)
    'train 8/10 · 0.033 steps/s · ETA 1 min 00 s'
    """
    text = f"{event.stage} {event.step}/{event.total}"
    if event.step > start_step and elapsed > 0:
        rate = (event.step - start_step) / elapsed
        text += f" · {rate:.2g} steps/s · ETA {_duration((event.total - event.step) / rate)}"
    return text


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(eq=False)
class _Job:
    """One run's task, callbacks and the progress state shared between the worker and the UI thread."""

    task: Task
    on_progress: Optional[Callable[[ProgressEvent], None]]
    on_done: Optional[Callable[[Any], None]]
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.perf_counter)
    stage_started: float = 0.0
    stage_first_step: int = 0
    latest: Optional[ProgressEvent] = None
    latest_time: float = 0.0
    drawn: Optional[ProgressEvent] = None
    last_draw: float = float("-inf")
    draw_pending: bool = False
    error: Optional[BaseException] = None
    traceback: str = ""


class TaskRunner(widgets.VBox):
    """Run button, progress bar and error area for a computation run in a worker thread.

    Parameters
    ----------
    on_run : callable, optional
        Called with no argument when the Run button is clicked while idle; a
        widget passes the method that builds its task and calls :meth:`start`.
    description : str, default: "Run"
        Label of the button while idle.
    cancel_labels : (str, str), default: ("Cancel", "Cancelling")
        Labels of the button while running, and once cancelling was asked for.
    min_interval : float, default: 0.1
        Seconds between two progress draws (bar, label and the owner's plots):
        at most ``1 / min_interval`` draws a second however fast the task
        reports. The last event of a run is always drawn. 0 draws every event.

    Attributes
    ----------
    button : ipywidgets.Button
    bar : ipywidgets.IntProgress
        ``max`` is the current stage's total, ``value`` its step.
    status : ipywidgets.Label
        Stage, step count, rate and ETA while running; the outcome afterwards.
    error_message : ipywidgets.HTML
        The exception of a failed run (type and message); empty otherwise.
    error_traceback : ipywidgets.HTML
        Its traceback, folded in :attr:`error_details`.
    error_details : ipywidgets.Accordion
        Collapsed section titled "Traceback".
    result : object
        Result of the last run that finished or was cancelled (then the
        partial result carried by ``Cancelled``). A failed run leaves it as it was.
    error : BaseException or None
        The exception of the last run, None when it did not fail.
    outcome : {"idle", "running", "done", "cancelled", "failed"}
    last_event : ProgressEvent or None
        The latest progress event received (drawn or not).
    """

    def __init__(self, on_run: Optional[Callable[[], Any]] = None, description: str = "Run", min_interval: float = 0.1,
                 cancel_labels: Tuple[str, str] = ("Cancel", "Cancelling")):
        self.on_run = on_run
        self.run_label = description
        self.cancel_labels = cancel_labels
        self.min_interval = float(min_interval)
        self.button = widgets.Button(description=description, icon="play", button_style="primary",
                                     layout=widgets.Layout(width="110px"))
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="240px"))
        self.status = widgets.Label(value="")
        self.error_message = widgets.HTML(value="")
        self.error_traceback = widgets.HTML(value="")
        self.error_details = widgets.Accordion(children=[self.error_traceback], titles=("Traceback",),
                                               selected_index=None)
        self.error_box = widgets.VBox([self.error_message, self.error_details], layout=widgets.Layout(display="none"))
        super().__init__([widgets.HBox([self.button, self.bar, self.status]), self.error_box])
        self.button.on_click(self._clicked)

        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.outcome = "idle"
        self.last_event: Optional[ProgressEvent] = None
        self._dispatch = UIDispatcher()
        self._guard = threading.Lock()
        self._busy = False
        self._job: Optional[_Job] = None
        self._thread: Optional[threading.Thread] = None
        self._finish_callbacks: List[Callable[[str, Any], None]] = []

    # -- public control ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a run has started and its outcome has not yet been shown."""
        return self._busy

    def on_finish(self, callback: Callable[[str, Any], None]) -> None:
        """Call ``callback(outcome, result)`` in the UI thread after every run, once it is over.

        ``outcome`` is ``"done"``, ``"cancelled"`` or ``"failed"``; ``result``
        is :attr:`result` (the partial one after a cancel, the previous one
        after a failure). The runner is idle by then, so the callback may
        start the next run. Another widget (a dashboard) chains runs with it.
        """
        self._finish_callbacks.append(callback)

    def dispatch(self, update: Callable[[], None]) -> None:
        """Apply a widget update from any thread (see :class:`~curvwidgets.widgets.dispatch.UIDispatcher`).

        Owners route their own redraws (slider moves included) through here,
        so that no two updates ever interleave.
        """
        self._dispatch(update)

    def start(
        self,
        task: Task,
        on_progress: Optional[Callable[[ProgressEvent], None]] = None,
        on_done: Optional[Callable[[Any], None]] = None,
        block: bool = False,
        on_start: Optional[Callable[[], None]] = None,
    ) -> bool:
        """Run ``task(progress, cancel)``, in a worker thread unless ``block``.

        Parameters
        ----------
        task : callable
            ``task(progress, cancel) -> result`` following :mod:`curvwidgets.progress`.
        on_progress : callable, optional
            ``on_progress(event)``, called on the UI thread with the latest
            event at most every ``min_interval`` seconds, and with the last one.
        on_done : callable, optional
            ``on_done(result)``, called on the UI thread at the end of every
            run with what :attr:`result` then holds: the task's result, the
            partial result of a cancelled run, or, after a failure, the result
            kept from before (None if there is none), so that the owner's
            figures always show :attr:`result`.
        block : bool, default: False
            Run in the calling thread and return when done (papermill, nbval,
            scripts). A failure is shown in the widget and then re-raised.
        on_start : callable, optional
            ``on_start()``, called on the UI thread right after the widget shows
            the run started (its button turned to Cancel or Stop), only when
            the run starts: e.g. to disable the owner's settings.

        Returns
        -------
        bool
            True when the run started; False when one is already running (the
            request is refused, nothing is started).

        Raises
        ------
        Exception
            With ``block=True``, the task's exception (after it is shown).
        """
        if self._dispatch.on_ui_thread:
            self._dispatch.flush()  # a finished run whose outcome is still queued is shown first
        with self._guard:
            if self._busy:
                return False
            self._busy = True
        job = _Job(task, on_progress, on_done)
        self._job, self.last_event = job, None
        def started() -> None:
            self._show_started(job)
            if on_start is not None:
                on_start()

        self._dispatch(started)
        if block:
            self._execute(job)
            if job.error is not None:
                raise job.error
            return True
        self._thread = threading.Thread(target=self._execute, args=(job,), name="curvwidgets-task", daemon=True)
        self._thread.start()
        return True

    def cancel(self) -> bool:
        """Ask the running task to stop; it stops at its next progress report, keeping its partial result.

        Safe to call from any thread. Returns False when nothing is running.
        """
        job = self._job
        if not self._busy or job is None or job.cancel.is_set():
            return False
        job.cancel.set()
        self._dispatch(self._show_cancelling)
        return True

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the worker, then show its outcome; True when no run is left going.

        Called from the UI thread, this also runs the widget updates still
        queued for it, so the figures show the final result when it returns.
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        if self._dispatch.on_ui_thread:
            self._dispatch.flush()
        return not self._busy

    # -- worker side ------------------------------------------------------------------------------------------------

    def _execute(self, job: _Job) -> None:
        """Run the task and queue its outcome; never raises (the outcome carries the error)."""
        outcome, result = "failed", None
        try:
            result = job.task(lambda event: self._on_progress(job, event), job.cancel)
            outcome = "done"
        except Cancelled as stop:
            outcome, result = "cancelled", stop.result
        except BaseException as error:  # shown in the widget, re-raised by a blocking start
            job.error, job.traceback = error, traceback.format_exc()
        self._dispatch(lambda: self._draw_latest(job))
        self._dispatch(lambda: self._finish(job, outcome, result))

    def _on_progress(self, job: _Job, event: ProgressEvent) -> None:
        """Progress callback handed to the task: record the event, schedule a throttled draw."""
        now = time.perf_counter()
        with job.lock:
            if job.latest is None or job.latest.stage != event.stage:  # a stage's rate counts from its first event
                job.stage_started, job.stage_first_step = now, event.step
            job.latest, job.latest_time = event, now
            schedule = now - job.last_draw >= self.min_interval and not job.draw_pending
            if schedule:
                job.last_draw, job.draw_pending = now, True
        self.last_event = event
        if schedule:
            self._dispatch(lambda: self._draw_latest(job))

    # -- UI side (only ever run through the dispatcher) -------------------------------------------------------------

    def _draw_latest(self, job: _Job) -> None:
        """Draw the newest event not drawn yet: bar, label, then the owner's plots, in one batch each."""
        with job.lock:
            event, job.draw_pending = job.latest, False
            stage_elapsed, first_step = job.latest_time - job.stage_started, job.stage_first_step
            if event is None or event is job.drawn:
                return
            job.drawn = event
        with hold_sync(self.bar, self.status):
            self.bar.max = max(event.total, 1)
            self.bar.value = min(event.step, self.bar.max)
            self.status.value = status_text(event, stage_elapsed, first_step)
        if job.on_progress is not None:
            self._guarded(job, lambda: job.on_progress(event))

    def _show_started(self, job: _Job) -> None:
        self.outcome = "running"
        with hold_sync(self.button, self.bar, self.status, self.error_message, self.error_traceback):
            self.button.description, self.button.icon = self.cancel_labels[0], "stop"
            self.button.button_style = "warning"
            self.button.disabled = False
            self.bar.value, self.bar.bar_style = 0, BAR_STYLES["running"]
            self.status.value = "starting"
            self._clear_error()

    def _show_cancelling(self) -> None:
        if self._busy:
            with hold_sync(self.button, self.status):
                self.button.description, self.button.disabled = self.cancel_labels[1], True
                self.status.value = f"{self.status.value} · cancelling"

    def _finish(self, job: _Job, outcome: str, result: Any) -> None:
        """Show the outcome, keep the result, hand it to the owner, and accept the next run."""
        if outcome != "failed":
            self.result = result
        if job.on_done is not None:
            self._guarded(job, lambda: job.on_done(self.result))
        if job.error is not None:
            outcome = "failed"
        seconds = time.perf_counter() - job.started
        event = job.latest
        with hold_sync(self.button, self.bar, self.status):
            self.button.description, self.button.icon, self.button.button_style = self.run_label, "play", "primary"
            self.button.disabled = False
            self.bar.bar_style = BAR_STYLES[outcome]
            steps = f" after {event.stage} {event.step}/{event.total}" if event is not None else ""
            self.status.value = {"done": f"done in {_duration(seconds)}",
                                 "cancelled": f"cancelled{steps}; partial result kept",
                                 "failed": f"failed{steps}: see the error below"}[outcome]
        if job.error is not None:
            self._show_error(job.error, job.traceback)
        self.error, self.outcome = job.error, outcome
        with self._guard:
            self._busy = False
        for callback in self._finish_callbacks:
            callback(outcome, self.result)

    def _guarded(self, job: _Job, draw: Callable[[], None]) -> None:
        """Run one of the owner's draws; an exception in it fails the run visibly instead of vanishing."""
        try:
            draw()
        except Exception as error:
            if job.error is None:
                job.error, job.traceback = error, traceback.format_exc()
            job.cancel.set()

    def _show_error(self, error: BaseException, trace: str) -> None:
        with hold_sync(self.error_message, self.error_traceback, self.error_box.layout):
            self.error_message.value = (f'<span style="color:#b00020"><b>{html.escape(type(error).__name__)}</b>: '
                                        f"{html.escape(str(error))}</span>")
            self.error_traceback.value = f"<pre style='font-size:11px'>{html.escape(trace)}</pre>"
            self.error_box.layout.display = ""

    def _clear_error(self) -> None:
        self.error_message.value = self.error_traceback.value = ""
        self.error_box.layout.display = "none"
        self.error = None

    def _clicked(self, _button: widgets.Button) -> None:
        if self._busy:
            self.cancel()
        elif self.on_run is not None:
            self.on_run()
