"""Typed results that outlive a session: saved with a format version, written atomically.

``TrainingHistory`` is JSON; :class:`Spectrum` and :class:`Landscape` are npz
files (read with ``allow_pickle=False``) whose entry ``meta.json`` holds the
format name, the version and the metadata as JSON text. A name given without
the ``.npz`` suffix (as the paper's ``save_spectrum_path`` is) gets it.

Metadata is made JSON-safe where a result is made (see :func:`json_safe_meta`),
so a value that cannot be saved is refused there, by its key, not at save time.
The readers check every array and metadata entry they use (type, shape, range,
agreement with each other) and raise :class:`ResultFileError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from ._atomic import atomic_path
from ._validate import boolean, finite, non_negative, path_value, positive_int, real_array, type_name
from .linalg.densities import density_spread, smooth_density, spectral_estimates, stem_density, trace_estimate
from .linalg.estimates import Estimate, format_with_error
from .linalg.lanczos import LanczosResult

__all__ = ["TrainingHistory", "HISTORY_COLUMNS", "MONITOR_COLUMNS", "MEASUREMENT_COLUMNS", "Spectrum", "Diagonal",
           "Landscape", "LANDSCAPE_METRICS",
           "Fingerprint", "ResultFileError", "load_result", "npz_path", "json_safe_meta"]

PathLike = Union[str, os.PathLike]

#: Version 2 added the monitor's ``measurements`` table and ``stability_threshold`` column; version 1 files still load.
HISTORY_FORMAT, HISTORY_VERSION = "curvwidgets.TrainingHistory", 2

HISTORY_COLUMNS = {
    "epoch": "epochs finished (1 for the first)",
    "lr": "learning rate of the first parameter group during the epoch",
    "train_loss": "mean training loss over the epoch's samples, as the weights changed (augmented data)",
    "train_top1": "fraction of the epoch's training targets (samples, or tokens of sequences; those of the loss's "
                  "ignore_index left out) classified correctly while training (NaN: no classes)",
    "test_loss": "mean loss over the test (or validation) set after the epoch, eval mode",
    "test_top1": "fraction of test targets (as train_top1) whose top class is right (NaN without class targets: "
                 "cw.ModelLoss, floating-point targets)",
    "test_top5": "fraction of test targets (as train_top1) whose label is among the top min(5, classes) classes",
    "seconds": "wall-clock seconds of the epoch's training (evaluation excluded)",
    "images_per_second": "training samples (all ranks) per second of the epoch",
    "peak_memory_bytes": "CUDA: peak allocated during the epoch; CPU: the process's peak resident size so far",
    "weight_l2": "L2 norm of all parameters after the epoch",
    "weight_linf": "largest absolute parameter value after the epoch",
}
#: The columns a :class:`~curvwidgets.training.monitor.CurvatureMonitor` adds (NaN in the epochs it does not measure;
#: ``sharpness_2`` ... for more than one eigenvalue). Absent from runs without one: reading them gives NaN.
MONITOR_COLUMNS = {
    "sharpness": "largest eigenvalue of the monitored matrix on the measurement subset",
    "gradient_overlap": "fraction ||V^T g||^2 / ||g||^2 of the subset's gradient in the top eigenvectors V",
    "curvature_trace": "Hutch++ estimate of the monitored matrix's trace (NaN unless trace_products > 0)",
    "curvature_trace_se": "its standard error",
    "curvature_products": "operator products the measurement took",
    "curvature_seconds": "wall-clock seconds of the measurement",
    "stability_threshold": "the sharpness above which the optimiser's step diverges on a quadratic: 2/lr, "
                           "(2+2 momentum)/lr for SGD with momentum (training/stability.py); NaN for adaptive optimisers",
}
#: The columns of ``TrainingHistory.measurements`` besides the monitor's: where in the run each measurement was taken.
MEASUREMENT_COLUMNS = {
    "step": "optimiser steps of the run done (from 1, across epochs) when it was measured",
    "epoch": "the fractional epoch: epochs finished plus the fraction of the current epoch's steps done "
             "(NaN until its epoch ends when the training loader has no length)",
    "lr": "learning rate of the first parameter group at the step just taken",
    "stability_threshold": "the optimiser's stability threshold at that step (as the monitor's column)",
}


@dataclass
class TrainingHistory:
    """Per-epoch statistics of a training run (see ``HISTORY_COLUMNS``).

    Attributes
    ----------
    rows : list of dict
        One dict per finished epoch, keys ``HISTORY_COLUMNS``, plain floats.
    config : dict
        How the run was set up (model, data, optimiser, schedule, seed, ...).
    final : dict
        End-of-run figures that are not per epoch, e.g. ``swa_test_loss``.
    checkpoints : list of str
        Checkpoint files written so far, oldest first.
    model : nn.Module, optional
        The trained model, when the history comes from :func:`~curvwidgets.train`
        in this session (not saved).
    measurements : list of dict
        One dict per curvature measurement of a
        :class:`~curvwidgets.CurvatureMonitor`, in order: ``MEASUREMENT_COLUMNS``
        (``step``, fractional ``epoch``, ``lr``) and the monitor's columns.
        Empty without a monitor. A cancelled run's history also holds those
        of the unfinished epoch.
    """

    rows: List[Dict[str, float]] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    final: Dict[str, float] = field(default_factory=dict)
    checkpoints: List[str] = field(default_factory=list)
    model: Optional[Any] = field(default=None, repr=False, compare=False)
    measurements: List[Dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_history_parts(self)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> np.ndarray:
        """One column over the epochs, shape ``(len(self),)``."""
        if not _is_column(column):
            raise KeyError(f"column must be one of {tuple(HISTORY_COLUMNS) + tuple(MONITOR_COLUMNS)}; got {column!r}")
        return np.array([row.get(column, np.nan) for row in self.rows], dtype=np.float64)

    def stability_thresholds(self, rows: Optional[List[Dict[str, float]]] = None) -> np.ndarray:
        """Per row of ``rows`` (default the epochs'), the optimiser's ``stability_threshold``, shape ``(len(rows),)``.

        ``2 / lr`` for a row without one (a history recorded before it was
        kept); NaN where the optimiser has none (adaptive) or the rate is 0.
        ``rows`` may be :attr:`measurements`.

        Examples
        --------
        >>> TrainingHistory(rows=[{"lr": 0.1}, {"lr": 0.1, "stability_threshold": 38.0}]).stability_thresholds()
        array([20., 38.])
        """
        def threshold(row: Dict[str, float]) -> float:
            if "stability_threshold" in row:
                return row["stability_threshold"]
            rate = row.get("lr", math.nan)
            return 2.0 / rate if rate > 0 else math.nan

        return np.array([threshold(row) for row in (self.rows if rows is None else rows)], dtype=np.float64)

    def measured(self, column: str) -> np.ndarray:
        """One column of :attr:`measurements`, shape ``(len(self.measurements),)`` (NaN where a row lacks it).

        ``column`` is one of ``MEASUREMENT_COLUMNS`` (``"step"``, ``"epoch"``,
        ``"lr"``), ``MONITOR_COLUMNS`` or ``sharpness_2``, ....

        Examples
        --------
        >>> history = TrainingHistory(measurements=[{"step": 5, "epoch": 0.5, "lr": 0.1, "sharpness": 3.0}])
        >>> history.measured("epoch"), history.measured("sharpness")
        (array([0.5]), array([3.]))
        """
        if not _is_measurement_column(column):
            raise KeyError(f"column must be one of {tuple(MEASUREMENT_COLUMNS) + tuple(MONITOR_COLUMNS)}; got "
                           f"{column!r}")
        return np.array([row.get(column, np.nan) for row in self.measurements], dtype=np.float64)

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (what :meth:`save` writes and checkpoints hold)."""
        return {"format": HISTORY_FORMAT, "version": HISTORY_VERSION, "rows": [dict(row) for row in self.rows],
                "config": self.config, "final": dict(self.final), "checkpoints": list(self.checkpoints),
                "measurements": [dict(row) for row in self.measurements]}

    @classmethod
    def from_dict(cls, content: Dict[str, Any]) -> "TrainingHistory":
        """The history of :meth:`to_dict`'s output (``null`` numbers, as :meth:`save` writes NaN, read as NaN).

        Raises
        ------
        ValueError
            Another format, a newer version, or a field of the wrong type or
            range: the message names the field (``rows[3]['lr']``, ``final``, ...).
        """
        if not isinstance(content, dict) or content.get("format") != HISTORY_FORMAT:
            found = content.get("format") if isinstance(content, dict) else type(content).__name__
            raise ValueError(f"not a training history: format is {found!r}")
        version = content.get("version")
        if not _is_int(version, 1):
            raise ValueError(f"version must be an int >= 1; got {version!r}")
        if version > HISTORY_VERSION:
            raise ValueError(f"training history version {version} is newer than this curvwidgets reads "
                             f"({HISTORY_VERSION})")
        rows = _numbered_rows(_json_field(content, "rows", list, []), "rows", "epoch", _is_column,
                              f"{tuple(HISTORY_COLUMNS)} (and the monitor's, MONITOR_COLUMNS)")
        checkpoints = _json_field(content, "checkpoints", list, [])
        if not all(isinstance(path, str) for path in checkpoints):
            raise ValueError(f"checkpoints must be a list of paths (str); got {checkpoints!r:.200}")
        return cls(rows=rows, config=dict(_json_field(content, "config", dict, None)),
                   final=_numbers(_json_field(content, "final", dict, {}), "final"), checkpoints=list(checkpoints),
                   measurements=_numbered_rows(_json_field(content, "measurements", list, []), "measurements",
                                               "step", _is_measurement_column,
                                               f"{tuple(MEASUREMENT_COLUMNS)} and MONITOR_COLUMNS"))

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write JSON atomically (non-finite numbers as ``null``); returns the path."""
        if path_value("path", path).is_dir():
            raise IsADirectoryError(f"cannot write {os.fspath(path)!r}: it is a folder; give a file's path (such as "
                                    "history.json)")
        _json_safe(self.config, "config")  # a value JSON cannot hold is named before anything is written
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(_finite_or_none(self.to_dict()), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "TrainingHistory":
        """Read a history written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            No such file.
        ResultFileError
            The file is not a history written by curvwidgets (a checkpoint, truncated JSON, another JSON
            document) or is of a newer format version; the message names it.
        """
        source = path_value("path", path)
        if not source.is_file():
            raise FileNotFoundError(f"training history {os.fspath(source)!r} does not exist")
        try:
            return cls.from_dict(json.loads(source.read_text(encoding="utf-8")))
        except ValueError as error:  # undecodable text and bad JSON included
            raise ResultFileError(f"{os.fspath(source)!r} is not a readable training history (the history.json "
                                  f"that curvwidgets writes): {error}") from None


def _numbered_rows(entries: List[Any], name: str, key: str, is_column: Callable[[str], bool],
                   columns: str) -> List[Dict[str, float]]:
    """A saved history's ``rows`` or ``measurements``, checked: dicts of numbers, ``key`` whole, >= 1 and increasing."""
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(map(is_column, entry)) or key not in entry:
            article = "an" if key[0] in "aeiou" else "a"
            raise ValueError(f"{name}[{number}] must be a dict with {article} {key!r} and columns of {columns}; "
                             f"got {entry!r:.200}")
    entries = [_numbers(entry, f"{name}[{number}]") for number, entry in enumerate(entries)]
    keys = [entry[key] for entry in entries]
    if not all(float(value).is_integer() and value >= 1 for value in keys) or \
            any(later <= earlier for earlier, later in zip(keys, keys[1:])):
        raise ValueError(f"the {name}' {key}s must be increasing whole numbers >= 1; got {keys}")
    return entries


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _json_field(content: Dict[str, Any], key: str, kind: type, default: Any) -> Any:
    """``content[key]``, checked to be of ``kind``; ``default`` when absent (``ValueError`` when None: required)."""
    if key not in content and default is not None:
        return default
    value = content.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{key} must be a JSON {'array' if kind is list else 'object'}; got {value!r:.120}")
    return value


def _numbers(entries: Dict[str, Any], where: str) -> Dict[str, float]:
    """``entries`` with every value a number (``null``, as non-finite numbers are saved, read as NaN)."""
    numbers = {}
    for key, value in entries.items():
        if value is None:
            value = math.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}[{key!r}] must be a number (or null for NaN); got {value!r:.80}")
        numbers[str(key)] = value
    return numbers


