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


def run_torchrun(worker: Path, world: int, folder: Path) -> list:
    """Start ``worker PREFIX`` as ``torchrun`` would (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*); each rank's npz."""
    import os
    import socket

    import numpy as np

    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    prefix = folder / "rank"
    processes = []
    for rank in range(world):
        environment = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        processes.append(subprocess.Popen([sys.executable, str(worker), str(prefix)], env=environment,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    results = []
    for rank in range(world):
        with np.load(f"{prefix}{rank}.npz", allow_pickle=False) as arrays:
            results.append(dict(arrays))
    return results
