"""Named image classifiers and a small language model for training and curvature experiments.

:func:`create` builds a model from its name, :func:`names` lists the names.
The CIFAR networks (VGG, PreResNet, WideResNet, All-CNN-C) follow the models
trained in the MLRG Deep Curvature suite (Granziol et al.), which took them
from the SWA code base of Izmailov et al.; ``MLP`` and ``SmallCNN`` are small
enough to train on a CPU during a demo.

Every image model maps ``(B, in_channels, 32, 32)`` images to
``(B, num_classes)`` logits. ``TinyTransformer`` is a causal language model:
``num_classes`` is its vocabulary size, it maps int64 token ids ``(B, T)`` to
next-token logits ``(B, T, num_classes)`` and ignores ``in_channels``.

Examples
--------
>>> import torch
>>> from curvwidgets.training import models
>>> model = models.create("smallcnn", num_classes=10)
>>> model(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
>>> "PreResNet110" in models.names()
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from torch import nn

from ..._validate import positive_int
from .allcnn import AllCNN
from .preresnet import PreResNet
from .small import MLP, SmallCNN
from .transformer import TinyTransformer
from .vgg import VGG
from .wide_resnet import WideResNet

__all__ = ["MLP", "VGG", "AllCNN", "PreResNet", "SmallCNN", "TinyTransformer", "WideResNet", "canonical_name", "create",
           "names"]


class _Entry(NamedTuple):
    factory: Callable[..., nn.Module]
    fixed: Mapping[str, Any]


def _registry() -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for depth in (11, 13, 16, 19):
        entries[f"VGG{depth}"] = _Entry(VGG, {"depth": depth, "batch_norm": False})
        entries[f"VGG{depth}BN"] = _Entry(VGG, {"depth": depth, "batch_norm": True})
    for depth in (20, 56, 110, 164):
        entries[f"PreResNet{depth}"] = _Entry(PreResNet, {"depth": depth})
    entries["WideResNet28x10"] = _Entry(WideResNet, {"depth": 28, "widen_factor": 10})
    entries["AllCNN"] = _Entry(AllCNN, {})
    entries["MLP"] = _Entry(MLP, {})
    entries["SmallCNN"] = _Entry(SmallCNN, {})
    entries["TinyTransformer"] = _Entry(TinyTransformer, {})
    return entries


_MODELS = _registry()
_BY_LOWER = {name.lower(): name for name in _MODELS}


def names() -> tuple[str, ...]:
    """The model names :func:`create` accepts, in their canonical spelling."""
    return tuple(_MODELS)


def canonical_name(name: str) -> str:
    """The spelling of ``name`` in :func:`names` (matched case-insensitively), or ``ValueError`` listing them."""
    canonical = _BY_LOWER.get(name.lower()) if isinstance(name, str) else None
    if canonical is None:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(_MODELS)}")
    return canonical


def create(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
    """Build the model called ``name`` (case-insensitive), freshly initialised.

    Parameters
    ----------
    name : str
        One of :func:`names`, e.g. ``"VGG16"``, ``"preresnet110"``, ``"SmallCNN"``.
    num_classes : int, default: 10
        Number of output logits (per position for ``TinyTransformer``: its vocabulary size).
    in_channels : int, default: 3
        Channels of the input images (ignored by ``TinyTransformer``).
    **kwargs
        Options of the model's class (e.g. ``dropout`` for :class:`VGG` and
        :class:`WideResNet`, ``hidden`` for :class:`MLP`, ``batch_norm`` for
        :class:`AllCNN`, ``d_model``, ``n_layers``, ``n_heads`` and
        ``context`` for :class:`TinyTransformer`); the options the name already fixes, such as a
        VGG's depth, cannot be given.

    Returns
    -------
    torch.nn.Module
        Maps ``(B, in_channels, 32, 32)`` to ``(B, num_classes)`` logits
        (``TinyTransformer``: token ids ``(B, T)`` to ``(B, T, num_classes)``).
        Seed ``torch.manual_seed`` beforehand for a reproducible initialisation.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), a
        ``num_classes`` or ``in_channels`` that is not a positive int, or a
        keyword the name already fixes.
    """
    canonical = canonical_name(name)
    num_classes = positive_int("num_classes", num_classes)
    in_channels = positive_int("in_channels", in_channels)
    entry = _MODELS[canonical]
    clash = sorted(set(kwargs) & set(entry.fixed))
    if clash:
        raise ValueError(f"{canonical} fixes {', '.join(clash)}; use the class {entry.factory.__name__} to change it")
    return entry.factory(num_classes=num_classes, in_channels=in_channels, **entry.fixed, **kwargs)