# ---- npz results -------------------------------------------------------------------------------------------


class ResultFileError(ValueError):
    """A results file that cannot be read: truncated, of a newer format version, or not one of ours."""


_JSON_SAFE = ("None, bool, int, float, str, a path, a single-number (0-d) array or tensor, or a list, tuple "
              "or str-keyed dict of these")


def _json_safe(value: Any, where: str) -> Any:
    """``value`` as plain JSON types (see :func:`json_safe_meta`); ``TypeError`` naming ``where`` otherwise."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):  # np.str_ included
        return str(value)
    if isinstance(value, float):  # np.float64 included
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if value.ndim != 0:
            raise TypeError(f"{where} must be {_JSON_SAFE}; got an array of shape {tuple(value.shape)} (give "
                            "value.tolist() to keep its numbers as a list)")
        return _json_safe(value.item(), where)
    if isinstance(value, np.generic):
        return _json_safe(value.item(), where)
    if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
        return os.fspath(value)
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{where} must have str keys; got the key {key!r} of type {type(key).__name__}")
        return {str(key): _json_safe(item, f"{where}[{str(key)!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise TypeError(f"{where} must be {_JSON_SAFE}; got {type(value).__name__} {value!r:.80}")


def json_safe_meta(meta: Any) -> Dict[str, Any]:
    """A copy of the metadata ``meta`` in plain JSON types, as results keep it.

    NumPy scalars and 0-d arrays or tensors become Python ``bool``/``int``/
    ``float``, paths ``str``, tuples lists; dicts and lists are converted
    entry by entry. Non-finite floats are kept (they are saved as ``null``
    and read back as ``None``).

    Raises
    ------
    TypeError
        ``meta`` is not a dict, or holds something else (an object, an array
        or tensor of several numbers, a set, bytes, a complex number, a
        non-str key); the message names its key path, e.g. ``meta['epoch']``.
    """
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict with str keys; got {type_name(meta)}")
    return _json_safe(meta, "meta")


_META_ENTRY = "meta.json"


def npz_path(path: PathLike) -> Path:
    """``path`` with the ``.npz`` suffix added when it has none (``spectrum-00300-ggn_lanczos`` -> ``....npz``)."""
    path = path_value("path", path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _write_npz(path: PathLike, kind: str, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write ``arrays`` and the JSON header atomically to ``npz_path(path)``; returns that path."""
    if path_value("path", path).is_dir():  # npz_path would write '<folder>.npz' beside it
        raise IsADirectoryError(f"cannot write {os.fspath(path)!r}: it is a folder; give a file's path (.npz is added "
                                "when missing)")
    target = npz_path(path)
    header = json.dumps(_finite_or_none({"format": kind, "version": version, "meta": dict(meta)}))
    with atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{_META_ENTRY: np.array(header)}, **arrays)
    return target


