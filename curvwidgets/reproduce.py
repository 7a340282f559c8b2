"""Run every notebook through papermill with a preset: ``curvwidgets reproduce --preset small|paper --out DIR``.

Each notebook's ``parameters`` cell holds the paper's setting; the ``small``
preset overrides it with sizes that run on a CPU in minutes (the embedded
``digits`` data, a small model, few epochs and Lanczos steps). Notebooks run
with ``DIR`` as their working folder, so the CIFAR notebooks chain through
the files they write there (``result/...``): the first trains, the next
reuse the checkpoint and the spectrum files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["NOTEBOOKS", "PRESETS", "NotebookRun", "run_notebooks", "format_runs", "notebook_folder"]

#: The notebooks in the order they run (later CIFAR notebooks reuse earlier ones' files).
NOTEBOOKS = ("00_quickstart", "01_lanczos_vs_power", "02_lanczos_myths", "03_wigner", "04_marchenko_pastur",
             "05_diagonal_approximation", "06_synthetic_spectrum", "07_vgg16_cifar100_spectrum",
             "08_vgg16_cifar100_landscape", "09_vgg16_cifar10", "10_dashboard", "11_transformer",
             "12_edge_of_stability")

_SMALL_NETWORK = {"dataset": "digits", "model": "MLP", "epochs": 8, "lr": 0.05, "lanczos_iters": 20, "device": "cpu"}

#: Parameter overrides per preset and notebook (``paper`` keeps every notebook's own defaults).
PRESETS: Dict[str, Dict[str, Dict[str, object]]] = {
    "paper": {},
    "small": {
        "00_quickstart": {**_SMALL_NETWORK, "run_dir": "result/quickstart-digits", "n_points": 11},
        "03_wigner": {"P_large": 1000},
        "04_marchenko_pastur": {"P_large": 1000},
        "07_vgg16_cifar100_spectrum": {**_SMALL_NETWORK, "run_dir": "result/MLP-digits"},
        "08_vgg16_cifar100_landscape": {**_SMALL_NETWORK, "run_dir": "result/MLP-digits", "n_points": 11},
        "09_vgg16_cifar10": {**_SMALL_NETWORK, "run_dir": "result/MLP-digits-b", "n_points": 11, "seed": 1},
        "12_edge_of_stability": {"num_samples": 500, "width": 50, "etas": [0.4, 0.25], "steps": 600, "every": 10,
                                 "tol": 1e-2, "momentum_eta": 0.38},
    },
}


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: where it went, how long it took, and the error if it failed."""

    name: str
    output: Path
    seconds: float
    error: Optional[str] = None


def notebook_folder() -> Path:
    """The repository's ``notebooks/`` folder (where the notebooks live beside the package)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def run_notebooks(out: Path, preset: str = "small", names: Optional[Sequence[str]] = None,
                  source: Optional[Path] = None, kernel: str = "python3") -> List[NotebookRun]:
    """Execute ``names`` (default: all of :data:`NOTEBOOKS`) with the ``preset``'s parameters into ``out``.

    Raises
    ------
    ValueError
        An unknown preset or notebook name.
    FileNotFoundError
        The notebooks folder is missing (an installed package without its repository).
    """
    import papermill

    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}; got {preset!r}")
    names = list(names or NOTEBOOKS)
    unknown = [name for name in names if name.removesuffix(".ipynb") not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; known: {', '.join(NOTEBOOKS)}")
    source = Path(source) if source is not None else notebook_folder()
    if not source.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {source}: run reproduce from a clone of the repository")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in (name.removesuffix(".ipynb") for name in names):
        output = out / f"{name}.ipynb"
        began = time.perf_counter()
        error = None
        try:
            papermill.execute_notebook(str(source / f"{name}.ipynb"), str(output),
                                       parameters=PRESETS[preset].get(name, {}), cwd=str(out), kernel_name=kernel,
                                       progress_bar=False)
        except papermill.PapermillExecutionError as failure:
            error = f"{failure.ename}: {failure.evalue}"
        runs.append(NotebookRun(name, output, time.perf_counter() - began, error))
        print(f"{name}: {'failed' if error else 'done'} in {runs[-1].seconds:.0f} s -> {output}", flush=True)
    return runs


def format_runs(runs: Sequence[NotebookRun]) -> str:
    """Which notebooks ran, how long each took and where the outputs are."""
    lines = [f"{'notebook':<30} {'seconds':>8}  result"]
    for run in runs:
        lines.append(f"{run.name:<30} {run.seconds:8.0f}  {'FAILED: ' + run.error if run.error else run.output}")
    return "\n".join(lines)
