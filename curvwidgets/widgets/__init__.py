"""Jupyter front ends (ipywidgets 8 + bqplot) over the package's computations and result objects.

Import from here (``from curvwidgets.widgets import SyntheticSpectrumWidget``);
``import curvwidgets`` never imports ipywidgets or bqplot. Every widget runs its
computation through a :class:`TaskRunner` (worker thread, Run/Cancel, progress,
errors) and keeps its typed result in ``.result``; ``widget.run(block=True)``
computes in the calling thread, for papermill and nbval.
"""

from .dashboard import Dashboard
from .dispatch import UIDispatcher
from .landscape import LandscapeWidget
from .runner import TaskRunner
from .spectrum import SpectrumWidget
from .synthetic import SyntheticSpectrumWidget
from .training import TrainingWidget

__all__ = ["Dashboard", "LandscapeWidget", "SpectrumWidget", "SyntheticSpectrumWidget", "TaskRunner", "TrainingWidget",
           "UIDispatcher"]
