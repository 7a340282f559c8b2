"""What :class:`~curvwidgets.widgets.SpectrumWidget` computes: ``cw.spectrum`` of a model, or of a checkpoint's model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from torch import nn

from .._validate import non_negative_int
from ..curvature.spectrum import spectrum as compute_spectrum
from ..progress import CancelToken, ProgressCallback
from ..results import Spectrum
from ._checkpoints import CheckpointSource, model_and_data

__all__ = ["SpectrumSettings", "run_spectrum", "parse_params"]


def parse_params(text: str) -> Optional[List[str]]:
    """Comma-separated glob patterns over parameter names (``"features.0.*, *.bias"``); None when empty (all)."""
    patterns = [pattern.strip() for pattern in text.split(",") if pattern.strip()]
    return patterns or None


@dataclass(frozen=True)
class SpectrumSettings:
    """One spectrum computation, as read from the widget's controls.

    Attributes
    ----------
    checkpoint : str
        Path of a checkpoint (file or run folder) to load with
        :func:`curvwidgets.load_trained`; empty to use the widget's model and data.
    matrix : {"hessian", "ggn"}
    steps, num_vectors, seed : int
        Lanczos steps ``m``, start vectors, seed (of the subset and of the start vectors).
    params : str
        Comma-separated glob patterns of the parameters to include; empty for all.
    num_samples : int
        Samples of a seeded subset of the data; 0 for every sample.
    bn_mode : {"eval", "train"}
    backend : str
        How products are differentiated (see :class:`curvwidgets.Hessian`).
    save_vectors : bool
        Keep the Ritz vectors (``P`` floats each), which landscapes along eigenvectors need.
    """

    checkpoint: str = ""
    matrix: str = "hessian"
    steps: int = 30
    num_vectors: int = 1
    params: str = ""
    num_samples: int = 0
    seed: int = 0
    bn_mode: str = "eval"
    backend: str = "auto"
    save_vectors: bool = False

    def options(self) -> Dict[str, Any]:
        """Keyword arguments of :func:`curvwidgets.spectrum` (all but model, data, progress and cancel)."""
        samples = non_negative_int("num_samples", self.num_samples)
        return dict(matrix=self.matrix, steps=self.steps, num_vectors=self.num_vectors, params=parse_params(self.params),
                    bn_mode=self.bn_mode, num_samples=samples or None, seed=self.seed, backend=self.backend,
                    save_vectors=self.save_vectors)


def run_spectrum(settings: SpectrumSettings, model: Optional[nn.Module], data: Any, loss_fn: Optional[Callable],
                 source: CheckpointSource, progress: ProgressCallback, cancel: CancelToken) -> Spectrum:
    """The spectrum of ``settings``: of ``model`` on ``data``, or of the checkpoint's model on its data.

    A checkpoint is read through ``source`` (a stage ``"checkpoint"`` event
    comes first, see :func:`model_and_data`). Then the events of
    :func:`curvwidgets.spectrum` (stage ``"lanczos"``, partial ``LanczosResult``).

    Raises
    ------
    ValueError
        Neither a checkpoint nor a model and data; any bad setting (from :func:`curvwidgets.spectrum`).
    Cancelled
        ``.result`` is the partial :class:`~curvwidgets.Spectrum`.
    """
    options = settings.options()
    model, data, meta = model_and_data(settings.checkpoint, model, data, source, progress, cancel)
    return compute_spectrum(model, data, loss_fn=loss_fn, meta=meta, progress=progress, cancel=cancel, **options)