_DTYPE_KINDS = {"f": "of a floating-point dtype", "iu": "of an integer dtype", "U": "of text (a str dtype)",
                "b": "of booleans"}


def _is_int(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) ``>= minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass
class _FileContents:
    """The arrays and metadata of one results file, and checks that raise a :class:`ResultFileError` naming it."""

    where: str
    kind: str
    arrays: Dict[str, np.ndarray]
    meta: Dict[str, Any]
    version: int = 1

    def error(self, problem: str) -> ResultFileError:
        """The error for a file whose contents do not fit together."""
        return ResultFileError(f"{self.where!r} is a {self.kind} file whose contents do not fit together (damaged, "
                               f"or written by other code): {problem}")

    def check(self, holds: bool, problem: str) -> None:
        """Raise :meth:`error` of ``problem`` unless ``holds``."""
        if not holds:
            raise self.error(problem)

    def require(self, *names: str) -> None:
        """Raise unless the file holds all the arrays ``names``."""
        missing = [name for name in names if name not in self.arrays]
        if missing:
            raise ResultFileError(f"{self.where!r} is a {self.kind} file without the arrays {missing}: truncated or "
                                  "damaged")

    def array(self, name: str, dtype: str, shape: Tuple[Optional[int], ...]) -> np.ndarray:
        """The array ``name``, checked to be of a dtype kind in ``dtype`` (a key of ``_DTYPE_KINDS``) and of ``shape``.

        ``None`` in ``shape`` accepts any length along that axis.
        """
        array = self.arrays[name]
        self.check(array.dtype.kind in dtype, f"the array {name!r} must be {_DTYPE_KINDS[dtype]}; got {array.dtype}")
        fits = array.ndim == len(shape) and all(want in (None, got) for want, got in zip(shape, array.shape))
        lengths = ["any" if want is None else str(want) for want in shape]
        wanted = f"({lengths[0]},)" if len(shape) == 1 else f"({', '.join(lengths)})"
        self.check(fits, f"the array {name!r} must have shape {wanted}; got {array.shape}")
        return array

    def pop_meta(self, key: str, accepts: Callable[[Any], bool], accepted: str) -> Any:
        """Remove the metadata entry ``key`` and return it, checked by ``accepts`` (``accepted`` says what passes)."""
        self.check(key in self.meta, f"its metadata has no {key!r} entry")
        value = self.meta.pop(key)
        self.check(accepts(value), f"meta[{key!r}] must be {accepted}; got {value!r}")
        return value

    def fingerprint(self) -> None:
        """Raise unless the metadata's fingerprint, where there is one, is well formed."""
        try:
            Fingerprint.from_meta(self.meta)
        except ValueError as error:
            raise self.error(str(error)) from None

    def agrees(self, key: str, expected: Any, source: str) -> None:
        """Raise when the metadata has an entry ``key`` that differs from ``expected`` (what ``source`` says)."""
        if key in self.meta:
            self.check(self.meta[key] == expected, f"meta[{key!r}] is {self.meta[key]!r} but {source} is "
                                                   f"{expected!r}")


_UNREADABLE = (zipfile.BadZipFile, EOFError, OSError, ValueError)


def _unreadable(where: str, kind: str, error: Exception) -> ResultFileError:
    """The error for a file that ``np.load`` cannot read as an npz archive of arrays (no pickles)."""
    reason = "it holds pickled objects, which curvwidgets never loads" if "pickle" in str(error) \
        else f"{type(error).__name__}: {error}"
    return ResultFileError(f"{where!r} is not a readable {kind} file (truncated, or not an npz written by "
                           f"curvwidgets): {reason}")


@contextmanager
def _opened_npz(target: Path, kind: str) -> Iterator[np.lib.npyio.NpzFile]:
    """``np.load(target)`` of an npz archive (no pickles) for reading its entries in the block.

    An unreadable archive, a single ``.npy`` array or an entry that cannot be
    read (a pickled one) is a :class:`ResultFileError` naming ``target``.
    """
    where = os.fspath(target)
    try:
        content = np.load(target, allow_pickle=False)
    except _UNREADABLE as error:
        raise _unreadable(where, kind, error) from None
    if not isinstance(content, np.lib.npyio.NpzFile):
        raise ResultFileError(f"{where!r} is not a readable {kind} file: it holds a single .npy array, not the npz "
                              "archive that curvwidgets writes")
    with content:
        try:
            yield content
        except _UNREADABLE as error:
            raise _unreadable(where, kind, error) from None


