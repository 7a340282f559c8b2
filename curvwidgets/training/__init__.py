"""Training: named models, datasets, optimisers, learning-rate schedules and the ``train`` loop.

``cw.models``, ``cw.data`` and ``cw.optim`` are the three registries (each with
``names()`` and ``create``/``load``); ``cw.train`` runs, checkpoints and
resumes a training run and returns a :class:`~curvwidgets.results.TrainingHistory`.
"""

from . import checkpoint, data, distributed, models, optim, schedules, stability
from .loop import TrainingDiverged, evaluate, train
from .monitor import CurvatureMonitor
from .trained import Trained, load_trained

__all__ = ["CurvatureMonitor", "checkpoint", "data", "distributed", "evaluate", "load_trained", "models", "optim", "schedules", "stability", "train",
           "Trained", "TrainingDiverged"]
