"""Run a worker script as several gloo ranks and collect rank 0's npz."""

import subprocess
import sys
from pathlib import Path


def run_ranks(worker: Path, world: int, folder: Path, *extra: str) -> dict:
    """Start ``worker RANK WORLD STORE OUT *extra`` for every rank; return rank 0's arrays from ``OUT``."""
    import numpy as np

    out = folder / f"world{world}.npz"
    store = folder / f"store{world}"
    processes = [
        subprocess.Popen([sys.executable, str(worker), str(rank), str(world), str(store), str(out), *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(world)
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    with np.load(out, allow_pickle=False) as results:
        return dict(results)