def _header(entry: np.ndarray, where: str) -> Dict[str, Any]:
    """The JSON header of the ``meta.json`` entry: a dict, or a :class:`ResultFileError` naming ``where``."""
    if entry.dtype.kind != "U" or entry.ndim != 0:
        raise ResultFileError(f"{where!r}: its {_META_ENTRY} entry must be one text string; got an array of dtype "
                              f"{entry.dtype} and shape {entry.shape}")
    try:
        header = json.loads(str(entry))
    except json.JSONDecodeError as error:
        raise ResultFileError(f"{where!r}: its {_META_ENTRY} entry is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise ResultFileError(f"{where!r}: its {_META_ENTRY} entry must be a JSON object; got {type(header).__name__}")
    return header


def _target(path: PathLike) -> Path:
    """The file a reader opens: ``path`` itself when it is a file, else ``npz_path(path)``."""
    given = path_value("path", path)
    if given.is_dir() and (not given.name or not npz_path(given).is_file()):
        raise IsADirectoryError(f"{os.fspath(path)!r} is a folder; give the path of a results file (.npz)")
    return given if given.is_file() else npz_path(given)


def _read_npz(path: PathLike, kind: str, version: int) -> _FileContents:
    """The arrays and metadata of a file written by :func:`_write_npz`, or a :class:`ResultFileError` naming it."""
    target = _target(path)
    if not target.is_file():
        raise FileNotFoundError(f"{kind} file {os.fspath(path)!r} does not exist")
    where = os.fspath(target)
    with _opened_npz(target, kind) as content:
        arrays = {name: content[name] for name in content.files}
    if _META_ENTRY not in arrays:
        raise ResultFileError(f"{where!r} is an npz file but not a {kind} file of curvwidgets (no {_META_ENTRY} entry)")
    header = _header(arrays.pop(_META_ENTRY), where)
    if header.get("format") != kind:
        raise ResultFileError(f"{where!r} holds a {header.get('format')!r} result, not a {kind}")
    if not _is_int(header.get("version"), 1) or header["version"] > version:
        raise ResultFileError(f"{where!r} is a {kind} file of format version {header.get('version')!r}, newer than "
                              f"this curvwidgets reads ({version}); update curvwidgets")
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise ResultFileError(f"{where!r}: the 'meta' entry of its {_META_ENTRY} must be a JSON object; got "
                              f"{type(meta).__name__}")
    return _FileContents(where, kind, arrays, dict(meta), header["version"])  # non-finite numbers come back as None


def _spectrum_parts(contents: _FileContents) -> Tuple[LanczosResult, Optional[np.ndarray]]:
    """The Lanczos run and Ritz vectors of a spectrum file, every part checked against the others."""
    contents.require("alpha", "beta", "residual_norm", "num_steps")
    alpha = contents.array("alpha", "f", (None, None))
    runs, steps = alpha.shape
    contents.check(runs >= 1 and steps >= 1, f"the array 'alpha' must hold one step of one run at least; got shape "
                                             f"{alpha.shape}")
    beta = contents.array("beta", "f", (runs, steps - 1))
    residual_norm = contents.array("residual_norm", "f", (runs,))
    num_steps = contents.array("num_steps", "iu", (runs,))
    dim = contents.pop_meta("dim", lambda value: _is_int(value, 1), "an int >= 1 (the number of parameters)")
    orthogonality = contents.pop_meta("orthogonality", lambda value: value is None or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0), "a number >= 0, or null")
    contents.check(bool(np.all((num_steps >= 1) & (num_steps <= min(steps, dim)))),
                   f"the arrays of the Lanczos run disagree: num_steps must lie in [1, min(steps, dim)] = "
                   f"[1, {min(steps, dim)}]; got {num_steps.tolist()}")
    for run, count in enumerate(num_steps):
        contents.check(bool(np.all(np.isfinite(alpha[run, :count])) and np.all(np.isfinite(beta[run, :count - 1]))
                            and np.all(beta[run, :count - 1] >= 0)),
                       f"run {run}: alpha must be finite and beta finite and >= 0 over its num_steps = {count} steps")
    contents.check(bool(np.all(np.isfinite(residual_norm) & (residual_norm >= 0))),
                   f"residual_norm must be finite and >= 0; got {residual_norm.tolist()}")
    contents.agrees("num_vectors", runs, "the number of runs in the arrays")
    vectors = contents.array("ritz_vectors", "f", (runs, steps, dim)) if "ritz_vectors" in contents.arrays else None
    run = LanczosResult(alpha=alpha, beta=beta, residual_norm=residual_norm, num_steps=num_steps.astype(np.int64),
                        dim=dim, orthogonality=math.nan if orthogonality is None else float(orthogonality))
    return run, vectors


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Fingerprint:
    """Which weights a result was computed on: SHA-256 digests (64 hex digits each).

    Made by :func:`curvwidgets.fingerprint`; kept in a result's
    ``meta["weights_fingerprint"]`` as ``{"weights": ..., "selection": ...}``.

    Attributes
    ----------
    weights : str
        Of every parameter and buffer of the model: names, shapes and values
        (floating-point values as float64, so a float32 model and its float64
        copy agree, on any device).
    selection : str
        Of the names and shapes of the selected parameters, in the order of
        the flat vectors.
    """

    weights: str
    selection: str

    #: The key of a result's ``meta`` that holds :meth:`to_meta`.
    META_KEY = "weights_fingerprint"

    def __post_init__(self) -> None:
        for name in ("weights", "selection"):
            if not (isinstance(getattr(self, name), str) and _SHA256_HEX.fullmatch(getattr(self, name))):
                raise ValueError(f"{name} must be a SHA-256 digest of 64 lower-case hex digits; got "
                                 f"{getattr(self, name)!r:.80}")

    def to_meta(self) -> Dict[str, str]:
        """``{"weights": ..., "selection": ...}``, as a result's ``meta["weights_fingerprint"]``."""
        return {"weights": self.weights, "selection": self.selection}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Optional["Fingerprint"]:
        """The fingerprint ``meta`` records, or None for a result made without one (by an older version).

        Raises
        ------
        ValueError
            An entry that is not a dict of the two digests.
        """
        entry = meta.get(cls.META_KEY)
        if entry is None:
            return None
        if not isinstance(entry, Mapping) or set(entry) != {"weights", "selection"}:
            raise ValueError(f"meta[{cls.META_KEY!r}] must be a dict with the keys 'weights' and 'selection'; got "
                             f"{entry!r:.120}")
        return cls(entry["weights"], entry["selection"])

    def short(self) -> str:
        """The first 12 digits of each digest, for messages."""
        return f"weights {self.weights[:12]}…, selection {self.selection[:12]}…"


SPECTRUM_FORMAT, SPECTRUM_VERSION = "curvwidgets.Spectrum", 1
#: Ritz values within this fraction of |lambda_max| of zero count as zero in ``negative_mass_beyond_zero``.
ZERO_BAND = 1e-3


