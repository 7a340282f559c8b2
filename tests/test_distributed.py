"""Two gloo processes give the same curvature results as one process."""

import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("distributed_worker.py")


def run_ranks(world: int, folder: Path) -> dict:
    out = folder / f"world{world}.npz"
    store = folder / f"store{world}"
    processes = [
        subprocess.Popen([sys.executable, str(WORKER), str(rank), str(world), str(store), str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in range(world)
    ]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    with np.load(out, allow_pickle=False) as results:
        return dict(results)


def test_two_gloo_processes_match_one(tmp_path):
    single, double = run_ranks(1, tmp_path), run_ranks(2, tmp_path)
    np.testing.assert_allclose(double["ritz"], single["ritz"], atol=1e-6)
    np.testing.assert_allclose(double["ggn_product"], single["ggn_product"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(double["stats"], single["stats"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(double["mc_diagonal"], single["mc_diagonal"], rtol=1e-10, atol=1e-14)
