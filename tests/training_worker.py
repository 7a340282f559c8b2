"""One rank of the data-parallel training test: ``python training_worker.py RANK WORLD STORE OUT``.

Every rank builds the same model and data; ``cw.train`` wraps the model in
DistributedDataParallel and each rank takes its slice of every global batch.
Rank 0 writes the final weights.
"""

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

import curvwidgets as cw
from curvwidgets.training.data import TensorLoader


def main(rank: int, world: int, store: str, out: str) -> None:
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (48, 3, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 4, (48,))
    loaders = [TensorLoader(images, labels, batch_size=size, shuffle=shuffle, augment=False, mean=(0.5,) * 3,
                            std=(0.25,) * 3, seed=1, rank=rank, world_size=world)
               for size, shuffle in ((16, True), (24, False))]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    cw.train(model, tuple(loaders), epochs=3, optimizer="SGD", optimizer_kwargs={"lr": 0.1, "momentum": 0.9},
             schedule="linear", seed=0)
    if rank == 0:
        np.savez(out, **{name.replace(".", "_"): p.detach().numpy() for name, p in model.named_parameters()})
    if world > 1:
        dist.barrier()  # no rank tears the group down while another still uses it
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
    # Leave without interpreter teardown: gloo's threads sometimes abort the process in C++ static
    # destructors ("terminate called without an active exception") after all work and files are done.
    sys.stdout.flush()
    os._exit(0)