@dataclass(frozen=True, eq=False)
class Spectrum:
    """A Lanczos spectrum of a curvature matrix, with what it was computed from.

    Everything is derived from the tridiagonal matrices, so a saved and
    loaded spectrum gives bit-identical Ritz values, weights and densities.

    Attributes
    ----------
    lanczos : LanczosResult
        The run (without its basis): ``alpha``, ``beta``, ``residual_norm``,
        ``num_steps`` per start vector.
    ritz_vectors : ndarray, shape (num_vectors, steps, dim), or None
        Unit Ritz vectors as rows, ordered like ``ritz_values`` (NaN rows
        past a run's early stop), kept only when asked for (float32 by
        default): the only large part of a spectrum.
    meta : dict
        How it was computed: ``matrix`` (``"hessian"``/``"ggn"``), ``model``,
        ``checkpoint``, ``epoch``, ``data``, ``num_samples``, ``params``,
        ``bn_mode``, ``backend``, ``steps``, ``seed``, ``seconds``,
        ``seconds_per_step``, ``version`` (of curvwidgets), where known. Made
        JSON-safe by :func:`json_safe_meta` when the spectrum is made
        (``TypeError`` naming the key of a value it cannot keep).
    """

    lanczos: LanczosResult
    ritz_vectors: Optional[np.ndarray] = field(default=None, repr=False)
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_spectrum_parts(self.lanczos, self.ritz_vectors)
        object.__setattr__(self, "meta", json_safe_meta(self.meta))
        Fingerprint.from_meta(self.meta)  # a malformed one is refused here

    @property
    def fingerprint(self) -> Optional[Fingerprint]:
        """Of the weights and parameter selection the spectrum was computed on (None: not recorded)."""
        return Fingerprint.from_meta(self.meta)

    @classmethod
    def from_lanczos(cls, result: LanczosResult, meta: Optional[Mapping[str, Any]] = None, save_vectors: bool = False,
                     vector_dtype: Any = np.float32) -> "Spectrum":
        """Wrap a Lanczos run; with ``save_vectors`` its Ritz vectors too (needs ``store_vectors=True``).

        Raises
        ------
        ValueError
            ``save_vectors`` for a run that kept no basis.
        """
        if not isinstance(result, LanczosResult):
            raise TypeError(f"result must be a LanczosResult (of curvwidgets.lanczos); got {type_name(result)}")
        boolean("save_vectors", save_vectors)
        _float_dtype("vector_dtype", vector_dtype)
        vectors = None
        if save_vectors:
            if result.ritz_vectors is None:
                raise ValueError("save_vectors needs a Lanczos run with store_vectors=True (it kept no basis)")
            vectors = result.ritz_vectors.detach().cpu().numpy().astype(vector_dtype)
        bare = replace(result, basis=None) if result.basis is not None else result
        return cls(bare, vectors, {} if meta is None else meta)

    # ---- the run ------------------------------------------------------------------------------------------------

    @property
    def ritz_values(self) -> np.ndarray:
        """Ritz values per start vector, ascending, shape ``(num_vectors, steps)`` (NaN padding)."""
        return self.lanczos.ritz_values

    @property
    def ritz_weights(self) -> np.ndarray:
        """Gauss weights per start vector, shape ``(num_vectors, steps)``; rows sum to 1."""
        return self.lanczos.ritz_weights

    @property
    def residual_estimates(self) -> np.ndarray:
        """``||A y - theta y||`` estimate of each Ritz pair, shape ``(num_vectors, steps)``."""
        return self.lanczos.residual_estimates

    @property
    def num_vectors(self) -> int:
        return self.lanczos.num_vectors

    @property
    def steps(self) -> int:
        return self.lanczos.steps

    @property
    def dim(self) -> int:
        """Number of parameters ``P`` of the matrix."""
        return self.lanczos.dim

    def truncate(self, k: int) -> "Spectrum":
        """The spectrum after ``k`` steps (no Ritz vectors: those of the longer run do not apply)."""
        return Spectrum(self.lanczos.truncate(k), None, {**self.meta, "steps": k})

    # ---- densities and summary numbers --------------------------------------------------------------------------

    def stem(self) -> Tuple[np.ndarray, np.ndarray]:
        """The discrete density of eq. 8 pooled over start vectors: ``(nodes, weights)``, weights summing to 1."""
        return stem_density(self.lanczos)

    def smooth(self, grid: Optional[np.ndarray] = None, sigma: Optional[float] = None,
               num_points: int = 512) -> Tuple[np.ndarray, np.ndarray]:
        """Gaussian-broadened density ``(grid, density)``; see :func:`~curvwidgets.smooth_density`."""
        return smooth_density(self.lanczos, grid=grid, sigma=sigma, num_points=num_points)

    def smooth_spread(self, grid: Optional[np.ndarray] = None, sigma: Optional[float] = None,
                      num_points: int = 512) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(grid, density, standard_error)``: :meth:`smooth` and its standard error over the start vectors
        (:func:`~curvwidgets.linalg.densities.density_spread`; NaN from one vector)."""
        return density_spread(self.lanczos, grid=grid, sigma=sigma, num_points=num_points)

    def trace_estimate(self) -> float:
        """``P * sum_k w_k theta_k``, averaged over the start vectors: an estimate of ``tr(A)``."""
        return trace_estimate(self.lanczos)

    def estimates(self, below: float = 0.0) -> Dict[str, Estimate]:
        """The trace, moments and negative mass (``< below``) with standard errors over the start vectors.

        See :func:`~curvwidgets.linalg.spectral_estimates`: each start vector
        gives one estimate; with one vector the standard errors are NaN.
        """
        return spectral_estimates(self.lanczos, below=below)

    def negative_mass(self, below: float = 0.0) -> float:
        """Spectral mass (pooled Gauss weight) at Ritz values ``< below``.

        With ``below = 0`` this is the paper's negative spectral mass; a small
        negative ``below`` leaves out a node at about zero (the paper's
        37% at -0.0003 that drops to 0.05% without it).
        """
        below = finite("below", below)
        nodes, weights = self.stem()
        return float(weights[nodes < below].sum())

    def extremes(self) -> np.ndarray:
        """``(lambda_1, lambda_n)`` estimates per start vector: largest and smallest Ritz value, shape ``(num_vectors, 2)``."""
        return np.array([[self.lanczos.nodes(run).max(), self.lanczos.nodes(run).min()]
                         for run in range(self.num_vectors)])

    def converged(self, tolerance: Optional[float] = None) -> np.ndarray:
        """Which Ritz pairs have a residual estimate below ``tolerance`` (default ``1e-3 * max |theta|``).

        Shape ``(num_vectors, steps)``, False on padding.
        """
        if tolerance is None:
            tolerance = 1e-3 * float(np.nanmax(np.abs(self.ritz_values)))
        else:
            tolerance = non_negative("tolerance", tolerance)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.residual_estimates, nan=np.inf) <= tolerance

    def summary(self) -> Dict[str, float]:
        """The numbers a figure reports.

        ``lambda_max``, ``lambda_min`` (over all runs), ``negative_mass``,
        ``negative_mass_beyond_zero`` (mass below ``-ZERO_BAND * |lambda_max|``:
        the paper's figure with the node at about zero left out),
        ``trace_estimate``, ``steps``, ``num_vectors``, ``dim``, ``converged``
        (Ritz pairs with a small residual estimate), and the standard errors
        over the start vectors ``negative_mass_se``,
        ``negative_mass_beyond_zero_se`` and ``trace_estimate_se`` (NaN from
        one vector; see :meth:`estimates`).
        """
        extremes = self.extremes()
        top = float(extremes[:, 0].max())
        beyond = -ZERO_BAND * abs(top)
        errors = {"negative_mass_se": self.estimates()["negative_mass"].standard_error,
                  "negative_mass_beyond_zero_se": self.estimates(below=beyond)["negative_mass"].standard_error,
                  "trace_estimate_se": self.estimates()["trace"].standard_error}
        return {"lambda_max": top, "lambda_min": float(extremes[:, 1].min()),
                "negative_mass": self.negative_mass(),
                "negative_mass_beyond_zero": self.negative_mass(below=beyond),
                "trace_estimate": self.trace_estimate(),
                "steps": self.steps, "num_vectors": self.num_vectors, "dim": self.dim,
                "converged": int(self.converged().sum()), **errors}

    def describe(self) -> str:
        """:meth:`summary` as one line, estimates with their ``±`` one standard error and how many vectors they rest on."""
        numbers = self.summary()
        shown = [f"lambda_max {numbers['lambda_max']:.6g}", f"lambda_min {numbers['lambda_min']:.6g}"]
        vectors = self.num_vectors
        for key in ("negative_mass", "negative_mass_beyond_zero", "trace_estimate"):
            value = format_with_error(numbers[key], numbers[key + "_se"]) if vectors > 1 else f"{numbers[key]:.6g}"
            shown.append(f"{key} {value}")
        shown += [f"{key} {numbers[key]}" for key in ("steps", "num_vectors", "dim", "converged")]
        basis = (f"± one standard error over {vectors} start vectors" if vectors > 1 else
                 "from 1 start vector: no error bars, and its trace is a single Hutchinson probe; several start "
                 "vectors give both")
        return ", ".join(shown) + f" ({basis})"

    # ---- files ----------------------------------------------------------------------------------------------------

    def save(self, path: PathLike) -> Path:
        """Write an npz file atomically (``.npz`` added when missing); returns its path."""
        run = self.lanczos
        arrays = {"alpha": run.alpha, "beta": run.beta, "residual_norm": run.residual_norm,
                  "num_steps": run.num_steps, "ritz_values": run.ritz_values, "ritz_weights": run.ritz_weights,
                  "residual_estimates": run.residual_estimates}
        if self.ritz_vectors is not None:
            arrays["ritz_vectors"] = self.ritz_vectors
        meta = {**self.meta, "dim": int(run.dim), "orthogonality": float(run.orthogonality)}
        return _write_npz(path, SPECTRUM_FORMAT, SPECTRUM_VERSION, arrays, meta)

    @classmethod
    def load(cls, path: PathLike) -> "Spectrum":
        """Read a file written by :meth:`save` (``.npz`` may be left out).

        Raises
        ------
        FileNotFoundError, ResultFileError
        """
        contents = _read_npz(path, SPECTRUM_FORMAT, SPECTRUM_VERSION)
        parts = _spectrum_parts(contents)
        contents.fingerprint()
        return cls(*parts, contents.meta)


DIAGONAL_FORMAT, DIAGONAL_VERSION = "curvwidgets.Diagonal", 1


@dataclass(frozen=True, eq=False)
class Diagonal:
    """An estimate of the diagonal of a curvature matrix: the baseline the paper compares Lanczos with.

    Attributes
    ----------
    values : ndarray, shape (P,)
        The diagonal entries (float32 on disk).
    meta : dict
        ``matrix`` (``"ggn_diag"``: Monte Carlo Diag-GGN, ``"hessian_diag"``:
        Hutchinson), model, checkpoint, data, seed, ...; made JSON-safe as
        :class:`Spectrum` makes its ``meta``.
    standard_error : ndarray, shape (P,), or None
        Each entry's standard error over the estimate's own draws (the
        Hutchinson probes of ``"hessian_diag"``), finite and >= 0; None where
        it was not computed (``"ggn_diag"``) or for files written before it was kept.
    """

    values: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)
    standard_error: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        _check_diagonal_values(self.values)
        if self.standard_error is not None:
            _check_diagonal_errors(self.standard_error, self.values.shape)
        object.__setattr__(self, "meta", json_safe_meta(self.meta))

    def histogram(self, bins: Union[int, np.ndarray] = 100) -> Tuple[np.ndarray, np.ndarray]:
        """``(fractions, edges)``: the fraction of the entries in each bin (summing to 1), as the stems are."""
        counts, edges = np.histogram(self.values, bins=_histogram_bins(bins))
        return counts / self.values.size, edges

    def save(self, path: PathLike) -> Path:
        """Write an npz file atomically (``.npz`` added when missing); returns its path."""
        arrays = {"values": self.values}
        if self.standard_error is not None:
            arrays["standard_error"] = self.standard_error
        return _write_npz(path, DIAGONAL_FORMAT, DIAGONAL_VERSION, arrays, self.meta)

    @classmethod
    def load(cls, path: PathLike) -> "Diagonal":
        """Read a file written by :meth:`save` (``.npz`` may be left out).

        Raises
        ------
        FileNotFoundError, ResultFileError
            The latter also for values that are not a non-empty 1-D float array of finite numbers.
        """
        contents = _read_npz(path, DIAGONAL_FORMAT, DIAGONAL_VERSION)
        contents.require("values")
        values = contents.array("values", "f", (None,))
        contents.check(values.size >= 1 and bool(np.all(np.isfinite(values))),
                       f"the array 'values' must hold one finite number at least and no NaN or inf; got {values.size} "
                       f"values, {int(np.sum(~np.isfinite(values)))} not finite")
        error = None
        if "standard_error" in contents.arrays:
            error = contents.array("standard_error", "f", values.shape)
            contents.check(bool(np.all(np.isfinite(error) & (error >= 0))),
                           "the array 'standard_error' must hold finite numbers >= 0")
        return cls(values, contents.meta, error)


def load_result(path: PathLike) -> Union["Spectrum", Diagonal, "Landscape"]:
    """Whichever result a curvwidgets npz file holds (by the format named in it).

    Raises
    ------
    FileNotFoundError, ResultFileError
    """
    kinds = {SPECTRUM_FORMAT: Spectrum, DIAGONAL_FORMAT: Diagonal, LANDSCAPE_FORMAT: Landscape}
    target = _target(path)
    if not target.is_file():
        raise FileNotFoundError(f"result file {os.fspath(path)!r} does not exist")
    where = os.fspath(target)
    with _opened_npz(target, "curvwidgets result") as content:
        if _META_ENTRY not in content.files:
            raise ResultFileError(f"{where!r} is an npz file but not a curvwidgets result (no {_META_ENTRY} entry)")
        kind = _header(content[_META_ENTRY], where).get("format")
    if kind not in kinds:
        raise ResultFileError(f"{where!r} holds a {kind!r} result, not one of {sorted(kinds)}")
    return kinds[kind].load(target)


#: Version 2 added the ``computed`` mask; version 1 files read as computed wherever the first metric is finite.
LANDSCAPE_FORMAT, LANDSCAPE_VERSION = "curvwidgets.Landscape", 2

#: What a landscape holds at every point (each an array over the points; NaN where not computed yet).
#: The losses are NaN or infinite where the model diverges (see :attr:`Landscape.not_finite`).
LANDSCAPE_METRICS = {
    "train_loss": "mean loss over the training set (no augmentation)",
    "train_accuracy": "fraction of training samples classified correctly",
    "test_loss": "mean loss over the test set",
    "test_accuracy": "fraction of test samples classified correctly",
}


@dataclass(frozen=True, eq=False)
class Landscape:
    """Loss and accuracy at ``w + t v`` along directions ``v`` (a line each), or over a plane of two.

    Attributes
    ----------
    offsets : ndarray, shape (n_points,)
        The steps ``t``, from ``-dist`` to ``dist``, in units of the directions'
        lengths (unit vectors for eigenvectors and random directions).
    labels : tuple of str
        One per direction, e.g. ``"largest 1"`` or ``"random 2"``.
    curvatures : ndarray, shape (n_directions,)
        The Ritz value ``theta`` of each eigenvector direction, NaN for others.
    kind : {"line", "plane"}
        ``"line"``: every metric has shape ``(n_directions, n_points)``;
        ``"plane"``: two directions and shape ``(n_points, n_points)``, entry
        ``[i, j]`` at ``w + offsets[i] v_0 + offsets[j] v_1``.
    values : dict of str to ndarray
        The :data:`LANDSCAPE_METRICS` that were computed; NaN at points not
        computed yet (a partial result).
    meta : dict
        How it was computed (model, checkpoint, data, bn, dist, spectrum file,
        ``weights_fingerprint``, ...); made JSON-safe as :class:`Spectrum`
        makes its ``meta``. ``direction_options``, where present, holds one
        entry per direction: how a random direction was drawn and normalised
        (``{"kind": "random", "norm", "one_axis", "states", "seed",
        "number"}``, see :func:`curvwidgets.random_directions`), None for
        others; a file whose entry does not fit is refused when read.
    computed : ndarray of bool, shape of a metric, optional
        The points evaluated so far (default: all). A computed point may hold
        NaN or inf where the model's loss is not finite (see :attr:`not_finite`);
        a point not computed holds NaN in every metric.
    """

    offsets: np.ndarray
    labels: Tuple[str, ...]
    curvatures: np.ndarray
    kind: str
    values: Dict[str, np.ndarray]
    meta: Dict[str, Any] = field(default_factory=dict)
    computed: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        if self.kind not in ("line", "plane"):
            raise ValueError(f"kind must be 'line' or 'plane'; got {self.kind!r}")
        _check_landscape_types(self)
        expected = ((len(self.labels), self.offsets.size) if self.kind == "line"
                    else (self.offsets.size, self.offsets.size))
        for name, array in self.values.items():
            if name not in LANDSCAPE_METRICS:
                raise ValueError(f"unknown landscape metric {name!r}; known: {tuple(LANDSCAPE_METRICS)}")
            if array.shape != expected:
                raise ValueError(f"{name} must have shape {expected}; got {array.shape}")
        _check_landscape_values(self)
        object.__setattr__(self, "meta", json_safe_meta(self.meta))
        Fingerprint.from_meta(self.meta)  # a malformed one is refused here
        computed = np.ones(expected, dtype=bool) if self.computed is None else np.asarray(self.computed)
        if computed.dtype != bool or computed.shape != expected:
            raise ValueError(f"computed must be a bool array of shape {expected}; got dtype {computed.dtype} and shape "
                             f"{computed.shape}")
        for name, array in self.values.items():
            if not np.all(np.isnan(array[~computed])):
                raise ValueError(f"{name} must be NaN at the points not computed (computed False); "
                                 f"{int((~np.isnan(array[~computed])).sum())} are not")
        object.__setattr__(self, "computed", computed)

    def __getitem__(self, metric: str) -> np.ndarray:
        """The values of one metric (see :data:`LANDSCAPE_METRICS`)."""
        if metric not in self.values:
            raise KeyError(f"metric must be one of {tuple(self.values)}; got {metric!r}")
        return self.values[metric]

    @property
    def done(self) -> np.ndarray:
        """Boolean mask of the points computed so far, finite or not (shape of a metric): ``computed``."""
        return self.computed

    @property
    def not_finite(self) -> np.ndarray:
        """Boolean mask of the points computed whose loss (train or test) is NaN or infinite (the model diverges)."""
        losses = [array for name, array in self.values.items() if name.endswith("_loss")]
        return self.computed & ~np.logical_and.reduce([np.isfinite(array) for array in losses])

    def not_finite_note(self) -> str:
        """One line on where the loss is not finite, e.g. ``"... along 'largest 1' for t in [0.75, 1]"``; "" if nowhere."""
        mask = self.not_finite
        if not mask.any():
            return ""
        count = f"the loss is NaN or infinite at {int(mask.sum())} of {int(self.computed.sum())} points computed"
        if self.kind == "plane":
            rows, columns = np.nonzero(mask)
            return (f"{count} (the model diverges there): a in [{self.offsets[rows].min():.4g}, "
                    f"{self.offsets[rows].max():.4g}], b in [{self.offsets[columns].min():.4g}, "
                    f"{self.offsets[columns].max():.4g}]")
        where = [f"{label!r} for t in [{self.offsets[row].min():.4g}, {self.offsets[row].max():.4g}]"
                 for label, row in zip(self.labels, mask) if row.any()]
        return f"{count} (the model diverges there): along {'; '.join(where)}"

    @property
    def centre(self) -> int:
        """Index of ``t = 0`` in ``offsets`` (the nearest point when no offset is exactly 0)."""
        return int(np.argmin(np.abs(self.offsets)))

    def curvature_at_zero(self, metric: str = "train_loss") -> np.ndarray:
        """Second difference of ``metric`` at ``t = 0`` along each line, shape ``(n_directions,)``.

        ``(L(h) - 2 L(0) + L(-h)) / h^2`` with the neighbours of the centre:
        for a unit eigenvector of the same loss's Hessian it tends to its
        eigenvalue as ``h -> 0``, so it checks the spectrum against the surface.
        """
        if self.kind != "line":
            raise ValueError("curvature_at_zero is defined for a line landscape")
        c = self.centre
        if not 0 < c < self.offsets.size - 1:
            raise ValueError("curvature_at_zero needs points on both sides of t = 0")
        values = self[metric]
        h_left, h_right = self.offsets[c] - self.offsets[c - 1], self.offsets[c + 1] - self.offsets[c]
        slope_right = (values[:, c + 1] - values[:, c]) / h_right
        slope_left = (values[:, c] - values[:, c - 1]) / h_left
        return 2.0 * (slope_right - slope_left) / (h_left + h_right)

    def quadratic_model(self, metric: str = "train_loss") -> np.ndarray:
        """``L(0) + theta t^2 / 2`` along each line (NaN for directions without ``theta``), shape of a metric."""
        if self.kind != "line":
            raise ValueError("quadratic_model is defined for a line landscape")
        base = self[metric][:, self.centre]
        return base[:, None] + 0.5 * self.curvatures[:, None] * self.offsets[None, :] ** 2

    def save(self, path: PathLike) -> Path:
        """Write an npz file atomically (``.npz`` added when missing); returns its path."""
        arrays = {"offsets": self.offsets, "labels": np.array(self.labels, dtype=str), "curvatures": self.curvatures,
                  "computed": self.computed, **{f"values/{name}": array for name, array in self.values.items()}}
        return _write_npz(path, LANDSCAPE_FORMAT, LANDSCAPE_VERSION, arrays, {**self.meta, "kind": self.kind})

    @classmethod
    def load(cls, path: PathLike) -> "Landscape":
        """Read a file written by :meth:`save` (``.npz`` may be left out)."""
        contents = _read_npz(path, LANDSCAPE_FORMAT, LANDSCAPE_VERSION)
        contents.require("offsets", "labels", "curvatures")
        kind = contents.pop_meta("kind", lambda value: value in ("line", "plane"), "'line' or 'plane'")
        offsets = contents.array("offsets", "f", (None,))
        contents.check(offsets.size >= 1 and bool(np.all(np.isfinite(offsets))) and bool(np.all(np.diff(offsets) > 0)),
                       f"the array 'offsets' must hold finite, strictly increasing steps; got {offsets.tolist()}")
        labels = contents.array("labels", "U", (2,) if kind == "plane" else (None,))
        contents.check(labels.size >= 1, "the array 'labels' must name one direction at least")
        curvatures = contents.array("curvatures", "f", labels.shape)
        contents.check(not np.any(np.isinf(curvatures)), f"the array 'curvatures' must hold finite numbers or NaN; "
                                                         f"got {curvatures.tolist()}")
        contents.agrees("n_points", offsets.size, "the number of offsets")
        contents.agrees("directions", labels.tolist(), "the array 'labels'")
        options = contents.meta.get("direction_options", [None] * labels.size)
        contents.check(isinstance(options, list) and len(options) == labels.size
                       and all(entry is None or isinstance(entry, dict) for entry in options),
                       f"meta['direction_options'] must be a list of one dict (or null) per direction, "
                       f"{labels.size}; got {options!r:.80}")
        metrics = [name.split("/", 1)[1] for name in contents.arrays if name.startswith("values/")]
        unknown = sorted(set(metrics) - set(LANDSCAPE_METRICS))
        contents.check(bool(metrics) and not unknown, f"its values must be one or more of {tuple(LANDSCAPE_METRICS)}; "
                                                      f"got {metrics}")
        shape = (labels.size, offsets.size) if kind == "line" else (offsets.size, offsets.size)
        values = {name: contents.array(f"values/{name}", "f", shape) for name in metrics}
        if contents.version >= 2:
            contents.require("computed")
            computed = contents.array("computed", "b", shape)
        else:  # written before the mask: a point counts as computed where it is finite
            computed = np.isfinite(values[metrics[0]])
        for name in metrics:
            stray = ~computed & ~np.isnan(values[name])
            contents.check(not np.any(stray), f"{name} must be NaN at the points not computed; {int(stray.sum())} "
                                              "are not")
        for name in (name for name in metrics if name.endswith("accuracy")):
            outside = ~np.isnan(values[name]) & ~((values[name] >= 0) & (values[name] <= 1))
            contents.check(not np.any(outside), f"{name} must lie in [0, 1] (or be NaN: not computed, or no class "
                                                f"targets); {int(outside.sum())} values do not")
        contents.fingerprint()
        return cls(offsets, tuple(str(label) for label in labels), curvatures, kind, values, contents.meta, computed)


# ---- checks of the results' parts where they are made ----------------------------------------------------------


def _array_description(value: Any) -> str:
    """How a message names ``value``: an array by its dtype and shape, anything else by its type."""
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return type_name(value)


def _float_dtype(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` names a floating-point numpy dtype."""
    try:
        kind = np.dtype(value).kind
    except TypeError:
        kind = None
    if kind != "f":
        raise ValueError(f"{name} must be a floating-point dtype such as np.float32 or np.float64; got {value!r}")


def _check_spectrum_parts(lanczos: Any, ritz_vectors: Any) -> None:
    """The run of a :class:`Spectrum` and its Ritz vectors, checked against each other."""
    if not isinstance(lanczos, LanczosResult):
        raise TypeError(f"lanczos must be a LanczosResult (of curvwidgets.lanczos); got {type_name(lanczos)}")
    if ritz_vectors is None:
        return
    shape = (lanczos.num_vectors, lanczos.steps, lanczos.dim)
    if not isinstance(ritz_vectors, np.ndarray):
        raise TypeError(f"ritz_vectors must be None or a numpy array of shape {shape} (start vectors, steps, "
                        f"parameters); got {type_name(ritz_vectors)}")
    if ritz_vectors.dtype.kind != "f" or ritz_vectors.shape != shape:
        raise ValueError(f"ritz_vectors must be a floating-point array of shape {shape} (start vectors, steps, "
                         f"parameters); got {_array_description(ritz_vectors)}")


def _check_diagonal_values(values: Any) -> None:
    """The entries of a :class:`Diagonal`: a non-empty 1-D float array of finite numbers, as its file must hold."""
    if not isinstance(values, np.ndarray):
        raise TypeError(f"values must be a 1-D numpy array of floats (the diagonal entries); got {type_name(values)}")
    if values.dtype.kind != "f" or values.ndim != 1 or values.size < 1 or not np.all(np.isfinite(values)):
        found = _array_description(values)
        if values.dtype.kind == "f" and values.ndim == 1 and values.size:
            found += f" with {int(np.sum(~np.isfinite(values)))} entries NaN or inf"
        raise ValueError(f"values must be a non-empty 1-D floating-point array of finite numbers; got {found}")


def _check_diagonal_errors(errors: Any, shape: Tuple[int, ...]) -> None:
    """A :class:`Diagonal`'s ``standard_error``: a float array of the values' shape, finite and >= 0."""
    if not isinstance(errors, np.ndarray) or errors.dtype.kind != "f" or errors.shape != shape \
            or not np.all(np.isfinite(errors) & (errors >= 0)):
        found = _array_description(errors) if isinstance(errors, np.ndarray) else type_name(errors)
        raise ValueError(f"standard_error must be None or a floating-point array of shape {shape} (the values') of "
                         f"finite numbers >= 0; got {found}")


def _histogram_bins(bins: Any) -> Any:
    """``bins`` of :meth:`Diagonal.histogram`: an int >= 1, or at least two finite, increasing edges."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        return positive_int("bins", bins)
    edges = real_array("bins", bins)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise ValueError(f"bins must be an int >= 1 or at least two finite, increasing bin edges; got {bins!r:.80}")
    return edges


def _check_landscape_types(landscape: "Landscape") -> None:
    """The kinds of a :class:`Landscape`'s parts, before their shapes are compared; ``labels`` made a tuple."""
    if not isinstance(landscape.offsets, np.ndarray) or landscape.offsets.dtype.kind != "f" \
            or landscape.offsets.ndim != 1 or landscape.offsets.size < 1:
        raise TypeError(f"offsets must be a non-empty 1-D numpy array of floats (the steps t); got "
                        f"{_array_description(landscape.offsets)}")
    labels = landscape.labels
    if not isinstance(labels, (tuple, list)) or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"labels must be a tuple of str, one per direction; got {labels!r:.120}")
    object.__setattr__(landscape, "labels", tuple(labels))
    if not isinstance(landscape.curvatures, np.ndarray) or landscape.curvatures.dtype.kind != "f":
        raise TypeError(f"curvatures must be a numpy array of floats, one per direction (NaN where unknown); got "
                        f"{_array_description(landscape.curvatures)}")
    if not isinstance(landscape.values, Mapping) or not landscape.values:
        raise TypeError(f"values must be a dict of one or more of {tuple(LANDSCAPE_METRICS)} to arrays; got "
                        f"{landscape.values!r:.80}")
    for name, array in landscape.values.items():
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
            raise TypeError(f"values[{name!r}] must be a numpy array of floats (NaN where not computed); got "
                            f"{_array_description(array)}")


