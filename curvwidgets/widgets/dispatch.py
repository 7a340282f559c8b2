"""The one place where code running in a worker thread changes widget state.

Why widget state changes are marshalled
---------------------------------------
ipywidgets 8 sends every trait change to the front end as a comm message.
Sending itself is thread-safe under ipykernel (messages go through the IOPub
thread's queue), but the bookkeeping around it is not: ``hold_sync`` keeps a
per-widget flag and a set of pending keys, ``_property_lock`` suppresses the
echo of a change that came from the browser, and observers fire in whichever
thread changed the trait. A worker thread that sets traits while the kernel's
main thread handles a slider move from the browser can interleave with it and
send a half-batched or stale state.

So every widget update is a zero-argument function handed to a
:class:`UIDispatcher`, which runs it on the thread that owns the widgets (the
one that created the dispatcher, the kernel's main thread in a notebook):

- called from that thread, the update runs at once;
- called from another thread while a kernel's IOLoop exists, the update is
  queued and ``IOLoop.add_callback`` (documented by tornado as safe to call
  from any thread) wakes the main thread to run the queue; the queue is also
  drained by :meth:`UIDispatcher.flush`, which ``join`` calls, so a cell that
  waits for a run sees its final state;
- with no kernel (plain Python, tests, papermill's blocking mode runs in the
  calling thread anyway) there is no front end to race with, and the update
  runs at once in the calling thread.

Every update runs under one re-entrant lock, so updates never interleave even
in the last case.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Deque, Optional

__all__ = ["UIDispatcher", "kernel_loop"]

Update = Callable[[], None]


def kernel_loop() -> Optional[Any]:
    """The running IPython kernel's main-thread tornado ``IOLoop``, or None outside a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is optional for plain-Python use
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    return getattr(kernel, "io_loop", None)


class UIDispatcher:
    """Runs widget updates on the thread that owns the widgets, one at a time.

    The dispatcher belongs to the thread that creates it (the UI thread).
    Call it with a zero-argument function from any thread; see the module
    docstring for where and when the function runs.

    Examples
    --------
    >>> dispatch = UIDispatcher()
    >>> seen = []
    >>> dispatch(lambda: seen.append("drawn"))
    >>> seen
    ['drawn']
    """

    def __init__(self) -> None:
        self._ui_thread = threading.get_ident()
        self._lock = threading.RLock()
        self._pending: Deque[Update] = collections.deque()

    @property
    def on_ui_thread(self) -> bool:
        """Whether the caller is the thread that owns the widgets."""
        return threading.get_ident() == self._ui_thread

    def __call__(self, update: Update) -> None:
        """Run ``update`` now when that is safe, else queue it for the UI thread."""
        if self.on_ui_thread:
            self.flush()  # earlier queued updates first, so state changes keep their order
            self._apply(update)
            return
        loop = kernel_loop()
        if loop is None:
            self._apply(update)
        else:
            self._pending.append(update)
            loop.add_callback(self.flush)

    def flush(self) -> None:
        """Run every queued update, oldest first. Call only from the UI thread."""
        if not self.on_ui_thread:
            raise RuntimeError("UIDispatcher.flush must be called from the thread that created the dispatcher")
        while self._pending:
            self._apply(self._pending.popleft())

    def _apply(self, update: Update) -> None:
        with self._lock:
            update()
