#!/usr/bin/env python
"""Resident memory of the Jupyter kernel behind the Binder app and behind each notebook at its defaults.

Binder gives a session about 2 GB; the budget here is 1 GiB of resident memory
for the kernel, the process that holds torch, the data and every result.
Every figure is read from ``/proc/<pid>/status`` of a real ``python3`` kernel
(ipykernel, the one Voila and JupyterLab start):

* ``VmRSS`` (resident now) and ``VmHWM`` (its peak since the kernel started),
* ``RssAnon`` (resident memory that is not a mapped file: the heap, tensors,
  thread stacks) now, and its peak sampled every 50 ms. The rest is mostly
  torch's shared libraries, whose resident part depends on the torch build
  (a CUDA build maps far more than the CPU wheels Binder installs).

Two sections:

1. **app**: ``app/dashboard.ipynb`` executed in a kernel (what Voila does when
   a visitor opens it), then driven stage by stage through the widgets'
   blocking APIs, as a visitor's clicks would: Train (3 epochs), the spectrum
   of the last checkpoint, the landscape along its eigenvectors, the spectra
   of the other checkpoints. ``--threads`` repeats it with
   ``torch.set_num_threads(n)`` set after the app's own cells (``app`` alone:
   the app's own setting).
2. **notebooks**: each notebook through papermill at its own default
   parameters (the paper's sizes), one fresh kernel each; ``10_dashboard`` also
   with ``compute_now=True`` (every widget computes while the notebook runs).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_memory.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_memory.py --sections app --threads app,2
    PYTHONPATH=. .venv/bin/python benchmarks/bench_memory.py --sections notebooks --notebooks 03_wigner
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import psutil

from curvwidgets._machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app" / "dashboard.ipynb"
NOTEBOOKS = REPO / "notebooks"
BUDGET_MIB = 1024
SAMPLE_S = 0.05
STAGE_TIMEOUT_S = 1800
#: the notebooks measured, each with the parameter overrides of its row (none: its own defaults)
NOTEBOOK_RUNS: Tuple[Tuple[str, Dict[str, object]], ...] = (
    ("01_lanczos_vs_power", {}), ("02_lanczos_myths", {}), ("03_wigner", {}), ("04_marchenko_pastur", {}),
    ("05_diagonal_approximation", {}), ("06_synthetic_spectrum", {}), ("10_dashboard", {}),
    ("10_dashboard", {"compute_now": True}),
)
#: the app's stages after start-up: (name, code run in the kernel), as a visitor's clicks would run them
APP_STAGES: Tuple[Tuple[str, str], ...] = (
    ("trained 3 epochs", "dashboard.training.run(block=True)"),
    ("spectrum of the last checkpoint", "dashboard.show_checkpoint(dashboard.checkpoints[-1], block=True)"),
    ("landscape along its eigenvectors", "dashboard.landscape.run(block=True)"),
    ("spectra of every checkpoint",
     "for path in dashboard.checkpoints:\n    dashboard.show_checkpoint(path, block=True)"),
)


@dataclass(frozen=True)
class Memory:
    """One reading of a process's memory, in MiB."""

    rss: float
    hwm: float
    anon: float

    @classmethod
    def of(cls, pid: int) -> "Memory":
        """Read ``/proc/<pid>/status``."""
        fields = {}
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon"):
                    fields[name] = int(value.split()[0]) / 1024   # kB
        return cls(rss=fields["VmRSS"], hwm=fields["VmHWM"], anon=fields["RssAnon"])


class PeakSampler:
    """Follows a process's memory in a background thread: the last reading and the peak of ``RssAnon``.

    ``find_pid`` is asked for the process at each sample (None while there is
    none yet); a process that has exited keeps its last reading, so the peak
    of a kernel that papermill has already shut down is still known.
    """

    def __init__(self, find_pid: Callable[[], Optional[int]]):
        self._find_pid = find_pid
        self.last: Optional[Memory] = None
        self.peak_anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> Optional[Memory]:
        """Take one reading now (None when there is no process to read)."""
        pid = self._find_pid()
        try:
            reading = Memory.of(pid) if pid is not None else None
        except (FileNotFoundError, ProcessLookupError, KeyError):   # exited between the lookup and the read
            reading = None
        if reading is not None:
            self.last = reading
            self.peak_anon = max(self.peak_anon, reading.anon)
        return reading

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()


@dataclass(frozen=True)
class Row:
    """One line of the table: what ran, how long it took, and the kernel's memory after it."""

    section: str
    name: str
    seconds: float
    rss: float
    hwm: float
    anon: float
    peak_anon: float

    @classmethod
    def after(cls, section: str, name: str, seconds: float, sampler: PeakSampler) -> "Row":
        """The row of a stage that took ``seconds``: a reading now, or the last one if the process has exited."""
        last = sampler.sample() or sampler.last
        if last is None:
            raise RuntimeError(f"{section} {name}: the kernel's memory was never read")
        return cls(section, name, seconds, last.rss, last.hwm, last.anon, sampler.peak_anon)


