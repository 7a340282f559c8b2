"""The paper's workflow end to end on the embedded data: ``curvwidgets demo`` (the README's first command).

Train a small model on the embedded ``digits``, take the Lanczos spectra of
the final checkpoint's Hessian and GGN (and the Monte Carlo Diag-GGN of
Figure 6), walk the loss along the Hessian's extreme eigenvectors and over
the plane of the top two, and write every result file and figure into one
folder, through the paper's own functions (:mod:`curvwidgets.api`). No
download; a few minutes at most on two CPU cores.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np

from ._validate import positive, positive_int
from .progress import ProgressCallback

__all__ = ["DemoSettings", "DemoSummary", "run_demo", "format_demo_summary", "parse_demo_summary"]

#: ``bar(description)`` -> a ``progress=`` callback (or None for no progress display).
BarFactory = Callable[[str], Optional[ProgressCallback]]


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; the defaults finish in about a minute on two cores."""

    model: str = "MLP"
    epochs: int = 10
    lr: float = 0.05
    steps: int = 20
    vectors: int = 4
    dist: float = 0.25
    n_points: int = 21
    plane_points: int = 9
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        positive_int("epochs", self.epochs)
        positive("lr", self.lr)
        positive_int("steps", self.steps)
        positive_int("vectors", self.vectors)
        positive("dist", self.dist)
        for name in ("n_points", "plane_points"):
            if positive_int(name, getattr(self, name)) < 3:
                raise ValueError(f"{name} must be >= 3 (points on both sides of t = 0); got {getattr(self, name)}")


@dataclass
class DemoSummary:
    """The demo's numbers and where its files are.

    ``spectra`` holds each matrix's :meth:`~curvwidgets.results.Spectrum.summary`;
    ``vectors`` the start vectors their standard errors rest on.
    """

    test_accuracy: float
    spectra: Dict[str, Dict[str, float]]
    vectors: int
    curvature_at_zero: float
    seconds: Dict[str, float]
    files: Dict[str, Path] = field(default_factory=dict)


