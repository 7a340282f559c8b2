"""The task runner shared by the widgets: worker thread, progress, throttling, cancel, errors, thread safety."""

import threading
import time
from unittest import mock

import numpy as np
import pytest
import torch

import curvwidgets as cw
from curvwidgets.widgets import TaskRunner, UIDispatcher
from curvwidgets.widgets import dispatch as dispatch_module

STEPS = 8


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    return cw.synthetic.wigner(60, seed=1)


def lanczos_task(matrix, steps=STEPS):
    return lambda progress, cancel: cw.lanczos(matrix, steps=steps, seed=0, progress=progress, cancel=cancel)


def gated_operator(dim: int, gate: threading.Event) -> cw.LinearOperator:
    """A diagonal operator whose every product waits for ``gate``; it fails (never hangs) if the gate stays shut."""
    diagonal = torch.linspace(0.0, 1.0, dim, dtype=torch.float64)

    def product(vector: torch.Tensor) -> torch.Tensor:
        if not gate.wait(timeout=20):
            raise RuntimeError("the gate was never opened: the main thread was blocked")
        return diagonal * vector

    return cw.as_operator(product, dim=dim)


def test_blocking_run_draws_every_step_and_keeps_the_result(matrix):
    runner = TaskRunner(min_interval=0.0)
    drawn = []
    assert runner.start(lanczos_task(matrix), on_progress=lambda event: drawn.append(event.partial.steps), block=True)
    reference = cw.lanczos(matrix, steps=STEPS, seed=0)
    np.testing.assert_allclose(runner.result.alpha, reference.alpha, rtol=1e-12)
    assert drawn == list(range(1, STEPS + 1))
    assert (runner.bar.value, runner.bar.max) == (STEPS, STEPS)
    assert runner.outcome == "done" and runner.error is None and not runner.running
    assert runner.button.description == "Run" and runner.status.value.startswith("done")


def test_progress_draws_are_throttled_but_the_last_event_is_always_drawn(matrix):
    runner = TaskRunner(min_interval=1e9)  # at most one draw per 1e9 s: only the first and the last event
    drawn = []
    runner.start(lanczos_task(matrix), on_progress=lambda event: drawn.append(event.step), block=True)
    assert drawn == [1, STEPS]
    assert runner.bar.value == STEPS
    assert runner.status.value.startswith("done")


def test_a_progress_draw_sends_bar_changes_in_one_message(matrix):
    runner = TaskRunner(min_interval=0.0)
    messages = []
    runner.bar._send = lambda message, buffers=None: messages.append(message["state"])
    runner.start(lanczos_task(matrix), block=True)
    first_draw = next(state for state in messages if "max" in state)
    assert first_draw["max"] == STEPS and first_draw["value"] == 1  # max and value together, not one by one
    assert sum("value" in state for state in messages) == STEPS  # one message per step drawn


def test_status_shows_steps_rate_and_eta():
    runner = TaskRunner(min_interval=0.0)

    def task(progress, cancel):
        progress(cw.ProgressEvent("lanczos", 0, 10))
        time.sleep(0.05)
        progress(cw.ProgressEvent("lanczos", 2, 10))
        return "ok"

    statuses = []
    runner.start(task, on_progress=lambda event: statuses.append(runner.status.value), block=True)
    assert statuses[0] == "lanczos 0/10"
    assert statuses[1].startswith("lanczos 2/10 · ") and "steps/s" in statuses[1] and "ETA" in statuses[1]


def test_the_rate_counts_from_the_step_a_stage_starts_at():
    """A resumed run announces the step it resumes from: its ETA counts only the steps it does itself."""
    runner = TaskRunner(min_interval=0.0)
    clock = [100.0]

    def task(progress, cancel):
        clock[0] += 5.0                              # loading the data and the checkpoint
        progress(cw.ProgressEvent("train", 7, 10))   # resumed after 7 epochs
        clock[0] += 30.0
        progress(cw.ProgressEvent("train", 8, 10))   # one epoch of 30 s later
        return "ok"

    statuses = []
    with mock.patch("curvwidgets.widgets.runner.time.perf_counter", lambda: clock[0]):
        runner.start(task, on_progress=lambda event: statuses.append(runner.status.value), block=True)
    assert statuses == ["train 7/10", "train 8/10 · 0.033 steps/s · ETA 1 min 00 s"]


@pytest.mark.parametrize("block", [True, False])
def test_cancel_keeps_a_valid_partial_result_and_a_second_run_works(matrix, block):
    runner = TaskRunner(min_interval=0.0)

    def cancel_after_three(event):
        if event.step == 3:
            runner.cancel()

    assert runner.start(lanczos_task(matrix), on_progress=cancel_after_three, block=block)
    assert runner.join(timeout=20)
    assert runner.outcome == "cancelled" and runner.status.value.startswith("cancelled")
    partial = runner.result
    assert partial.steps == 3
    np.testing.assert_allclose(partial.ritz_values, cw.lanczos(matrix, steps=3, seed=0).ritz_values, atol=1e-12)
    np.testing.assert_allclose(partial.ritz_weights.sum(axis=1), 1.0, atol=1e-12)
    assert runner.button.description == "Run" and not runner.button.disabled

    assert runner.start(lanczos_task(matrix), block=block)
    assert runner.join(timeout=20)
    assert runner.outcome == "done" and runner.result.steps == STEPS


