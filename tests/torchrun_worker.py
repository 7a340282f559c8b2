"""One process of a ``torchrun``-style launch: ``python torchrun_worker.py OUT_PREFIX`` with RANK etc. in the environment.

``cw.train`` itself joins the process group described by the environment,
shards the named data set and trains a BatchNorm model with DDP; every rank
writes its weights, buffers and history so the test can compare them.
"""

import os
import sys

import numpy as np
import torch

import curvwidgets as cw


def main(prefix: str) -> None:
    history = cw.train("SmallCNN", "digits", epochs=1, optimizer_kwargs={"lr": 0.05}, schedule="constant",
                       device="cpu")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    state = {key.replace(".", "_"): value.detach().numpy() for key, value in history.model.state_dict().items()}
    rows = np.array([[row["train_loss"], row["train_top1"], row["test_loss"], row["test_top1"],
                      row["images_per_second"] * row["seconds"]] for row in history.rows])
    np.savez(f"{prefix}{rank}.npz", rows=rows, world=np.array(world), **state)
    torch.distributed.barrier()  # no rank tears the group down while another still uses it
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    assert "WORLD_SIZE" in os.environ
    main(sys.argv[1])
    # Leave without interpreter teardown: gloo's threads sometimes abort the process in C++ static
    # destructors ("terminate called without an active exception") after all work and files are done.
    sys.stdout.flush()
    os._exit(0)
