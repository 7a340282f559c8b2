"""The process group of a data-parallel run: joining it under ``torchrun``, devices, and reductions.

Under ``torchrun --nproc_per_node=N`` every process has ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in its
environment; :func:`join_process_group` initialises ``torch.distributed``
from them (NCCL on CUDA, gloo otherwise) unless the caller already did. A
single process never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Optional, Tuple

import torch
from torch import nn

from .._validate import positive
from ..curvature.data import all_reduce_sum, world

__all__ = ["JOIN_TIMEOUT", "JOIN_TIMEOUT_VARIABLE", "join_process_group", "default_device", "any_rank",
           "average_buffers"]

#: Seconds a process waits for the others of its group to join, unless ``$CURVWIDGETS_JOIN_TIMEOUT`` says
#: otherwise.
JOIN_TIMEOUT = 120.0
JOIN_TIMEOUT_VARIABLE = "CURVWIDGETS_JOIN_TIMEOUT"
_GROUP_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def join_process_group(timeout: Optional[float] = None) -> Tuple[int, int]:
    """``(rank, world_size)``; joins the group that ``torchrun`` set up when it is not joined yet.

    Parameters
    ----------
    timeout : float, optional
        Seconds to wait for every process of the group to arrive at the
        rendezvous (``MASTER_ADDR:MASTER_PORT``); default
        ``$CURVWIDGETS_JOIN_TIMEOUT``, else :data:`JOIN_TIMEOUT`. Collectives
        after the join keep torch's default timeout.

    Raises
    ------
    TimeoutError
        The others did not join in time, or the rendezvous variables are
        missing or wrong (a stale ``WORLD_SIZE`` in the environment of a
        single process): the message lists the variables and their values.
    ValueError
        ``timeout`` or ``$CURVWIDGETS_JOIN_TIMEOUT`` is not a number > 0.
    """
    joined = torch.distributed.is_available() and torch.distributed.is_initialized()
    if torch.distributed.is_available() and not joined and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        wait = _join_timeout(timeout)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        store, rank, size = _rendezvous(wait)
        store.set_timeout(torch.distributed.default_pg_timeout)  # the short wait is for the join only
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                             store=torch.distributed.PrefixStore("default_pg", store),
                                             rank=rank, world_size=size)
    return world()


def _join_timeout(timeout: Optional[float]) -> float:
    """``timeout``, else the environment's ``$CURVWIDGETS_JOIN_TIMEOUT``, else :data:`JOIN_TIMEOUT` (seconds > 0)."""
    if timeout is not None:
        return positive("timeout", timeout)
    text = os.environ.get(JOIN_TIMEOUT_VARIABLE)
    if text is None:
        return JOIN_TIMEOUT
    try:
        return positive(JOIN_TIMEOUT_VARIABLE, float(text))
    except ValueError:
        raise ValueError(f"${JOIN_TIMEOUT_VARIABLE} must be a number of seconds > 0; got {text!r}") from None


def _rendezvous(seconds: float) -> Tuple[torch.distributed.Store, int, int]:
    """The ``env://`` rendezvous within ``seconds``, else a ``TimeoutError`` naming the variables."""
    try:
        return next(torch.distributed.rendezvous("env://", timeout=timedelta(seconds=seconds)))
    except (RuntimeError, ValueError) as error:  # DistStoreError (a RuntimeError); a variable unset or not a number
        variables = ", ".join(f"{name}={os.environ.get(name, '(unset)')}" for name in _GROUP_VARIABLES)
        cause = str(error).rstrip(".")
        raise TimeoutError(
            f"could not join the process group described by the environment ({variables}) within {seconds:g} s: "
            f"{cause}. Start every process of the group (e.g. torchrun --nproc_per_node=N), or, for a single "
            f"process, unset WORLD_SIZE, RANK and MASTER_ADDR; ${JOIN_TIMEOUT_VARIABLE} sets the wait in seconds"
        ) from None


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
