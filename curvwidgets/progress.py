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
from typing import Any, Callable, Dict, Iterable, Optional, Protocol, Tuple

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
    """A ``progress=`` callback that drives tqdm bars: one per stage.

    With ``total`` the bar appears at once (0 of ``total``, for the ``main``
    stage); otherwise at a stage's first event. Stages that
    interleave (``"curvature"`` measurements within ``"train"`` epochs,
    ``"batch"`` events) each keep their own bar, stacked below the first; a
    stage whose ``total`` changes or whose ``step`` goes back (a new run of
    it) gets a new bar in place of its old one.

    Parameters
    ----------
    desc : str, optional
        The ``main`` stage's label (default: its name); the other bars are
        labelled by their stage.
    total : int, optional
    main : str, optional
        The stage that ``desc`` and ``total`` describe, e.g. ``"train"`` for
        :func:`~curvwidgets.train`, whose ``"curvature"`` measurements may
        report first. Default: the first stage to report.
    stages : str or iterable of str, optional
        Draw these stages only; the events of others are ignored. Default: all.
    **tqdm_kwargs
        Options of every ``tqdm`` bar.

    Attributes
    ----------
    bars : dict of str to tqdm
        The open bar of each stage, in the order the stages first reported.
    last_step : int
        The step of the last event drawn.

    Examples
    --------
    >>> with TqdmProgress(desc="lanczos", disable=True) as bar:
    ...     bar(ProgressEvent("lanczos", 1, 3))
    ...     bar(ProgressEvent("lanczos", 3, 3))
    >>> bar.last_step
    3
    """

    def __init__(self, desc: Optional[str] = None, total: Optional[int] = None, main: Optional[str] = None,
                 stages: Optional[Iterable[str]] = None, **tqdm_kwargs: Any):
        from tqdm.auto import tqdm

        if stages is not None:  # one name alone is a stage too
            stages = (stages,) if isinstance(stages, str) or not hasattr(stages, "__iter__") else tuple(stages)
            if not all(isinstance(stage, str) for stage in stages):
                raise TypeError(f"stages must be None or stage names (str); got {stages!r:.120}")
        self._tqdm = tqdm
        self._desc = desc
        self._kwargs = tqdm_kwargs
        self._stages = None if stages is None else frozenset(stages)
        self.bars: Dict[str, Any] = {}
        self._steps: Dict[str, int] = {}
        if main is not None and not isinstance(main, str):
            raise TypeError(f"main must be None or a stage name (str); got {main!r:.120}")
        self._first: Optional[str] = main  # the stage that ``desc`` labels (None: the first to report)
        self._waiting = None  # the bar drawn for ``total`` before any event
        self.last_step = 0
        if total is not None:  # draw the bar now, before the first (possibly long) unit of work
            self._waiting = tqdm(total=total, desc=desc, **tqdm_kwargs)

    def __call__(self, event: ProgressEvent) -> None:
        stage = event.stage
        if self._stages is not None and stage not in self._stages:
            return
        if self._first is None:
            self._first = stage
        bar = self.bars.get(stage)
        if bar is not None and (event.total != bar.total or event.step < self._steps[stage]):
            bar.close()
            bar = None
        if bar is None:
            if self._waiting is not None and stage == self._first:  # the bar drawn for ``total`` is this stage's
                bar, self._waiting = self._waiting, None
                if bar.total != event.total:
                    bar.reset(total=event.total)
            else:
                label = self._desc if stage == self._first and self._desc else stage
                bar = self._tqdm(total=event.total, desc=label, **self._kwargs)
            self.bars[stage], self._steps[stage] = bar, 0
        bar.update(event.step - self._steps[stage])
        self._steps[stage] = self.last_step = event.step

    def close(self) -> None:
        """Close every bar (safe to call twice)."""
        for bar in [*self.bars.values(), *([self._waiting] if self._waiting is not None else [])]:
            bar.close()
        self.bars.clear()
        self._steps.clear()
        self._waiting = None

    def __enter__(self) -> "TqdmProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
