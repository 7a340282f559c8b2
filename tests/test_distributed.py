"""Two gloo processes give the same curvature results as one process."""

from pathlib import Path

import numpy as np
from rank_runner import run_ranks

WORKER = Path(__file__).with_name("distributed_worker.py")


def test_two_gloo_processes_match_one(tmp_path):
    single, double = run_ranks(WORKER, 1, tmp_path), run_ranks(WORKER, 2, tmp_path)
    # the shards are summed in another order than one process sums the batches: rounding apart (measured 3e-16)
    np.testing.assert_allclose(double["ritz"], single["ritz"], rtol=0, atol=1e-13)
    np.testing.assert_allclose(double["ggn_product"], single["ggn_product"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(double["stats"], single["stats"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(double["mc_diagonal"], single["mc_diagonal"], rtol=1e-10, atol=1e-14)
