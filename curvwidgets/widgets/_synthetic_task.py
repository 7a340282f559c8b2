"""What :class:`~curvwidgets.widgets.SyntheticSpectrumWidget` computes: a synthetic matrix, Lanczos, and references.

The task only calls the package's core (``cw.synthetic``, ``cw.lanczos``, the
exact eigenvalues of :func:`curvwidgets.synthetic_demo.exact_eigenvalues`); every progress
event carries a :class:`SyntheticRun` snapshot, so a view draws any event the
same way, and a cancelled run's ``Cancelled.result`` is a valid snapshot too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np

from .. import synthetic
from .._validate import choice, positive
from ..synthetic_demo import exact_eigenvalues
from ..linalg import LanczosResult, lanczos
from ..progress import Cancelled, CancelToken, ProgressCallback, ProgressEvent, report

__all__ = ["ENSEMBLES", "SyntheticSettings", "SyntheticRun", "parse_eigenvalues", "run_synthetic"]

ENSEMBLES = {
    "wigner": "Wigner",
    "marchenko-pastur": "Marchenko-Pastur",
    "typed": "typed spectrum",
    "section53": "section 5.3",
}


def parse_eigenvalues(text: str) -> np.ndarray:
    """Eigenvalues typed as comma-separated numbers, e.g. ``"0, 0, 1.5, 10"``; shape ``(P,)``.

    Raises
    ------
    ValueError
        Empty text, or an entry that is not a number (named in the message).
    """
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        raise ValueError("eigenvalues must be comma-separated numbers, e.g. '0, 1, 2.5'; got an empty text")
    values = []
    for entry in entries:
        try:
            values.append(float(entry))
        except ValueError:
            raise ValueError(f"eigenvalues must be comma-separated numbers; {entry!r} is not a number") from None
    return np.array(values)


@dataclass(frozen=True)
class SyntheticSettings:
    """One synthetic experiment, as read from the widget's controls.

    Attributes
    ----------
    ensemble : {"wigner", "marchenko-pastur", "typed", "section53"}
    P : int
        Matrix size (ignored by "typed", whose size is the number of values,
        and by "section53", which is 1000).
    ratio : float
        ``T / P`` of the Marchenko-Pastur ensemble (Figures 2 and 3 use 2 and 0.5).
    eigenvalues : str
        The typed spectrum, comma-separated.
    steps, num_vectors, seed : int
        Lanczos steps ``m``, start vectors, seed (of the matrix and the start vectors).
    """

    ensemble: str = "wigner"
    P: int = 225
    ratio: float = 2.0
    eigenvalues: str = ""
    steps: int = 30
    num_vectors: int = 1
    seed: int = 0

    def matrix(self) -> np.ndarray:
        """The symmetric matrix, shape ``(P, P)``, float64."""
        choice("ensemble", self.ensemble, tuple(ENSEMBLES))
        if self.ensemble == "wigner":
            return synthetic.wigner(self.P, seed=self.seed)
        if self.ensemble == "marchenko-pastur":
            return synthetic.marchenko_pastur(self.P, self.samples, seed=self.seed)
        if self.ensemble == "typed":
            return synthetic.with_spectrum(parse_eigenvalues(self.eigenvalues), seed=self.seed)
        return synthetic.section53_matrix(seed=self.seed)

    @property
    def samples(self) -> int:
        """``T = round(ratio * P)`` of the Marchenko-Pastur ensemble (at least 1)."""
        return max(1, round(positive("ratio", self.ratio) * self.P))

    def limiting_density(self, num_points: int = 400) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """``(grid, pdf)`` of the limiting law over its support, or None where no closed form exists.

        The semicircle on ``[-2, 2]`` for Wigner; the continuous part of the
        Marchenko-Pastur law with ``q = P / T`` for Marchenko-Pastur.
        """
        if self.ensemble == "wigner":
            grid = np.linspace(-2.0, 2.0, num_points)
            return grid, synthetic.semicircle_pdf(grid)
        if self.ensemble == "marchenko-pastur":
            q = self.P / self.samples
            grid = np.linspace((1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2, num_points)
            return grid, synthetic.marchenko_pastur_pdf(grid, q)
        return None

    def caption(self, dim: int) -> str:
        """Figure title, e.g. ``"Marchenko-Pastur, P = 225, T = 450 (atom 0 at 0)"``."""
        text = f"{ENSEMBLES.get(self.ensemble, self.ensemble)}, P = {dim}"
        if self.ensemble == "marchenko-pastur":
            atom = synthetic.marchenko_pastur_atom(self.P / self.samples)
            text += f", T = {self.samples}" + (f" (mass {atom:.2g} at 0)" if atom > 0 else "")
        return text


@dataclass(frozen=True, eq=False)
class SyntheticRun:
    """A synthetic experiment so far: what the widget draws.

    Attributes
    ----------
    settings : SyntheticSettings
    dim : int
        Matrix size ``P``.
    diagonal : ndarray, shape (P,)
        The diagonal baseline (:func:`curvwidgets.synthetic.diagonal_approximation`).
    lanczos : LanczosResult or None
        The Lanczos run so far (None before its first step).
    eigenvalues : ndarray, shape (P,), or None
        Exact eigenvalues, ascending; None until computed (last, as they cost ``O(P^3)``).
    limiting_density : (grid, pdf) or None
        See :meth:`SyntheticSettings.limiting_density`.
    """

    settings: SyntheticSettings
    dim: int
    diagonal: np.ndarray
    lanczos: Optional[LanczosResult] = None
    eigenvalues: Optional[np.ndarray] = None
    limiting_density: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def caption(self) -> str:
        """Figure title."""
        return self.settings.caption(self.dim)


def run_synthetic(settings: SyntheticSettings, progress: ProgressCallback, cancel: CancelToken) -> SyntheticRun:
    """Build the matrix, run Lanczos, then take the exact eigenvalues; report progress throughout.

    Stages: ``"matrix"`` (1 step), ``"lanczos"`` (``steps`` steps, the
    events of :func:`curvwidgets.lanczos`), ``"eigenvalues"`` (0 then 1). Each
    event's ``partial`` is the :class:`SyntheticRun` so far.

    Raises
    ------
    ValueError
        Bad settings (from the core function that receives them).
    Cancelled
        When ``cancel`` is set; ``.result`` is the :class:`SyntheticRun` so far.
        The eigendecomposition itself cannot be interrupted: a cancel during it
        takes effect when it ends.
    """
    matrix = settings.matrix()
    run = SyntheticRun(settings, matrix.shape[0], synthetic.diagonal_approximation(matrix),
                       limiting_density=settings.limiting_density())
    report(progress, cancel, "matrix", 1, 1, partial=lambda: run)

    def lanczos_progress(event: ProgressEvent) -> None:
        progress(replace(event, partial=replace(run, lanczos=event.partial)))

    try:
        result = lanczos(matrix, settings.steps, settings.num_vectors, seed=settings.seed,
                         progress=lanczos_progress, cancel=cancel)
    except Cancelled as stop:
        raise Cancelled(replace(run, lanczos=stop.result), stop.step, stop.stage) from None
    run = replace(run, lanczos=result)
    report(progress, cancel, "eigenvalues", 0, 1, partial=lambda: run)
    run = replace(run, eigenvalues=exact_eigenvalues(matrix))
    report(progress, None, "eigenvalues", 1, 1, partial=lambda: run)
    return run