# -- the app -------------------------------------------------------------------------------------------------------


def code_cells(path: Path) -> List[str]:
    """The sources of a notebook's code cells, in order."""
    notebook = json.loads(path.read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def execute(client, code: str) -> None:
    """Run ``code`` in the kernel and wait for it; raise with the kernel's traceback if it fails."""
    reply = client.execute_interactive(code, timeout=STAGE_TIMEOUT_S, output_hook=lambda _msg: None)
    content = reply["content"]
    if content["status"] != "ok":
        raise RuntimeError(f"the kernel failed on {code!r}: {content.get('ename')}: {content.get('evalue')}\n"
                           + "\n".join(content.get("traceback", [])))


def measure_app(threads: Optional[int], workdir: Path) -> Iterator[Row]:
    """Execute the app notebook in a fresh kernel, then each of :data:`APP_STAGES`, reading memory after each."""
    from jupyter_client.manager import start_new_kernel

    section = "app" if threads is None else f"app, {threads} thread{'s' * (threads > 1)}"
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        with PeakSampler(lambda: manager.provisioner.pid) as sampler:
            began = time.perf_counter()
            for code in code_cells(APP):
                execute(client, code)
            if threads is not None:
                execute(client, f"import torch; torch.set_num_threads({threads})")
            yield Row.after(section, "started (widgets built)", time.perf_counter() - began, sampler)
            for name, code in APP_STAGES:
                began = time.perf_counter()
                execute(client, code)
                yield Row.after(section, name, time.perf_counter() - began, sampler)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


# -- the notebooks -------------------------------------------------------------------------------------------------


def kernel_child() -> Optional[int]:
    """The pid of the ipykernel this process started (papermill's), or None."""
    for child in psutil.Process().children(recursive=True):
        try:
            if any("ipykernel" in part for part in child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


def notebook_label(name: str, parameters: Dict[str, object]) -> str:
    """``name`` with its overrides, as the table shows it."""
    return name + "".join(f" ({key}={value})" for key, value in parameters.items())


def measure_notebook(name: str, parameters: Dict[str, object], workdir: Path) -> Row:
    """Execute one notebook with papermill in a fresh kernel; its memory is read until the kernel exits."""
    import papermill

    with PeakSampler(kernel_child) as sampler:
        began = time.perf_counter()
        papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(workdir / f"{name}.ipynb"),
                                   parameters=parameters, cwd=str(workdir), kernel_name="python3",
                                   progress_bar=False)
        seconds = time.perf_counter() - began
    # the kernel has exited: its last reading stands (VmHWM is its peak up to then)
    return Row.after("notebooks", notebook_label(name, parameters), seconds, sampler)


# -- the table -----------------------------------------------------------------------------------------------------

HEADER = ("| section | after | seconds | resident (MiB) | peak resident (MiB) | anonymous (MiB) "
          "| peak anonymous (MiB) | over 1 GiB |\n|---|---|---|---|---|---|---|---|")


def format_row(row: Row) -> str:
    """One markdown table line; a peak over :data:`BUDGET_MIB` is marked."""
    over = "**yes**" if row.hwm > BUDGET_MIB else "no"
    return (f"| {row.section} | {row.name} | {row.seconds:.0f} | {row.rss:.0f} | {row.hwm:.0f} | {row.anon:.0f} "
            f"| {row.peak_anon:.0f} | {over} |")


def run(sections: Sequence[str], threads: Sequence[Optional[int]], notebooks: Sequence[str]) -> Iterator[Row]:
    """Every measurement asked for, each in a scratch folder of its own."""
    for thread_count in threads if "app" in sections else ():
        with tempfile.TemporaryDirectory(prefix="bench-memory-app-") as workdir:
            yield from measure_app(thread_count, Path(workdir))
    for name, parameters in NOTEBOOK_RUNS if "notebooks" in sections else ():
        if name in notebooks:
            with tempfile.TemporaryDirectory(prefix="bench-memory-notebook-") as workdir:
                yield measure_notebook(name, parameters, Path(workdir))


def _thread_counts(text: str) -> List[Optional[int]]:
    return [None if item == "app" else int(item) for item in text.split(",")]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="app,notebooks", help="app, notebooks or both (default)")
    parser.add_argument("--threads", type=_thread_counts, default=[None],
                        help="comma-separated torch thread counts for the app ('app': its own setting; default)")
    parser.add_argument("--notebooks", default=",".join(dict(NOTEBOOK_RUNS)),
                        help="comma-separated notebook names (default: 01 to 06 and 10)")
    parser.add_argument("--json", type=Path, help="also write every row as JSON")
    args = parser.parse_args(argv)
    print(f"cpu: {cpu_model()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for row in run(args.sections.split(","), args.threads, args.notebooks.split(",")):
        rows.append(row)
        print(format_row(row), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f}\n{HEADER}\n" + "\n".join(map(format_row, rows)))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=1))


if __name__ == "__main__":
    main()
