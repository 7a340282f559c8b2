#!/usr/bin/env python
"""Start-up time of curvwidgets: the import and ``--help``, this tree against a baseline commit.

Each measurement is a fresh Python process (so nothing is cached in
``sys.modules``), timed from inside the process with ``time.perf_counter``
around the statement, plus the whole process wall time for the command line.
The baseline commit is checked out with ``git worktree`` into a temporary
folder and run beside this tree; rounds alternate between the two so that
machine load hits both alike, and the best round of each is kept.

Rows:

- ``import torch, numpy, scipy.linalg``: what the numerical core needs anyway;
- ``import curvwidgets``: the package itself (lazy, PEP 562);
- ``import curvwidgets`` and resolve every public name of the core (linear
  algebra, curvature, landscapes, results, training, the paper's API; not the
  widgets or plots): what a script pays before its first computation;
- the same in a process that has imported torch, numpy and scipy.linalg
  already (untimed): the package's own import time beyond torch's;
- ``curvwidgets --help`` (``python -m curvwidgets --help``), whole process.

    PYTHONPATH=. python benchmarks/bench_startup.py
    PYTHONPATH=. python benchmarks/bench_startup.py --rounds 9 --json benchmarks/results/startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

BASELINE = "7a7da1c"  # before the lazy imports (9eac4b2) and the closed-form Wasserstein distance (321bc2d)

TORCH = "import torch, numpy, scipy.linalg"
PACKAGE = "import curvwidgets"
CORE_NAMES = ("lanczos", "power_iteration", "stem_density", "smooth_density", "wasserstein1", "bounds_table",
              "Hessian", "GGN", "loss_stats", "spectrum", "loss_landscape", "Spectrum", "Landscape",
              "train", "models", "data", "optim", "load_trained", "compute_eigenspectrum")
# names that an older tree lacks are skipped (it imported all its modules eagerly anyway)
CORE = PACKAGE + f"\nfor name in {CORE_NAMES!r}:\n    getattr(curvwidgets, name, None)"

TIMER = """
import time
exec({prelude!r})
start = time.perf_counter()
exec({statement!r})
print(time.perf_counter() - start)
"""


def timed_statement(root: str, statement: str, prelude: str = "") -> float:
    """Seconds that ``statement`` takes in a fresh interpreter with ``root`` first on the path, after ``prelude``."""
    environment = dict(os.environ, PYTHONPATH=root)
    result = subprocess.run([sys.executable, "-c", TIMER.format(prelude=prelude, statement=statement)], cwd=root,
                            env=environment, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def timed_help(root: str) -> float:
    """Wall seconds of the whole process ``python -m curvwidgets --help``."""
    environment = dict(os.environ, PYTHONPATH=root)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "curvwidgets", "--help"], cwd=root, env=environment,
                   capture_output=True, check=True)
    return time.perf_counter() - start


def measure(root: str) -> Dict[str, float]:
    """One round of every row for the tree at ``root`` (seconds)."""
    return {"torch": timed_statement(root, TORCH), "package": timed_statement(root, PACKAGE),
            "core": timed_statement(root, CORE), "core beyond torch": timed_statement(root, CORE, prelude=TORCH),
            "--help": timed_help(root)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds; the best of each row is kept")
    parser.add_argument("--baseline", default=BASELINE, help=f"git commit of 'before' (default {BASELINE})")
    parser.add_argument("--json", default=None, help="write every round here")
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as scratch:
        before = os.path.join(scratch, "before")
        subprocess.run(["git", "-C", here, "worktree", "add", "--detach", before, args.baseline],
                       capture_output=True, check=True)
        try:
            rounds: Dict[str, List[Dict[str, float]]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                rounds["before"].append(measure(before))
                rounds["after"].append(measure(here))
        finally:
            subprocess.run(["git", "-C", here, "worktree", "remove", "--force", before], capture_output=True)
            subprocess.run(["git", "-C", here, "worktree", "prune"], capture_output=True)
    best = {version: {row: min(r[row] for r in runs) for row in runs[0]} for version, runs in rounds.items()}
    print(f"best of {args.rounds} rounds, seconds (before = {args.baseline}, after = this tree); load {os.getloadavg()}")
    print(f"  {'':40s} {'before':>8s} {'after':>8s}")
    labels = {"torch": TORCH, "package": PACKAGE, "core": "import curvwidgets + every core name",
              "core beyond torch": "  the same after torch (beyond torch)", "--help": "python -m curvwidgets --help"}
    for row, label in labels.items():
        print(f"  {label:40s} {best['before'][row]:8.3f} {best['after'][row]:8.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"baseline": args.baseline, "rounds": rounds, "best": best}, handle, indent=1)


if __name__ == "__main__":
    main()
