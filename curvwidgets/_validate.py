"""Checks of arguments shared by every layer: each returns the value or raises an error naming the argument.

The error is ``ValueError``, except for objects of the progress protocol
(:func:`check_progress`, :func:`check_cancel`), whose wrong type is a ``TypeError``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple


def _is_real(value: Any) -> bool:
    """A finite real number, Python or numpy (``numpy.float32`` included); not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def finite(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a finite real (Python or numpy; not a bool)."""
    if not _is_real(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a finite real > 0."""
    if not _is_real(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def non_negative(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a finite real >= 0."""
    if not _is_real(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def unit_interval(name: str, value: Any, closed_right: bool = False) -> float:
    """``value`` as a float in ``[0, 1)`` (or ``[0, 1]`` when ``closed_right``), else ``ValueError``."""
    upper_ok = (lambda v: v <= 1) if closed_right else (lambda v: v < 1)
    if not _is_real(value) or value < 0 or not upper_ok(value):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
    return float(value)


def betas(name: str, value: Any) -> Tuple[float, float]:
    """A pair ``(beta1, beta2)`` in ``[0, 1)``, else ``ValueError``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (beta1, beta2) of numbers in [0, 1); got {value!r}")
    return unit_interval(f"{name}[0]", value[0]), unit_interval(f"{name}[1]", value[1])


def real_array(name: str, value: Any):
    """``value`` as a float64 numpy array, or ``ValueError`` naming ``name`` unless it holds real numbers.

    Numbers, nested sequences, numpy arrays and CPU tensors of bools, ints or
    floats are accepted (any shape); strings, complex numbers, objects and
    ragged nesting are not: they would otherwise be parsed, or lose their
    imaginary part, without a word.
    """
    import numpy as np  # imported here: the command line checks its options without numpy

    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):  # ragged nesting, a CUDA tensor
        array = None
    if array is None or array.dtype.kind not in "biuf":
        found = type(value).__name__ if array is None else f"{type(value).__name__} of dtype {array.dtype}"
        raise ValueError(f"{name} must hold real numbers (a number, a sequence or an array of them); got {found}")
    return array.astype(np.float64)


def positive_int(name: str, value: Any) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer >= 1 (Python or numpy; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer >= 0 (Python or numpy; not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0; got {value!r}")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """``value`` unless it is not a bool (``ValueError``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """``value`` unless it is not one of ``options`` (``ValueError``)."""
    if value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}; got {value!r}")
    return value


def optional_positive(name: str, value: Any) -> Optional[float]:
    """None, or ``value`` as a float > 0."""
    return None if value is None else positive(name, value)


_SEED_BOUND = 2**63


def seed_value(name: str, value: Any) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer in ``[0, 2**63)`` (not a bool).

    Every seed of the package goes to ``numpy.random.default_rng`` or
    ``torch.Generator.manual_seed``, which both accept that range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < _SEED_BOUND:
        raise ValueError(f"{name} must be an int in [0, 2**63); got {value!r}")
    return int(value)


def check_progress(value: Any) -> Any:
    """``value`` unless it is neither None nor callable (``TypeError`` naming ``progress``)."""
    if value is not None and not callable(value):
        raise TypeError(f"progress must be None or a callable taking a ProgressEvent; got {type(value).__name__} {value!r}")
    return value


def check_cancel(value: Any) -> Any:
    """``value`` unless it is neither None nor an object with a callable ``is_set()`` (``TypeError`` naming ``cancel``).

    A class (``threading.Event`` instead of ``threading.Event()``) is refused.
    """
    if value is not None and (isinstance(value, type) or not callable(getattr(value, "is_set", None))):
        raise TypeError(
            f"cancel must be None or an object with an is_set() method, e.g. threading.Event(); "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def device_value(name: str, value: Any):
    """``value`` as a ``torch.device`` that exists on this machine (None passes through).

    A malformed name (``"gpu"``), CUDA where there is none, or a CUDA index
    beyond the cards present is a ``ValueError`` naming ``name``.
    """
    if value is None:
        return None
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must name a device such as 'cpu', 'cuda' or 'cuda:1'; got {value!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name} {value!r}: CUDA is not available on this machine; use 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name} {value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
