"""Typed results that outlive a session: saved with a format version, written atomically.

``TrainingHistory`` is JSON; :class:`Spectrum` and :class:`Landscape` are npz
files (read with ``allow_pickle=False``) whose entry ``meta.json`` holds the
format name, the version and the metadata as JSON text. A name given without
the ``.npz`` suffix (as the paper's ``save_spectrum_path`` is) gets it.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._atomic import atomic_path
from .linalg.densities import smooth_density, stem_density, trace_estimate
from .linalg.lanczos import LanczosResult

__all__ = ["TrainingHistory", "HISTORY_COLUMNS", "Spectrum", "Diagonal", "Landscape", "LANDSCAPE_METRICS",
           "ResultFileError", "load_result", "npz_path"]

PathLike = Union[str, os.PathLike]

HISTORY_FORMAT, HISTORY_VERSION = "curvwidgets.TrainingHistory", 1

HISTORY_COLUMNS = {
    "epoch": "epochs finished (1 for the first)",
    "lr": "learning rate of the first parameter group during the epoch",
    "train_loss": "mean training loss over the epoch's samples, as the weights changed (augmented data)",
    "train_top1": "fraction of the epoch's training samples classified correctly while training",
    "test_loss": "mean loss over the test (or validation) set after the epoch, eval mode",
    "test_top1": "fraction of test samples whose top class is right",
    "test_top5": "fraction of test samples whose label is among the top min(5, classes) classes",
    "seconds": "wall-clock seconds of the epoch's training (evaluation excluded)",
    "images_per_second": "training samples (all ranks) per second of the epoch",
    "peak_memory_bytes": "CUDA: peak allocated during the epoch; CPU: the process's peak resident size so far",
    "weight_l2": "L2 norm of all parameters after the epoch",
    "weight_linf": "largest absolute parameter value after the epoch",
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
    """

    rows: List[Dict[str, float]] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    final: Dict[str, float] = field(default_factory=dict)
    checkpoints: List[str] = field(default_factory=list)
    model: Optional[Any] = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> np.ndarray:
        """One column over the epochs, shape ``(len(self),)``."""
        if column not in HISTORY_COLUMNS:
            raise KeyError(f"column must be one of {tuple(HISTORY_COLUMNS)}; got {column!r}")
        return np.array([row[column] for row in self.rows], dtype=np.float64)

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (what :meth:`save` writes and checkpoints hold)."""
        return {"format": HISTORY_FORMAT, "version": HISTORY_VERSION, "rows": [dict(row) for row in self.rows],
                "config": self.config, "final": dict(self.final), "checkpoints": list(self.checkpoints)}

    @classmethod
    def from_dict(cls, content: Dict[str, Any]) -> "TrainingHistory":
        """The history of :meth:`to_dict`'s output; ``ValueError`` for another format or a newer version."""
        if not isinstance(content, dict) or content.get("format") != HISTORY_FORMAT:
            found = content.get("format") if isinstance(content, dict) else type(content).__name__
            raise ValueError(f"not a training history: format is {found!r}")
        if content.get("version", 0) > HISTORY_VERSION:
            raise ValueError(f"training history version {content['version']} is newer than this curvwidgets reads "
                             f"({HISTORY_VERSION})")
        return cls(rows=list(content["rows"]), config=dict(content["config"]), final=dict(content.get("final", {})),
                   checkpoints=list(content.get("checkpoints", [])))

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write JSON atomically (non-finite numbers as ``null``); returns the path."""
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
        source = Path(path).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"training history {os.fspath(source)!r} does not exist")
        try:
            return cls.from_dict(_none_to_nan(json.loads(source.read_text(encoding="utf-8"))))
        except (ValueError, KeyError, TypeError, AttributeError) as error:  # undecodable text and bad JSON included
            raise ResultFileError(f"{os.fspath(source)!r} is not a readable training history (the history.json "
                                  f"that curvwidgets writes): {type(error).__name__}: {error}") from None


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _none_to_nan(content: Dict[str, Any]) -> Dict[str, Any]:
    content["rows"] = [{key: (math.nan if item is None else item) for key, item in row.items()}
                       for row in content.get("rows", [])]
    return content


# ---- npz results -------------------------------------------------------------------------------------------


class ResultFileError(ValueError):
    """A results file that cannot be read: truncated, of a newer format version, or not one of ours."""


_META_ENTRY = "meta.json"


def npz_path(path: PathLike) -> Path:
    """``path`` with the ``.npz`` suffix added when it has none (``spectrum-00300-ggn_lanczos`` -> ``....npz``)."""
    path = Path(path).expanduser()
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _write_npz(path: PathLike, kind: str, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write ``arrays`` and the JSON header atomically to ``npz_path(path)``; returns that path."""
    target = npz_path(path)
    header = json.dumps(_finite_or_none({"format": kind, "version": version, "meta": dict(meta)}))
    with atomic_path(target) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **{_META_ENTRY: np.array(header)}, **arrays)
    return target