def test_worker_exception_appears_in_the_error_area_and_the_result_is_kept(matrix):
    runner = TaskRunner()
    runner.start(lanczos_task(matrix), block=True)
    good = runner.result

    def failing_task(progress, cancel):
        raise ValueError("P must be an int >= 1; got 0")

    assert runner.start(failing_task)
    assert runner.join(timeout=20)
    assert runner.outcome == "failed" and isinstance(runner.error, ValueError)
    assert "ValueError" in runner.error_message.value and "P must be an int &gt;= 1" in runner.error_message.value
    assert "Traceback" in runner.error_traceback.value and "failing_task" in runner.error_traceback.value
    assert runner.error_box.layout.display == "" and runner.error_details.selected_index is None  # folded
    assert runner.result is good

    runner.start(lanczos_task(matrix), block=True)  # the next run clears the error
    assert runner.error is None and runner.error_message.value == "" and runner.error_box.layout.display == "none"


def test_blocking_run_shows_the_error_and_raises_it():
    runner = TaskRunner()

    def failing_task(progress, cancel):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        runner.start(failing_task, block=True)
    assert "boom" in runner.error_message.value and not runner.running


def test_an_exception_in_the_owners_draw_is_shown_not_lost(matrix):
    runner = TaskRunner(min_interval=0.0)

    def broken_draw(event):
        raise KeyError("mark")

    runner.start(lanczos_task(matrix), on_progress=broken_draw)
    assert runner.join(timeout=20)
    assert runner.outcome == "failed" and "KeyError" in runner.error_message.value
    assert runner.result.steps == 1  # the draw error stopped the run at its first step, keeping it


def test_second_run_while_running_is_refused_and_the_main_thread_stays_free():
    gate = threading.Event()
    runner = TaskRunner()
    calls = []

    def task(progress, cancel):
        calls.append(threading.get_ident())
        return cw.lanczos(gated_operator(50, gate), steps=5, progress=progress, cancel=cancel)

    assert runner.start(task)  # returns while the worker waits at its first product
    assert runner.running and runner.button.description == "Cancel"
    assert not runner.start(task)  # refused, not doubled
    main_work = np.linalg.eigvalsh(np.diag(np.arange(5.0)))  # the main thread can work meanwhile
    gate.set()
    assert runner.join(timeout=20)
    assert len(calls) == 1 and calls[0] != threading.get_ident()
    assert runner.outcome == "done" and runner.result.steps == 5
    np.testing.assert_allclose(main_work, np.arange(5.0))


def test_the_button_cancels_a_running_task():
    gate = threading.Event()
    runner = TaskRunner()
    runner.start(lambda progress, cancel: cw.lanczos(gated_operator(50, gate), steps=10, progress=progress,
                                                     cancel=cancel))
    runner.button.click()  # Cancel while running
    assert runner.button.description == "Cancelling" and runner.button.disabled
    gate.set()
    assert runner.join(timeout=20)
    assert runner.outcome == "cancelled" and runner.result.steps == 1


def test_the_button_runs_when_idle():
    started = []
    runner = TaskRunner(on_run=lambda: started.append(True))
    runner.button.click()
    assert started == [True]


class RecordingLoop:
    """Stands in for the kernel's IOLoop: records callbacks instead of running them."""

    def __init__(self):
        self.callbacks = []

    def add_callback(self, callback, *args):
        self.callbacks.append((callback, args))


def test_with_a_kernel_loop_worker_updates_run_only_on_the_ui_thread(matrix, monkeypatch):
    loop = RecordingLoop()
    monkeypatch.setattr(dispatch_module, "kernel_loop", lambda: loop)
    runner = TaskRunner(min_interval=0.0)
    calls = []
    runner.start(lanczos_task(matrix), on_progress=lambda event: calls.append((event.step, threading.get_ident())),
                 on_done=lambda result: calls.append(("done", threading.get_ident())))
    runner._thread.join(timeout=20)
    assert calls == [] and runner.result is None and runner.running  # nothing applied from the worker
    assert loop.callbacks  # the main thread was woken instead
    assert runner.join()  # the UI thread drains the queue
    main = threading.get_ident()
    # Draws coalesce while the UI thread is busy: the one queued draw shows the newest event when it runs.
    assert calls == [(STEPS, main), ("done", main)]
    assert runner.result.steps == STEPS and runner.bar.value == STEPS and runner.outcome == "done"
    for callback, args in loop.callbacks:  # the loop's own wake-ups find nothing left to do
        callback(*args)
    assert len(calls) == 2


def test_dispatcher_flush_refuses_other_threads():
    dispatcher = UIDispatcher()
    errors = []
    worker = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, dispatcher.flush)))
    worker.start()
    worker.join()
    assert len(errors) == 1


def test_finish_callbacks_hear_every_outcome_once_the_runner_is_idle(matrix):
    runner = TaskRunner(min_interval=0.0)
    heard = []

    def listener(outcome, result):
        heard.append((outcome, result, runner.running))

    runner.on_finish(listener)
    runner.start(lanczos_task(matrix), block=True)
    done = runner.result
    assert heard == [("done", done, False)] and done.alpha.shape[-1] == STEPS

    runner.start(lanczos_task(matrix), on_progress=lambda event: event.step == 3 and runner.cancel(), block=True)
    assert heard[-1][0] == "cancelled" and heard[-1][1] is runner.result and heard[-1][1].alpha.shape[-1] == 3

    def failing_task(progress, cancel):
        raise ValueError("bad")

    with pytest.raises(ValueError):
        runner.start(failing_task, block=True)
    assert heard[-1] == ("failed", heard[-2][1], False)  # a failure keeps the previous result

    chained = []  # the runner is idle in the callback: it may start the next run

    def chain(outcome, result):
        if not chained:
            chained.append("next")
            chained.append(runner.start(lanczos_task(matrix, 2), block=True))

    runner.on_finish(chain)
    runner.start(lanczos_task(matrix), block=True)
    assert chained == ["next", True] and runner.result.alpha.shape[-1] == 2
