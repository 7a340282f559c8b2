"""Optimisers by name: ``create("sgd", model, lr=0.1)``, case-insensitive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from ... import _validate as check
from .kfac import KFAC
from .lanczos_newton import LanczosGGN, LanczosSFN
from .swats import SWATS

__all__ = ["DEFAULTS", "canonical_name", "create", "names", "resolve_options"]

Validator = Callable[[str, Any], Any]


@dataclass(frozen=True)
class _Spec:
    """How to build one optimiser: the keyword arguments it takes (with their checks) and the builder."""

    build: Callable[..., torch.optim.Optimizer]
    kwargs: Mapping[str, Optional[Validator]]  # None: checked by the optimiser itself
    needs_loss_fn: bool = False


def _trainable(model: nn.Module) -> List[nn.Parameter]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    return params


def _torch(cls: type) -> Callable[..., torch.optim.Optimizer]:
    def build(model: nn.Module, loss_fn: Any, **kwargs: Any) -> torch.optim.Optimizer:
        return cls(_trainable(model), **kwargs)

    return build


_LANCZOS_KWARGS: Dict[str, Optional[Validator]] = dict.fromkeys(
    ("lanczos_steps", "damping", "momentum", "weight_decay", "start", "residual", "params", "bn_mode", "backend", "seed")
)

_SPECS: Dict[str, _Spec] = {
    "SGD": _Spec(_torch(torch.optim.SGD), {
        "momentum": check.unit_interval, "dampening": lambda n, v: check.unit_interval(n, v, closed_right=True),
        "weight_decay": check.non_negative, "nesterov": check.boolean,
    }),
    "Adam": _Spec(_torch(torch.optim.Adam), {
        "betas": check.betas, "eps": check.non_negative, "weight_decay": check.non_negative, "amsgrad": check.boolean,
    }),
    "AdamW": _Spec(_torch(torch.optim.AdamW), {
        "betas": check.betas, "eps": check.non_negative, "weight_decay": check.non_negative, "amsgrad": check.boolean,
    }),
    "SWATS": _Spec(lambda model, loss_fn, **kw: SWATS(_trainable(model), **kw),
                   dict.fromkeys(("betas", "eps", "weight_decay", "switch_tol"))),
    "KFAC": _Spec(lambda model, loss_fn, **kw: KFAC(model, **kw),
                  dict.fromkeys(("momentum", "weight_decay", "damping", "stat_decay", "stat_every",
                                 "inverse_every", "kl_clip", "pi_damping"))),
    "LanczosSFN": _Spec(lambda model, loss_fn, **kw: LanczosSFN(model, loss_fn, **kw), _LANCZOS_KWARGS, True),
    "LanczosGGN": _Spec(lambda model, loss_fn, **kw: LanczosGGN(model, loss_fn, **kw), _LANCZOS_KWARGS, True),
}

#: The options :func:`create` (and so ``cw.train`` and ``curvwidgets train``) fills in for each optimiser when
#: they are not given; every other option keeps the default of the optimiser's class. SGD takes the paper's
#: VGG settings; the Lanczos-Newton rate of 0.1 trains the shipped models (1.0, the undamped Newton step,
#: diverges on an MLP on the embedded digits in the first epoch).
DEFAULTS: Dict[str, Mapping[str, Any]] = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    "Adam": {"lr": 1e-3},
    "AdamW": {"lr": 1e-3},
    "SWATS": {"lr": 1e-3},
    "KFAC": {"lr": 0.01},
    "LanczosSFN": {"lr": 0.1},
    "LanczosGGN": {"lr": 0.1},
}


def names() -> Tuple[str, ...]:
    """The optimiser names :func:`create` accepts (in any letter case)."""
    return tuple(_SPECS)


def canonical_name(name: Any) -> str:
    """The registered spelling of the optimiser ``name`` (any letter case, spaces around ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {names()}; got {type(name).__name__}")
    for known in _SPECS:
        if known.lower() == name.strip().lower():
            return known
    raise ValueError(f"unknown optimiser {name!r}; valid names are {', '.join(names())} (any letter case)")


def create(
    name: str,
    model: nn.Module,
    loss_fn: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    lr: Optional[float] = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build the optimiser ``name`` over the trainable parameters of ``model``.

    Parameters
    ----------
    name : str
        One of :func:`names` (``"SGD"``, ``"Adam"``, ``"AdamW"``, ``"SWATS"``,
        ``"KFAC"``, ``"LanczosSFN"``, ``"LanczosGGN"``), in any letter case.
    model : nn.Module
        Its parameters with ``requires_grad`` are optimised; K-FAC hooks its
        layers, the Lanczos optimisers build curvature operators on it.
    loss_fn : callable, optional
        Required by ``LanczosSFN`` and ``LanczosGGN`` (their curvature is that
        of ``loss_fn(model(inputs), targets)``); ignored by the others, so a
        training loop may pass it to every optimiser.
    lr : float, optional
        Learning rate > 0; default ``DEFAULTS[name]["lr"]`` (SGD 0.05,
        Adam/AdamW/SWATS 1e-3, KFAC 0.01, LanczosSFN/LanczosGGN 0.1).
    **kwargs
        The optimiser's own options; those in :data:`DEFAULTS` (SGD:
        ``momentum=0.9, weight_decay=5e-4``) are filled in when not given, the
        rest keep the class's defaults:

        - SGD: ``momentum``, ``dampening``, ``weight_decay``, ``nesterov`` (``torch.optim.SGD``)
        - Adam, AdamW: ``betas``, ``eps``, ``weight_decay``, ``amsgrad`` (``torch.optim``)
        - SWATS: ``betas``, ``eps``, ``weight_decay``, ``switch_tol`` (:class:`SWATS`)
        - KFAC: ``momentum``, ``weight_decay``, ``damping``, ``stat_decay``,
          ``stat_every``, ``inverse_every``, ``kl_clip``, ``pi_damping`` (:class:`KFAC`)
        - LanczosSFN, LanczosGGN: ``lanczos_steps``, ``damping``, ``momentum``,
          ``weight_decay``, ``start``, ``residual``, ``params``, ``bn_mode``,
          ``backend``, ``seed`` (:class:`LanczosSFN`)

    Returns
    -------
    torch.optim.Optimizer
        For ``LanczosSFN`` and ``LanczosGGN`` a
        :class:`~curvwidgets.training.optim.base.CurvatureOptimizer`: call its
        ``set_batch(inputs, targets)`` before every ``step()``.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the valid ones); a value out of
        range (the message names the argument); ``loss_fn`` missing where needed.
    TypeError
        A keyword the optimiser does not take (the message lists those it takes).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> type(create("sgd", model, lr=0.1, momentum=0.9)).__name__
    'SGD'
    >>> create("adagrad", model)
    Traceback (most recent call last):
    ...
    ValueError: unknown optimiser 'adagrad'; valid names are SGD, Adam, AdamW, SWATS, KFAC, LanczosSFN, LanczosGGN (any letter case)
    """
    options = resolve_options(name, lr, **kwargs)
    canonical = canonical_name(name)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    spec = _SPECS[canonical]
    if spec.needs_loss_fn and loss_fn is None:
        raise ValueError(f"{canonical} needs loss_fn (e.g. torch.nn.CrossEntropyLoss()): its curvature is that of the loss")
    return spec.build(model, loss_fn, **options)


def resolve_options(name: str, lr: Optional[float] = None, **kwargs: Any) -> Dict[str, Any]:
    """The options :func:`create` builds ``name`` with: :data:`DEFAULTS` filled in, each key known, values checked.

    Values the registry has no check for are checked by the optimiser's
    class when it is built. A training loop records this dict as the run's
    optimiser settings.

    Raises
    ------
    ValueError, TypeError
        As :func:`create`, for everything but the model and ``loss_fn``.

    Examples
    --------
    >>> resolve_options("SGD", lr=0.1)
    {'lr': 0.1, 'momentum': 0.9, 'weight_decay': 0.0005}
    """
    canonical = canonical_name(name)
    spec = _SPECS[canonical]
    unknown = sorted(set(kwargs) - set(spec.kwargs))
    if unknown:
        raise TypeError(f"{canonical} takes no keyword argument(s) {unknown}; it takes lr and {sorted(spec.kwargs)}")
    options = {**DEFAULTS[canonical], **kwargs, **({} if lr is None else {"lr": check.positive("lr", lr)})}
    checked = {key: _checked(spec, key, value) for key, value in options.items()}
    nesterov_ok = checked.get("momentum", 0) > 0 and checked.get("dampening", 0) == 0
    if canonical == "SGD" and checked.get("nesterov") and not nesterov_ok:
        raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
    return checked


def _checked(spec: _Spec, key: str, value: Any) -> Any:
    """``value`` of the option ``key`` after its check (the optimiser checks those without one, and ``lr``)."""
    validator = spec.kwargs.get(key)
    return validator(key, value) if validator is not None else value
