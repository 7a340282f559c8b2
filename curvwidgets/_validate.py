"""Checks of arguments shared by every layer: each returns the value or raises an error naming the argument.

The error is ``ValueError``, except for objects of the progress protocol
(:func:`check_progress`, :func:`check_cancel`), whose wrong type is a ``TypeError``.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path
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


def type_name(value: Any) -> str:
    """How a message names the kind of ``value``: ``None`` for None (not ``NoneType``), else its type's name."""
    return "None" if value is None else type(value).__name__


def integer(name: str, value: Any) -> int:
    """``value`` as an int, or ``ValueError`` unless it is an integer (Python or numpy; not a bool); any sign.

    For a widget's integer field, which may hold any int: its range is checked where it is used.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int; got {value!r}")
    return int(value)


def real(name: str, value: Any) -> float:
    """``value`` as a float, or ``ValueError`` unless it is a real number (Python or numpy; not a bool); NaN passes.

    For a widget's number field, which may hold any float: its range is checked where it is used.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number; got {value!r}")
    return float(value)


def text_value(name: str, value: Any, accepted: str = "a str") -> str:
    """``value`` unless it is not a ``str`` (``TypeError`` naming ``name`` and saying it must be ``accepted``)."""
    if not isinstance(value, str):
        found = "None" if value is None else f"{type(value).__name__} {value!r:.60}"
        raise TypeError(f"{name} must be {accepted}; got {found}")
    return value


def path_text(name: str, value: Any, accepted: str = "a str or os.PathLike") -> str:
    """``value`` as the text of a path (a ``str``, or ``os.PathLike`` of one; may be empty), else ``TypeError``.

    For a widget's path field, which holds text.
    """
    if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str):
        found = "None" if value is None else f"{type(value).__name__} {value!r:.60}"
        raise TypeError(f"{name} must be {accepted}; got {found}")
    return os.fspath(value)


def path_value(name: str, value: Any) -> Path:
    """``value`` as a ``Path`` (``~`` expanded), or an error naming ``name``.

    A ``str`` or ``os.PathLike`` of text is accepted; anything else (None,
    a number, bytes) is a ``TypeError``, the empty path a ``ValueError``.
    """
    if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str):
        found = "None" if value is None else f"{type(value).__name__} {value!r:.80}"
        raise TypeError(f"{name} must be a path (str or os.PathLike); got {found}")
    if not os.fspath(value):
        raise ValueError(f"{name} must be a path; got ''")
    return Path(value).expanduser()


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists (``.`` ends a relative path)."""
    return next(candidate for candidate in (path, *path.parents) if candidate.exists())


def _can_create_in(name: str, path: Path, folder: Path) -> None:
    """``ValueError`` naming ``name`` unless a file can be created in ``folder`` now (an unnamed one: none is left)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"{name}: cannot write {os.fspath(path)!r}: creating a file in {os.fspath(folder)!r} fails "
                         f"({error.strerror})") from None


def writable_file(name: str, value: Any) -> Path:
    """``value`` as the ``Path`` of a file that can be written now, or an error naming ``name``.

    Not a folder; every existing part above it a folder; and a file can be
    created in the nearest existing one (missing folders are made by the
    write). Nothing is created. Errors: those of :func:`path_value`, else
    ``ValueError``.
    """
    path = path_value(name, value)
    if path.is_dir():
        raise ValueError(f"{name}: cannot write {os.fspath(path)!r}: it is a folder; give the path of a file")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise ValueError(f"{name}: cannot write {os.fspath(path)!r}: {os.fspath(folder)!r} is a file, not a folder")
    _can_create_in(name, path, folder)
    return path


def writable_folder(name: str, value: Any) -> Path:
    """``value`` as the ``Path`` of a folder that exists or can be made, and where files can be written now.

    Errors name ``name``: those of :func:`path_value`, else ``ValueError``
    (a file stands at the path or above it, or no file can be created).
    Nothing is created.
    """
    path = path_value(name, value)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ValueError(f"{name} {os.fspath(path)!r} cannot be a folder: {os.fspath(existing)!r} is a file")
    _can_create_in(name, path, existing)
    return path