def _read_npz(path: PathLike, kind: str, version: int) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The arrays and metadata of a file written by :func:`_write_npz`, or a :class:`ResultFileError` naming it."""
    given = Path(path).expanduser()
    target = given if given.is_file() else npz_path(given)
    if not target.is_file():
        raise FileNotFoundError(f"{kind} file {os.fspath(given)!r} does not exist")
    where = os.fspath(target)
    try:
        with np.load(target, allow_pickle=False) as content:
            arrays = {name: content[name] for name in content.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as error:
        reason = "it holds pickled objects, which curvwidgets never loads" if "pickle" in str(error) \
            else f"{type(error).__name__}: {error}"
        raise ResultFileError(f"{where!r} is not a readable {kind} file (truncated, or not an npz written by "
                              f"curvwidgets): {reason}") from None
    if _META_ENTRY not in arrays:
        raise ResultFileError(f"{where!r} is an npz file but not a {kind} file of curvwidgets (no {_META_ENTRY} entry)")
    try:
        header = json.loads(str(arrays.pop(_META_ENTRY)))
    except json.JSONDecodeError as error:
        raise ResultFileError(f"{where!r}: its {_META_ENTRY} entry is not JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != kind:
        found = header.get("format") if isinstance(header, dict) else None
        raise ResultFileError(f"{where!r} holds a {found!r} result, not a {kind}")
    if not isinstance(header.get("version"), int) or header["version"] > version:
        raise ResultFileError(f"{where!r} is a {kind} file of format version {header.get('version')!r}, newer than "
                              f"this curvwidgets reads ({version}); update curvwidgets")
    return arrays, dict(header.get("meta", {}))  # non-finite numbers come back as None


def _require(arrays: Mapping[str, np.ndarray], names: Sequence[str], kind: str, path: PathLike) -> None:
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ResultFileError(f"{os.fspath(path)!r} is a {kind} file without the arrays {missing}: truncated or damaged")


@contextmanager
def _contents_of(path: PathLike, kind: str) -> Iterator[None]:
    """An error while rebuilding a result from its arrays and metadata, as a :class:`ResultFileError` naming ``path``."""
    try:
        yield
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise ResultFileError(f"{os.fspath(path)!r} is a {kind} file whose contents do not fit together (damaged, "
                              f"or written by other code): {type(error).__name__}: {error}") from None


def _spectrum_parts(arrays: Mapping[str, np.ndarray],
                    meta: Dict[str, Any]) -> Tuple[LanczosResult, Optional[np.ndarray]]:
    """The Lanczos run and Ritz vectors of a spectrum file; ``ValueError`` or ``KeyError`` when its parts disagree."""
    alpha, num_steps, vectors = arrays["alpha"], arrays["num_steps"].astype(np.int64), arrays.get("ritz_vectors")
    runs, steps = alpha.shape if alpha.ndim == 2 else (0, 0)
    dim = int(meta.pop("dim"))
    expected = {"alpha": (runs, steps), "beta": (runs, steps - 1), "residual_norm": (runs,), "num_steps": (runs,),
                **({} if vectors is None else {"ritz_vectors": (runs, steps, dim)})}
    found = {name: arrays[name].shape for name in expected}
    if runs == 0 or found != expected or not np.all((num_steps >= 1) & (num_steps <= steps)):
        raise ValueError(f"the arrays of the Lanczos run disagree: shapes {found}, num_steps {num_steps.tolist()}, "
                         f"dim {dim}")
    orthogonality = meta.pop("orthogonality")
    orthogonality = math.nan if orthogonality is None else float(orthogonality)
    run = LanczosResult(alpha=alpha, beta=arrays["beta"], residual_norm=arrays["residual_norm"], num_steps=num_steps,
                        dim=dim, orthogonality=orthogonality)
    return run, vectors


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
        ``seconds_per_step``, ``version`` (of curvwidgets), where known.
    """

    lanczos: LanczosResult
    ritz_vectors: Optional[np.ndarray] = field(default=None, repr=False)
    meta: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_lanczos(cls, result: LanczosResult, meta: Optional[Mapping[str, Any]] = None, save_vectors: bool = False,
                     vector_dtype: Any = np.float32) -> "Spectrum":
        """Wrap a Lanczos run; with ``save_vectors`` its Ritz vectors too (needs ``store_vectors=True``).

        Raises
        ------
        ValueError
            ``save_vectors`` for a run that kept no basis.
        """
        vectors = None
        if save_vectors:
            if result.ritz_vectors is None:
                raise ValueError("save_vectors needs a Lanczos run with store_vectors=True (it kept no basis)")
            vectors = result.ritz_vectors.detach().cpu().numpy().astype(vector_dtype)
        bare = replace(result, basis=None) if result.basis is not None else result
        return cls(bare, vectors, dict(meta or {}))

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

    def trace_estimate(self) -> float:
        """``P * sum_k w_k theta_k``, averaged over the start vectors: an estimate of ``tr(A)``."""
        return trace_estimate(self.lanczos)

    def negative_mass(self, below: float = 0.0) -> float:
        """Spectral mass (pooled Gauss weight) at Ritz values ``< below``.

        With ``below = 0`` this is the paper's negative spectral mass; a small
        negative ``below`` leaves out a node at about zero (the paper's
        37% at -0.0003 that drops to 0.05% without it).
        """
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
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.residual_estimates, nan=np.inf) <= tolerance

    def summary(self) -> Dict[str, float]:
        """The numbers a figure reports.

        ``lambda_max``, ``lambda_min`` (over all runs), ``negative_mass``,
        ``negative_mass_beyond_zero`` (mass below ``-ZERO_BAND * |lambda_max|``:
        the paper's figure with the node at about zero left out),
        ``trace_estimate``, ``steps``, ``num_vectors``, ``dim``, ``converged``
        (Ritz pairs with a small residual estimate).
        """
        extremes = self.extremes()
        top = float(extremes[:, 0].max())
        return {"lambda_max": top, "lambda_min": float(extremes[:, 1].min()),
                "negative_mass": self.negative_mass(),
                "negative_mass_beyond_zero": self.negative_mass(below=-ZERO_BAND * abs(top)),
                "trace_estimate": self.trace_estimate(),
                "steps": self.steps, "num_vectors": self.num_vectors, "dim": self.dim,
                "converged": int(self.converged().sum())}

    # ---- files ----------------------------------------------------------------------------------------------------

    def save(self, path: PathLike) -> Path:
        """Write an npz file atomically (``.npz`` added when missing); returns its path."""
        run = self.lanczos
        arrays = {"alpha": run.alpha, "beta": run.beta, "residual_norm": run.residual_norm,
                  "num_steps": run.num_steps, "ritz_values": run.ritz_values, "ritz_weights": run.ritz_weights,
                  "residual_estimates": run.residual_estimates}
        if self.ritz_vectors is not None:
            arrays["ritz_vectors"] = self.ritz_vectors
        meta = {**self.meta, "dim": run.dim, "orthogonality": run.orthogonality}
        return _write_npz(path, SPECTRUM_FORMAT, SPECTRUM_VERSION, arrays, meta)

    @classmethod
    def load(cls, path: PathLike) -> "Spectrum":
        """Read a file written by :meth:`save` (``.npz`` may be left out).

        Raises
        ------
        FileNotFoundError, ResultFileError
        """
        arrays, meta = _read_npz(path, SPECTRUM_FORMAT, SPECTRUM_VERSION)
        _require(arrays, ("alpha", "beta", "residual_norm", "num_steps"), SPECTRUM_FORMAT, path)
        with _contents_of(path, SPECTRUM_FORMAT):
            return cls(*_spectrum_parts(arrays, meta), meta)


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
        Hutchinson), model, checkpoint, data, seed, ...
    """

    values: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)

    def histogram(self, bins: Union[int, np.ndarray] = 100) -> Tuple[np.ndarray, np.ndarray]:
        """``(fractions, edges)``: the fraction of the entries in each bin (summing to 1), as the stems are."""
        counts, edges = np.histogram(self.values, bins=bins)
        return counts / self.values.size, edges

    def save(self, path: PathLike) -> Path:
        """Write an npz file atomically (``.npz`` added when missing); returns its path."""
        return _write_npz(path, DIAGONAL_FORMAT, DIAGONAL_VERSION, {"values": self.values}, self.meta)

    @classmethod
    def load(cls, path: PathLike) -> "Diagonal":
        """Read a file written by :meth:`save`."""
        arrays, meta = _read_npz(path, DIAGONAL_FORMAT, DIAGONAL_VERSION)
        _require(arrays, ("values",), DIAGONAL_FORMAT, path)
        return cls(arrays["values"], meta)


def load_result(path: PathLike) -> Union["Spectrum", Diagonal, "Landscape"]:
    """Whichever result a curvwidgets npz file holds (by the format named in it)."""
    kinds = {SPECTRUM_FORMAT: Spectrum, DIAGONAL_FORMAT: Diagonal, LANDSCAPE_FORMAT: Landscape}
    given = Path(path).expanduser()
    target = given if given.is_file() else npz_path(given)
    try:
        with np.load(target, allow_pickle=False) as content:
            kind = json.loads(str(content[_META_ENTRY])).get("format")
    except FileNotFoundError:
        raise FileNotFoundError(f"result file {os.fspath(given)!r} does not exist") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, AttributeError):
        raise ResultFileError(f"{os.fspath(target)!r} is not a readable curvwidgets result file") from None
    if kind not in kinds:
        raise ResultFileError(f"{os.fspath(target)!r} holds a {kind!r} result, not one of {sorted(kinds)}")
    return kinds[kind].load(target)


LANDSCAPE_FORMAT, LANDSCAPE_VERSION = "curvwidgets.Landscape", 1

#: What a landscape holds at every point (each an array over the points; NaN where not computed yet).
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
        How it was computed (model, checkpoint, data, bn, dist, spectrum file, ...).
    """

    offsets: np.ndarray
    labels: Tuple[str, ...]
    curvatures: np.ndarray
    kind: str
    values: Dict[str, np.ndarray]
    meta: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("line", "plane"):
            raise ValueError(f"kind must be 'line' or 'plane'; got {self.kind!r}")
        expected = ((len(self.labels), self.offsets.size) if self.kind == "line"
                    else (self.offsets.size, self.offsets.size))
        for name, array in self.values.items():
            if name not in LANDSCAPE_METRICS:
                raise ValueError(f"unknown landscape metric {name!r}; known: {tuple(LANDSCAPE_METRICS)}")
            if array.shape != expected:
                raise ValueError(f"{name} must have shape {expected}; got {array.shape}")

    def __getitem__(self, metric: str) -> np.ndarray:
        """The values of one metric (see :data:`LANDSCAPE_METRICS`)."""
        if metric not in self.values:
            raise KeyError(f"metric must be one of {tuple(self.values)}; got {metric!r}")
        return self.values[metric]

    @property
    def done(self) -> np.ndarray:
        """Boolean mask of the points computed so far (shape of a metric)."""
        return np.isfinite(next(iter(self.values.values())))

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
                  **{f"values/{name}": array for name, array in self.values.items()}}
        return _write_npz(path, LANDSCAPE_FORMAT, LANDSCAPE_VERSION, arrays, {**self.meta, "kind": self.kind})

    @classmethod
    def load(cls, path: PathLike) -> "Landscape":
        """Read a file written by :meth:`save` (``.npz`` may be left out)."""
        arrays, meta = _read_npz(path, LANDSCAPE_FORMAT, LANDSCAPE_VERSION)
        _require(arrays, ("offsets", "labels", "curvatures"), LANDSCAPE_FORMAT, path)
        values = {name.split("/", 1)[1]: array for name, array in arrays.items() if name.startswith("values/")}
        with _contents_of(path, LANDSCAPE_FORMAT):
            return cls(arrays["offsets"], tuple(str(label) for label in arrays["labels"]), arrays["curvatures"],
                       meta.pop("kind"), values, meta)
