"""Where the spectrum and landscape widgets get a model and data: their own, or a checkpoint's, read once."""

from __future__ import annotations

import copy
import threading
from typing import Any, Dict, Optional, Tuple

from torch import nn

from ..progress import CancelToken, ProgressCallback, report

__all__ = ["CheckpointSource", "model_and_data"]

Loaded = Tuple[nn.Module, Any, Dict[str, Any]]


class CheckpointSource:
    """A checkpoint's model, data set and metadata, read with :func:`curvwidgets.load_trained` and kept.

    The last checkpoint read is kept, so that the next run on it (another
    spectrum, a landscape) does not read it again; widgets that share one
    source (as the :class:`Dashboard`'s do) share that. Every call hands out
    its own copy of the model, so that two computations running at once in
    two widgets' workers never change each other's modes or weights; the
    data set, which nothing writes, is shared. Safe to call from any thread.

    Parameters
    ----------
    device : str, optional
        Where the model and data go (default: CUDA when available).
    """

    def __init__(self, device: Optional[str] = None):
        self.device = device
        self._lock = threading.Lock()
        self._kept: Optional[Tuple[str, Loaded]] = None

    def __call__(self, path: str) -> Loaded:
        """``(model, data, metadata)`` of the checkpoint file or run folder ``path``."""
        with self._lock:
            if self._kept is None or self._kept[0] != path:
                from ..training import load_trained

                trained = load_trained(path, device=self.device)
                self._kept = (path, (trained.model, trained.data, trained.metadata()))
            model, data, meta = self._kept[1]
            return copy.deepcopy(model), data, dict(meta)


def model_and_data(checkpoint: str, model: Optional[nn.Module], data: Any, source: CheckpointSource,
                   progress: ProgressCallback, cancel: CancelToken) -> Loaded:
    """The checkpoint's model, data and metadata when ``checkpoint`` is given, else ``model`` and ``data``.

    Reading the checkpoint is a stage ``"checkpoint"`` of one step (events at 0 and 1).

    Raises
    ------
    ValueError
        Neither a checkpoint nor both a model and data.
    """
    if checkpoint.strip():
        report(progress, cancel, "checkpoint", 0, 1, partial=lambda: None)
        loaded = source(checkpoint.strip())
        report(progress, cancel, "checkpoint", 1, 1, partial=lambda: None)
        return loaded
    if model is None or data is None:
        raise ValueError("checkpoint: give a checkpoint path, or create the widget with a model and data")
    return model, data, {}
