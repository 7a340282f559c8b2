"""The one progress and cancel protocol used by every long computation.

A long function takes two optional keyword arguments:

``progress``
    A callable that receives a :class:`ProgressEvent` after every unit of
    work (one Lanczos step, one power-iteration step, ...).
``cancel``
    Anything with an ``is_set()`` method, for example :class:`threading.Event`.
    It is polled once per unit of work; when set, the function raises
    :class:`Cancelled`, which carries the partial result computed so far.

Front ends adapt the protocol: :class:`TqdmProgress` drives a tqdm bar on the
terminal, the widgets drive their own progress bars. The numerical core never
polls a user interface itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Tuple

from ._validate import check_cancel, check_progress

__all__ = ["ProgressEvent", "ProgressCallback", "CancelToken", "Cancelled", "TqdmProgress", "check_protocol", "report"]


@dataclass(frozen=True)
class ProgressEvent:
    """One report of a long computation.

    Attributes
    ----------
    stage : str
        What is running, e.g. ``"lanczos"`` or ``"power_iteration"``.
    step : int
        Units of work done so far (1-based after the first unit).
    total : int
        Units of work planned.
    partial : object or None
        The result after ``step`` units where one exists (a ``LanczosResult``
        for Lanczos, a ``PowerIterationResult`` for power iteration); it is
        never mutated afterwards.
    """

    stage: str
    step: int
    total: int
    partial: Any = None

    @property
    def fraction(self) -> float:
        """Fraction of the planned work that is done, in ``[0, 1]``."""
        return self.step / self.total if self.total else 1.0


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken(Protocol):
    """Anything that can say whether a computation should stop."""

    def is_set(self) -> bool: ...


class Cancelled(Exception):
    """Raised when a computation is cancelled; carries the partial result.

    Attributes
    ----------
    result : object
        The valid result of the work done before cancelling (a Lanczos run
        cancelled after ``k`` steps carries a ``k``-step ``LanczosResult``).
    step : int
        Units of work completed.
    """

    def __init__(self, result: Any, step: int, stage: str):
        super().__init__(f"{stage} cancelled after {step} step(s); the partial result is in .result")
        self.result = result
        self.step = step
        self.stage = stage


def check_protocol(
    progress: Optional[ProgressCallback], cancel: Optional[CancelToken]
) -> Tuple[Optional[ProgressCallback], Optional[CancelToken]]:
    """``(progress, cancel)`` unchanged, checked at a long function's entry, before any work.

    Raises
    ------
    TypeError
        When ``progress`` is neither None nor callable, or ``cancel`` is
        neither None nor has an ``is_set()`` method.
    """
    return check_progress(progress), check_cancel(cancel)


def report(
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
    stage: str,
    step: int,
    total: int,
    partial: Callable[[], Any],
    final: Optional[Callable[[], Any]] = None,
) -> None:
    """Send one progress event and honour a cancel request.

    ``partial`` is a zero-argument function building the snapshot sent with
    the event; ``final`` (default: ``partial``) builds the result carried by
    :class:`Cancelled`, which may cost more (e.g. a measured loss of
    orthogonality). Each is called only when needed.

    Raises
    ------
    Cancelled
        When ``cancel.is_set()`` is true.
    TypeError
        As :func:`check_protocol`, for functions that did not check at entry.
    """
    check_protocol(progress, cancel)
    if progress is not None:
        progress(ProgressEvent(stage=stage, step=step, total=total, partial=partial()))
    if cancel is not None and cancel.is_set():
        raise Cancelled((final or partial)(), step, stage)


class TqdmProgress:
    """A ``progress=`` callback that drives a tqdm bar.

    With ``total`` the bar appears at once (0 of ``total``); otherwise at the
    first event. A new stage (e.g. ``"swa"`` after ``"train"``) starts a new bar.

    Examples
    --------
    >>> with TqdmProgress(desc="lanczos", disable=True) as bar:
    ...     bar(ProgressEvent("lanczos", 1, 3))
    ...     bar(ProgressEvent("lanczos", 3, 3))
    >>> bar.last_step
    3
    """

    def __init__(self, desc: Optional[str] = None, total: Optional[int] = None, **tqdm_kwargs: Any):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._desc = desc
        self._kwargs = tqdm_kwargs
        self._bar = None
        self.last_step = 0
        if total is not None:  # draw the bar now, before the first (possibly long) unit of work
            self._bar = tqdm(total=total, desc=desc, **tqdm_kwargs)

    def __call__(self, event: ProgressEvent) -> None:
        if self._bar is not None and (event.total != self._bar.total or event.step < self.last_step):
            self.close()
        if self._bar is None:
            self._bar = self._tqdm(total=event.total, desc=self._desc or event.stage, **self._kwargs)
            self.last_step = 0
        self._bar.update(event.step - self.last_step)
        self.last_step = event.step

    def close(self) -> None:
        """Close the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