def run_demo(out: Path, settings: DemoSettings = DemoSettings(), bar: BarFactory = lambda desc: None,
             echo: Callable[[str], None] = print) -> DemoSummary:
    """Train, spectra, landscapes and figures into ``out``; returns the summary.

    Files: ``run/`` (checkpoints, ``history.json``), ``spectra/spectrum-XXXXX-{hessian,ggn}_lanczos.npz``,
    ``spectra/spectrum-XXXXX-ggn_diag.npz``, ``losslandscape-XXXXX.npz``, ``losslandscape-plane-XXXXX.npz``,
    and the figures ``training.png``, ``spectrum.png``, ``landscape_loss.png``, ``landscape_accuracy.png``,
    ``landscape_plane.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import api
    from .training.models import canonical_name

    canonical_name(settings.model)  # an unknown name fails here, before a progress bar is drawn
    out = Path(out)
    run = out / "run"
    seconds: Dict[str, float] = {}
    began = time.perf_counter()
    history = api.train_network(run, dataset="digits", model=settings.model, epochs=settings.epochs,
                                optimizer_kwargs={"lr": settings.lr}, save_freq=None, seed=settings.seed,
                                device=settings.device, progress=bar("train"))
    seconds["training"] = time.perf_counter() - began
    checkpoint = Path(history.checkpoints[-1])
    epoch = f"{len(history):05d}"
    files = {"checkpoint": checkpoint, "training figure": out / "training.png"}
    api.plot_training(history, save_path=files["training figure"])
    echo(f"trained {settings.model} for {settings.epochs} epochs -> {checkpoint}")

    began = time.perf_counter()
    spectra = {}
    for matrix in ("hessian", "ggn"):
        files[f"{matrix} spectrum"] = out / "spectra" / f"spectrum-{epoch}-{matrix}_lanczos.npz"
        spectra[matrix] = api.compute_eigenspectrum(
            checkpoint_path=checkpoint, save_spectrum_path=files[f"{matrix} spectrum"], save_eigvec=matrix == "hessian",
            lanczos_iters=settings.steps, curvature_matrix=f"{matrix}_lanczos", num_vectors=settings.vectors,
            seed=settings.seed,
            device=settings.device, progress=bar(f"{matrix} Lanczos"))
    files["diagonal"] = out / "spectra" / f"spectrum-{epoch}-ggn_diag.npz"
    api.compute_eigenspectrum(checkpoint_path=checkpoint, save_spectrum_path=files["diagonal"],
                              curvature_matrix="ggn_diag", seed=settings.seed, device=settings.device)
    files["spectrum figure"] = out / "spectrum.png"
    api.plot_spectrum([files["hessian spectrum"], files["ggn spectrum"], files["diagonal"]],
                      save_path=files["spectrum figure"])
    seconds["spectra"] = time.perf_counter() - began
    echo(f"spectra -> {files['hessian spectrum'].parent}")

    began = time.perf_counter()
    files["landscape"] = out / f"losslandscape-{epoch}.npz"
    line = api.build_loss_landscape(
        dist=settings.dist, n_points=settings.n_points, spectrum_path=files["hessian spectrum"],
        checkpoint_path=checkpoint, save_path=files["landscape"], device=settings.device,
        progress=bar("landscape"))
    files["plane"] = out / f"losslandscape-plane-{epoch}.npz"
    api.build_loss_landscape(
        dist=settings.dist, n_points=settings.plane_points, spectrum_path=files["hessian spectrum"],
        checkpoint_path=checkpoint, save_path=files["plane"], largest=2, smallest=0, plane=True,
        device=settings.device, progress=bar("plane"))
    seconds["landscape"] = time.perf_counter() - began
    for metric in ("loss", "accuracy"):
        files[f"landscape {metric} figure"] = out / f"landscape_{metric}.png"
        api.plot_loss_landscape(files["landscape"], save_path=files[f"landscape {metric} figure"], metric=metric)
    files["plane figure"] = out / "landscape_plane.png"
    api.plot_loss_landscape(files["plane"], save_path=files["plane figure"])
    plt.close("all")
    echo(f"landscapes -> {files['landscape']}")

    top = int(np.nanargmax(line.curvatures))
    return DemoSummary(
        test_accuracy=float(history.rows[-1]["test_top1"]),
        spectra={matrix: spectrum.summary() for matrix, spectrum in spectra.items()}, vectors=settings.vectors,
        curvature_at_zero=float(line.curvature_at_zero()[top]),
        seconds=seconds, files=files)


#: The summary table's numbers: ``DemoSummary.spectra`` keys, in the order printed (each ``_se`` after ``±``).
_COLUMNS = ("lambda_max", "lambda_min", "negative_mass", "negative_mass_se", "negative_mass_beyond_zero",
            "trace_estimate", "trace_estimate_se")
_HEADER = (f"{'matrix':<8} {'lambda_1':>10} {'lambda_min':>11} {'negative mass':>15} {'beyond zero':>12} "
           f"{'trace estimate':>19}")


def _vectors_line(vectors: int) -> str:
    if vectors == 1:
        return "from 1 Lanczos start vector: no error bars (nan), and the trace is a single Hutchinson probe"
    return f"± one standard error over {vectors} Lanczos start vectors"


def format_demo_summary(summary: DemoSummary) -> str:
    """The summary as a few lines of text."""
    lines = [f"test accuracy {summary.test_accuracy:.3f}", _HEADER]
    for matrix, numbers in summary.spectra.items():
        lines.append(f"{matrix:<8} {numbers['lambda_max']:10.4g} {numbers['lambda_min']:11.4g} "
                     f"{numbers['negative_mass']:7.3f} ± {numbers['negative_mass_se']:5.3f} "
                     f"{numbers['negative_mass_beyond_zero']:12.3f} "
                     f"{numbers['trace_estimate']:9.4g} ± {numbers['trace_estimate_se']:<7.2g}".rstrip())
    lines.append(_vectors_line(summary.vectors))
    lambda_1 = summary.spectra["hessian"]["lambda_max"]
    lines.append(f"landscape curvature at t = 0 along the top Hessian eigenvector: {summary.curvature_at_zero:.4g} "
                 f"(lambda_1 = {lambda_1:.4g})")
    total = sum(summary.seconds.values())
    lines.append("time: " + ", ".join(f"{stage} {value:.0f} s" for stage, value in summary.seconds.items())
                 + f", total {total:.0f} s")
    return "\n".join(lines)


_NUMBER = r"-?(?:inf|nan|\d+(?:\.\d+)?(?:e[-+]\d+)?)"
_ACCURACY = re.compile(rf"test accuracy ({_NUMBER})")
_ROW = re.compile(rf"(\w+)((?: +(?:{_NUMBER}|±))+)")
_VECTORS = re.compile(r"(?:± one standard error over (\d+) Lanczos start vectors|from (1) Lanczos start vector: .*)")
_LANDSCAPE = re.compile(rf"landscape curvature at t = 0 along the top Hessian eigenvector: ({_NUMBER}) "
                        rf"\(lambda_1 = {_NUMBER}\)")
_TIME = re.compile(r"time: ((?:\w+ \d+ s, )+)total (\d+) s")
_STAGE = re.compile(r"(\w+) (\d+) s, ")


def parse_demo_summary(text: str) -> DemoSummary:
    """The numbers of a :func:`format_demo_summary` text (its inverse, to the digits printed).

    The text must be in the format exactly: formatting the numbers read
    gives every line back character for character, but for the total time
    (the rounded sum of the unrounded stage times), which need only be
    within their rounding of the printed stages' sum. ``files`` is empty.

    >>> text = "\\n".join(["test accuracy 0.958", _HEADER,
    ...     "hessian       18.55     -0.6033   0.999 ± 0.001        0.000     75.51 ± 3.2",
    ...     "± one standard error over 4 Lanczos start vectors",
    ...     "landscape curvature at t = 0 along the top Hessian eigenvector: 17.86 (lambda_1 = 18.55)",
    ...     "time: training 6 s, spectra 46 s, total 53 s"])
    >>> summary = parse_demo_summary(text)
    >>> summary.spectra["hessian"]["lambda_min"], summary.spectra["hessian"]["trace_estimate_se"], summary.vectors
    (-0.6033, 3.2, 4)

    Raises
    ------
    ValueError
        Naming a line of ``text`` that is not in the format.
    """
    lines = text.strip("\n").split("\n")
    if len(lines) < 6:
        raise ValueError(f"text: a demo summary has at least 6 lines (accuracy, header, one row per matrix, "
                         f"start vectors, landscape, time); got {len(lines)}")
    accuracy = _fullmatch(_ACCURACY, lines[0], 1)
    if lines[1] != _HEADER:
        raise ValueError(f"text: line 2 must be the table header {_HEADER!r}; got {lines[1]!r}")
    spectra = {}
    for number, line in enumerate(lines[2:-3], start=3):
        row = _fullmatch(_ROW, line, number)
        values = [token for token in row.group(2).split() if token != "±"]
        if len(values) != len(_COLUMNS):
            raise ValueError(f"text: line {number} must hold {len(_COLUMNS)} numbers; got {line!r}")
        spectra[row.group(1)] = dict(zip(_COLUMNS, map(float, values)))
    if len(spectra) < len(lines) - 5:
        raise ValueError(f"text: the table names a matrix twice: {[line.split()[0] for line in lines[2:-3]]}")
    if "hessian" not in spectra:
        raise ValueError(f"text: the table has no hessian row (the landscape line quotes its lambda_1); "
                         f"rows: {sorted(spectra)}")
    vectors = _fullmatch(_VECTORS, lines[-3], len(lines) - 2)
    landscape = _fullmatch(_LANDSCAPE, lines[-2], len(lines) - 1)
    timing = _fullmatch(_TIME, lines[-1], len(lines))
    seconds = {stage: float(value) for stage, value in _STAGE.findall(timing.group(1))}
    summary = DemoSummary(test_accuracy=float(accuracy.group(1)), spectra=spectra,
                          vectors=int(vectors.group(1) or vectors.group(2)),
                          curvature_at_zero=float(landscape.group(1)), seconds=seconds)
    total = int(timing.group(2))
    if abs(total - sum(seconds.values())) > (len(seconds) + 1) / 2:
        raise ValueError(f"text: line {len(lines)}: the total time is not the sum of the stages: {lines[-1]!r}")
    expected = format_demo_summary(summary).split("\n")
    expected[-1] = expected[-1].rsplit(", total ", 1)[0] + f", total {total} s"
    for number, (line, wanted) in enumerate(zip(lines, expected), start=1):
        if line != wanted:
            raise ValueError(f"text: line {number} is not as format_demo_summary prints its numbers: "
                             f"{line!r} instead of {wanted!r}")
    return summary


def _fullmatch(pattern: re.Pattern[str], line: str, number: int) -> re.Match[str]:
    """``pattern``'s match of the whole ``line``; a ValueError naming line ``number`` when it does not match."""
    match = pattern.fullmatch(line)
    if match is None:
        raise ValueError(f"text: line {number} does not match {pattern.pattern!r}: {line!r}")
    return match