def _check_landscape_values(landscape: "Landscape") -> None:
    """What a :class:`Landscape`'s file must hold: increasing offsets, one curvature per label, accuracies in [0, 1]."""
    offsets, labels, curvatures = landscape.offsets, landscape.labels, landscape.curvatures
    if not (np.all(np.isfinite(offsets)) and np.all(np.diff(offsets) > 0)):
        raise ValueError(f"offsets must hold finite, strictly increasing steps; got {offsets.tolist()!r:.120}")
    if landscape.kind == "plane" and len(labels) != 2:
        raise ValueError(f"a plane has two directions: labels must hold 2; got {len(labels)}")
    if len(labels) < 1:
        raise ValueError("labels must name one direction at least; got ()")
    if curvatures.shape != (len(labels),) or np.any(np.isinf(curvatures)):
        raise ValueError(f"curvatures must hold one finite number (or NaN) per label, shape ({len(labels)},); got "
                         f"{curvatures.tolist()!r:.120}")
    for name, array in landscape.values.items():
        if name.endswith("accuracy"):
            outside = ~np.isnan(array) & ~((array >= 0) & (array <= 1))
            if np.any(outside):
                raise ValueError(f"values[{name!r}] must lie in [0, 1] (or be NaN); {int(outside.sum())} values do "
                                 "not")


