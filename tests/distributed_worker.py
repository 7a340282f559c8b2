"""One rank of the multi-process curvature test: run as ``python distributed_worker.py RANK WORLD STORE OUT``.

Every rank builds the same model and data; the curvature code shards the
batches over ranks and sums with ``all_reduce``. Rank 0 writes the results.
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

import curvwidgets as cw  # noqa: E402
from curvature_cases import classification_data, cnn  # noqa: E402
from curvwidgets.curvature.diagonal import mc_ggn_diagonal  # noqa: E402


def main(rank: int, world: int, store: str, out: str) -> None:
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model = cnn(batch_norm=True)
    batches, _, _ = classification_data(model, sizes=(6, 5, 7, 4, 6))
    loss = torch.nn.CrossEntropyLoss()
    hessian = cw.Hessian(model, loss, batches)
    ggn = cw.GGN(model, loss, batches)
    probe = torch.linspace(-1, 1, hessian.dim, dtype=torch.float64)
    results = {
        "ritz": cw.lanczos(hessian, steps=12, seed=0).ritz_values,
        "ggn_product": (ggn @ probe).numpy(),
        "mc_diagonal": mc_ggn_diagonal(ggn, num_mc=2, seed=0).numpy(),
        "stats": np.array(list(cw.loss_stats(model, loss, batches, num_probes=3).values())),
    }
    if rank == 0:
        np.savez(out, **results)
    if world > 1:
        dist.barrier()  # no rank tears the group down while another still uses it
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
    # Leave without interpreter teardown: gloo's threads sometimes abort the process in C++ static
    # destructors ("terminate called without an active exception") after all work and files are done.
    sys.stdout.flush()
    os._exit(0)
