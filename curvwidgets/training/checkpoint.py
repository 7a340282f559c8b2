"""Training checkpoints: written atomically, read with ``torch.load(..., weights_only=True)``.

A checkpoint ``checkpoint-00010.pt`` (10 epochs finished) is a dict of tensors
and plain Python values::

    format, version      "curvwidgets.checkpoint", 1
    epoch                epochs finished
    model                the model's state_dict
    optimizer            the optimiser's state_dict
    schedule             {"name", "epochs", "options"} of the learning-rate schedule
    rng                  {"torch": CPU generator state, "cuda": per-device states}
    swa                  {"model": averaged state_dict, "n_averaged": int} or None
    history              TrainingHistory.to_dict() up to this epoch (the monitor's measurements included)
    config               how the run was set up (plain values)
    monitor              optional: the curvature monitor's warm start ({"start": tensor or None}) or None
    steps                optional: optimiser steps done up to this epoch (what a step monitor counts)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

from .._atomic import atomic_path

__all__ = ["CheckpointError", "checkpoint_name", "checkpoint_epoch", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "load_model_state", "CHECKPOINT_ENTRIES", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "curvwidgets.checkpoint", 1
#: The entries every checkpoint holds besides ``format`` and ``version`` (see the module docstring).
CHECKPOINT_ENTRIES = ("epoch", "model", "optimizer", "schedule", "rng", "swa", "history", "config")
_NAME = re.compile(r"checkpoint-(\d+)\.pt")


def _is_state(value: Any) -> bool:
    return isinstance(value, Mapping)


#: What each entry must be for the readers of a checkpoint: the epoch an int >= 0, the rest dicts (``swa`` or None).
_ENTRY_KINDS = {"epoch": lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                "model": _is_state, "optimizer": _is_state, "schedule": _is_state, "rng": _is_state,
                "swa": lambda value: value is None or _is_state(value), "history": _is_state, "config": _is_state}


def checkpoint_name(epoch: int) -> str:
    """``checkpoint-00010.pt`` for 10 finished epochs."""
    return f"checkpoint-{epoch:05d}.pt"


def save_checkpoint(state: Dict[str, Any], out_dir: Union[str, os.PathLike]) -> Path:
    """Write ``state`` (which has ``"epoch"``) to ``out_dir/checkpoint-XXXXX.pt`` atomically."""
    path = Path(out_dir) / checkpoint_name(state["epoch"])
    with atomic_path(path) as temporary:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}, temporary)
    return path


def checkpoint_epoch(path: Union[str, os.PathLike]) -> Optional[int]:
    """The finished epochs a checkpoint's file name says (``checkpoint-00010.pt``: 10); None for another name.

    Examples
    --------
    >>> checkpoint_epoch("runs/a/checkpoint-00012.pt"), checkpoint_epoch("model.pt")
    (12, None)
    """
    match = _NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def latest_checkpoint(folder: Union[str, os.PathLike]) -> Path:
    """The checkpoint with the most finished epochs in ``folder``."""
    found = sorted((epoch, path) for path in Path(folder).glob("checkpoint-*.pt")
                   if (epoch := checkpoint_epoch(path)) is not None)
    if not found:
        raise FileNotFoundError(f"resume: no checkpoint-XXXXX.pt files in {os.fspath(folder)!r}")
    return found[-1][1]


def load_checkpoint(path: Union[str, os.PathLike], map_location: Union[str, torch.device, None] = "cpu") -> Dict[str, Any]:
    """Read a checkpoint file, or the latest one in a folder, with ``weights_only=True``.

    Returns
    -------
    dict
        The entries of the module docstring, and ``"path"``: the file read.

    Raises
    ------
    FileNotFoundError
        No such file, or a folder without checkpoints.
    CheckpointError
        The file is not a readable curvwidgets checkpoint: empty, truncated,
        random bytes, a torch file of something else (a bare ``state_dict``,
        pickled objects), one without an entry that checkpoints have or with
        one of another kind (an epoch that is not an int, state that is not
        a dict), or one of a newer format version. The message names the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = latest_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist")
    unreadable = f"{os.fspath(path)!r} is not a readable curvwidgets checkpoint"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated, empty, random bytes, a pickle of other objects: one clear error
        raise CheckpointError(f"{unreadable} (empty, truncated, or not written by curvwidgets; torch.load with "
                              f"weights_only=True failed: {type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{unreadable}: a torch file without the 'format' entry {CHECKPOINT_FORMAT!r}")
    if not isinstance(state.get("version"), int) or state["version"] > CHECKPOINT_VERSION:
        raise CheckpointError(f"{os.fspath(path)!r} has checkpoint version {state.get('version')!r}, newer than this "
                              f"curvwidgets reads ({CHECKPOINT_VERSION}); update curvwidgets")
    missing = [key for key in CHECKPOINT_ENTRIES if key not in state]
    if missing:
        raise CheckpointError(f"{unreadable}: it lacks the entries {missing} (damaged, or written by other code)")
    misshapen = [key for key in CHECKPOINT_ENTRIES if not _ENTRY_KINDS[key](state[key])]
    if misshapen:
        raise CheckpointError(f"{unreadable}: its entries {misshapen} are not what checkpoints hold (an epoch count "
                              "and dicts of state; damaged, or written by other code)")
    state["path"] = os.fspath(path)
    return state


class CheckpointError(ValueError):
    """A file that is not a readable curvwidgets checkpoint (or of a newer format version)."""


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: Optional[str] = None) -> None:
    """``model.load_state_dict(state)`` with an error naming every mismatched key when the architectures differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
                      for key in set(own) & set(state) if state[key].shape != own[key].shape)
    if missing or unexpected or reshaped:
        parts = [f"{label}: {_listed(keys)}" for label, keys in
                 (("missing in the checkpoint", missing), ("not in the model", unexpected),
                  ("shape in checkpoint vs model", reshaped)) if keys]
        where = f" {source!r}" if source else ""
        raise ValueError(f"checkpoint{where} does not fit the model ({type(model).__name__}); " + "; ".join(parts))
    model.load_state_dict(state)


def _listed(keys, limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")
