"""Typed results that outlive a session: saved as JSON (or npz) with a format version, written atomically."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ._atomic import atomic_path

__all__ = ["TrainingHistory", "HISTORY_COLUMNS"]

HISTORY_FORMAT, HISTORY_VERSION = "curvwidgets.TrainingHistory", 1

HISTORY_COLUMNS = {
    "epoch": "epochs finished (1 for the first)",
    "lr": "learning rate of the first parameter group during the epoch",
    "train_loss": "mean training loss over the epoch's samples, as the weights changed (augmented data)",
    "train_top1": "fraction of the epoch's training samples classified correctly while training",
    "test_loss": "mean loss over the test (or validation) set after the epoch, eval mode",
    "test_top1": "fraction of test samples whose top class is right",
    "test_top5": "fraction of test samples whose label is among the top min(5, classes) classes",
    "seconds": "wall-clock seconds of the epoch's training (evaluation excluded)",
    "images_per_second": "training samples (all ranks) per second of the epoch",
    "peak_memory_bytes": "CUDA: peak allocated during the epoch; CPU: the process's peak resident size so far",
    "weight_l2": "L2 norm of all parameters after the epoch",
    "weight_linf": "largest absolute parameter value after the epoch",
}


@dataclass
class TrainingHistory:
    """Per-epoch statistics of a training run (see ``HISTORY_COLUMNS``).

    Attributes
    ----------
    rows : list of dict
        One dict per finished epoch, keys ``HISTORY_COLUMNS``, plain floats.
    config : dict
        How the run was set up (model, data, optimiser, schedule, seed, ...).
    final : dict
        End-of-run figures that are not per epoch, e.g. ``swa_test_loss``.
    checkpoints : list of str
        Checkpoint files written so far, oldest first.
    model : nn.Module, optional
        The trained model, when the history comes from :func:`~curvwidgets.train`
        in this session (not saved).
    """

    rows: List[Dict[str, float]] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)
    final: Dict[str, float] = field(default_factory=dict)
    checkpoints: List[str] = field(default_factory=list)
    model: Optional[Any] = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> np.ndarray:
        """One column over the epochs, shape ``(len(self),)``."""
        if column not in HISTORY_COLUMNS:
            raise KeyError(f"column must be one of {tuple(HISTORY_COLUMNS)}; got {column!r}")
        return np.array([row[column] for row in self.rows], dtype=np.float64)

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only (what :meth:`save` writes and checkpoints hold)."""
        return {"format": HISTORY_FORMAT, "version": HISTORY_VERSION, "rows": [dict(row) for row in self.rows],
                "config": self.config, "final": dict(self.final), "checkpoints": list(self.checkpoints)}

    @classmethod
    def from_dict(cls, content: Dict[str, Any]) -> "TrainingHistory":
        if content.get("format") != HISTORY_FORMAT:
            raise ValueError(f"not a training history: format is {content.get('format')!r}")
        if content.get("version", 0) > HISTORY_VERSION:
            raise ValueError(f"training history version {content['version']} is newer than this curvwidgets reads "
                             f"({HISTORY_VERSION})")
        return cls(rows=list(content["rows"]), config=dict(content["config"]), final=dict(content.get("final", {})),
                   checkpoints=list(content.get("checkpoints", [])))

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write JSON atomically (non-finite numbers as ``null``); returns the path."""
        with atomic_path(path) as temporary:
            temporary.write_text(json.dumps(_finite_or_none(self.to_dict()), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "TrainingHistory":
        """Read a history written by :meth:`save`."""
        content = json.loads(Path(path).read_text())
        return cls.from_dict(_none_to_nan(content))


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def _none_to_nan(content: Dict[str, Any]) -> Dict[str, Any]:
    content["rows"] = [{key: (math.nan if item is None else item) for key, item in row.items()}
                       for row in content.get("rows", [])]
    return content
