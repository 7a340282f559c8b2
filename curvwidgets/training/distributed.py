"""The process group of a data-parallel run: joining it under ``torchrun``, devices, and reductions.

Under ``torchrun --nproc_per_node=N`` every process has ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment; :func:`join_process_group`
initialises ``torch.distributed`` from them (NCCL on CUDA, gloo otherwise)
unless the caller already did. A single process never touches
``torch.distributed``.
"""

from __future__ import annotations

import os
from typing import Tuple

import torch
from torch import nn

from ..curvature.data import all_reduce_sum, world

__all__ = ["join_process_group", "default_device", "any_rank", "average_buffers"]


def join_process_group() -> Tuple[int, int]:
    """``(rank, world_size)``; joins the group that ``torchrun`` set up when it is not joined yet."""
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    if torch.distributed.is_available() and not joined and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world()


def default_device() -> torch.device:
    """This process's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on at least one rank (a collective: every rank must call it)."""
    return bool(all_reduce_sum(torch.tensor(float(flag), device=device)) > 0)


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Replace every floating-point buffer (BatchNorm running statistics) by its mean over ranks."""
    processes = world()[1]
    if processes == 1:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            all_reduce_sum(buffer).div_(processes)
