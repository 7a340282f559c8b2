"""Learning-rate schedules as pure functions of the epoch.

A schedule maps the index ``t = 0, 1, ..., T - 1`` of the epoch about to run
to a factor of the initial learning rate; the training loop sets every
parameter group's rate to ``base_lr * factor(t)`` at the start of the epoch.
Because the factor depends on nothing but ``t``, a resumed run needs only the
epoch number to continue the schedule exactly.

The paper's linear schedule (eq. 19 of "MLRG Deep Curvature", after Izmailov et
al. 2018), with ``alpha_0`` the initial rate and ``T`` the epoch budget::

    alpha_t = alpha_0                                  if t / T <= 0.5
    alpha_t = alpha_0 (1 - (1 - r) (t / T - 0.5) / 0.4) if 0.5 < t / T <= 0.9
    alpha_t = alpha_0 r                                otherwise

Examples
--------
>>> from curvwidgets.training import schedules
>>> linear = schedules.create("linear", epochs=10, final_ratio=0.01)
>>> [round(linear(t), 4) for t in (0, 5, 7, 9)]
[1.0, 1.0, 0.505, 0.01]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from .._validate import finite, non_negative_int, positive_int, unit_interval

__all__ = ["Schedule", "create", "names"]


@dataclass(frozen=True)
class Schedule:
    """A learning-rate factor per epoch: ``schedule(t)`` for ``t`` in ``0 .. epochs - 1``.

    Attributes
    ----------
    name : str
        One of :func:`names`.
    epochs : int
        The budget ``T`` the schedule is laid over.
    options : dict
        The keyword arguments it was created with (plain floats and ints, so
        a checkpoint can store them).
    """

    name: str
    epochs: int
    options: Dict[str, object]

    def __call__(self, epoch: int) -> float:
        return _FACTORS[self.name](non_negative_int("epoch", epoch), self.epochs, **self.options)


def _constant(epoch: int, epochs: int) -> float:
    return 1.0


def _linear(epoch: int, epochs: int, final_ratio: float = 0.01) -> float:
    progress = epoch / epochs
    if progress <= 0.5:
        return 1.0
    if progress <= 0.9:
        return 1.0 - (1.0 - final_ratio) * (progress - 0.5) / 0.4
    return final_ratio


def _cosine(epoch: int, epochs: int, final_ratio: float = 0.0) -> float:
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def _step(epoch: int, epochs: int, milestones: Tuple[float, ...] = (0.5, 0.75), gamma: float = 0.1) -> float:
    return gamma ** sum(epoch >= milestone * epochs for milestone in milestones)


_FACTORS: Dict[str, Callable[..., float]] = {"constant": _constant, "linear": _linear, "cosine": _cosine, "step": _step}
_OPTIONS = {"constant": (), "linear": ("final_ratio",), "cosine": ("final_ratio",), "step": ("milestones", "gamma")}


def names() -> Tuple[str, ...]:
    """The schedule names :func:`create` accepts."""
    return tuple(_FACTORS)


def create(name: str, epochs: int, **options) -> Schedule:
    """A schedule by name.

    Parameters
    ----------
    name : {"linear", "constant", "cosine", "step"}
        ``"linear"``: eq. 19 above, ``final_ratio`` ``r`` (default 0.01).
        ``"constant"``: factor 1. ``"cosine"``: ``r + (1 - r) (1 + cos(pi t / T)) / 2``
        with ``final_ratio`` ``r`` (default 0). ``"step"``: ``gamma ** j``
        after ``j`` of the ``milestones`` (fractions of ``T``, default
        ``(0.5, 0.75)``; ``gamma`` default 0.1) have passed.
    epochs : int
        The budget ``T`` (>= 1).

    Raises
    ------
    ValueError
        For an unknown name, an option the schedule does not take, or values
        out of range.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _FACTORS:
        raise ValueError(f"schedule must be one of {names()}; got {name!r}")
    epochs = positive_int("epochs", epochs)
    unknown = set(options) - set(_OPTIONS[key])
    if unknown:
        raise ValueError(f"schedule {key!r} takes options {_OPTIONS[key]}; got unknown {sorted(unknown)}")
    if "final_ratio" in options:
        options["final_ratio"] = unit_interval("final_ratio", options["final_ratio"], closed_right=True)
    if "milestones" in options:
        if not isinstance(options["milestones"], (list, tuple)):
            raise ValueError(f"milestones must be a list of fractions of the epochs in (0, 1]; "
                             f"got {options['milestones']!r}")
        options["milestones"] = tuple(_fraction(f"milestones[{index}]", milestone)
                                      for index, milestone in enumerate(options["milestones"]))
    if "gamma" in options:
        options["gamma"] = _fraction("gamma", options["gamma"])
    return Schedule(key, epochs, dict(options))


def _fraction(name: str, value: object) -> float:
    """``value`` as a float in ``(0, 1]``, or ``ValueError`` naming ``name``."""
    if not 0.0 < finite(name, value) <= 1.0:
        raise ValueError(f"{name} must be a number in (0, 1]; got {value!r}")
    return float(value)
