"""Argument checks and weight initialisers shared by the model families."""

from __future__ import annotations

import math

import torch
from torch import nn


def positive_int(value: object, name: str) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= 1, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


def probability(value: object, name: str) -> float:
    """Return ``value`` as a ``float`` if it lies in ``[0, 1)``, else raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1); got {value!r}")
    return float(value)


@torch.no_grad()
def he_normal_fan_out_(conv: nn.Conv2d) -> None:
    """He initialisation used by the CIFAR reference code: ``N(0, 2 / n)`` with ``n = k_h * k_w * out_channels``; bias 0."""
    n = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
    conv.weight.normal_(0.0, math.sqrt(2.0 / n))
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def unit_batch_norm_(bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Scale 1 and shift 0, so a fresh BatchNorm layer only standardises."""
    bn.weight.fill_(1.0)
    bn.bias.zero_()