#: The columns of a monitor's eigenvalues after the first: ``sharpness_2``, ..., ``sharpness_10``, ....
_MORE_EIGENVALUES = re.compile(r"sharpness_(?:[2-9]|[1-9]\d+)")


def _is_column(name: Any) -> bool:
    """Whether ``name`` is a history column: of ``HISTORY_COLUMNS``, ``MONITOR_COLUMNS`` or ``sharpness_2``, ...."""
    return name in HISTORY_COLUMNS or name in MONITOR_COLUMNS or bool(_MORE_EIGENVALUES.fullmatch(str(name)))


def _is_measurement_column(name: Any) -> bool:
    """Whether ``name`` is a column of ``TrainingHistory.measurements``: ``MEASUREMENT_COLUMNS`` or the monitor's."""
    return name in MEASUREMENT_COLUMNS or name in MONITOR_COLUMNS or bool(_MORE_EIGENVALUES.fullmatch(str(name)))


def _check_history_parts(history: "TrainingHistory") -> None:
    """The kinds of a :class:`TrainingHistory`'s fields: rows a list of dicts, config and final dicts, paths a list."""
    if not isinstance(history.rows, list) or not all(isinstance(row, dict) for row in history.rows):
        found = type_name(history.rows) if not isinstance(history.rows, list) else "a list holding " + ", ".join(
            sorted({type_name(row) for row in history.rows if not isinstance(row, dict)}))
        raise TypeError(f"rows must be a list of dicts, one per epoch; got {found}")
    for name in ("config", "final"):
        if not isinstance(getattr(history, name), dict):
            raise TypeError(f"{name} must be a dict; got {type_name(getattr(history, name))}")
    if not isinstance(history.checkpoints, list):
        raise TypeError(f"checkpoints must be a list of paths; got {type_name(history.checkpoints)}")
    if not isinstance(history.measurements, list) or not all(isinstance(row, dict) for row in history.measurements):
        raise TypeError(f"measurements must be a list of dicts, one per curvature measurement; got "
                        f"{type_name(history.measurements)}")
