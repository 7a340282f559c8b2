"""Optimisers for training the networks whose curvature is studied: first order, K-FAC, SWATS, Lanczos-Newton.

``create(name, model, loss_fn, lr, **kwargs)`` builds any of :func:`names`;
every optimiser is a ``torch.optim.Optimizer`` used as usual
(``loss.backward(); optimizer.step()``), except that a
:class:`CurvatureOptimizer` (the Lanczos-Newton ones) also needs
``optimizer.set_batch(inputs, targets)`` before each ``step()``.

============  =============================================================
name          update
============  =============================================================
SGD           ``torch.optim.SGD`` (momentum, Nesterov, weight decay)
Adam, AdamW   ``torch.optim.Adam``, ``torch.optim.AdamW``
SWATS         Adam, then SGD at a learned rate (Keskar & Socher, 2017)
KFAC          Kronecker-factored natural gradient for Linear/Conv2d layers
LanczosSFN    saddle-free Newton in a Lanczos space of the batch Hessian
LanczosGGN    Gauss-Newton in a Lanczos space of the batch GGN
============  =============================================================

Nothing here imports plotting or widget libraries.
"""

from .base import CurvatureOptimizer
from .kfac import KFAC
from .lanczos_newton import LanczosGGN, LanczosSFN
from .registry import DEFAULTS, canonical_name, create, names, resolve_options
from .swats import SWATS

__all__ = ["DEFAULTS", "KFAC", "CurvatureOptimizer", "LanczosGGN", "LanczosSFN", "SWATS", "canonical_name", "create",
           "names", "resolve_options"]
