"""Small models that train in seconds on a CPU: an MLP and a three-layer CNN.

They are the defaults of the embedded demos, where a spectrum must be ready
before the reader loses interest; they are not from a paper.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..._validate import positive_int

__all__ = ["MLP", "SmallCNN"]


def _sizes(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """``values`` as a tuple of ints >= 1, or ``ValueError`` naming ``name`` unless it is a sequence of them."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of ints >= 1; got {values!r}")
    return tuple(positive_int(f"{name}[{index}]", size) for index, size in enumerate(values))


class MLP(nn.Module):
    """Flatten, then ``Linear-ReLU`` for each hidden width, then ``Linear`` to the classes.

    Parameters
    ----------
    num_classes : int, default: 10
    in_channels : int, default: 3
        Channels of a ``(in_channels, 32, 32)`` input; ignored when
        ``input_shape`` is given.
    input_shape : sequence of int, optional
        Shape of one example, e.g. ``(1, 28, 28)`` or ``(20,)``; default
        ``(in_channels, 32, 32)``.
    hidden : sequence of int, default: (512, 256)
        Widths of the hidden layers; ``()`` gives multinomial logistic regression.

    Notes
    -----
    Input ``(B, *input_shape)``, output logits ``(B, num_classes)``; 1,707,274
    parameters with the defaults.

    Examples
    --------
    >>> model = MLP(num_classes=3, input_shape=(20,), hidden=(8,))
    >>> model(torch.zeros(5, 20)).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        input_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (512, 256),
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        if input_shape is None:
            input_shape = (positive_int("in_channels", in_channels), 32, 32)
        input_shape = _sizes("input_shape", input_shape)
        if not input_shape:
            raise ValueError("input_shape must have at least one entry")
        hidden = _sizes("hidden", hidden)
        self.input_shape = input_shape
        widths = (math.prod(input_shape), *hidden)
        layers: list[nn.Module] = [nn.Flatten(1)]
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, *input_shape)`` inputs to ``(B, num_classes)`` logits."""
        return self.net(x)


class SmallCNN(nn.Module):
    """A few 3 x 3 convolutions with ReLU, 2 x 2 max-pools between them, a global average pool and a linear layer.

    Parameters
    ----------
    num_classes : int, default: 10
    in_channels : int, default: 3
    channels : sequence of int, default: (32, 64, 64)
        Output channels of the convolutions; every convolution but the last
        is followed by a 2 x 2 max-pool.
    batch_norm : bool, default: True
        Put a ``BatchNorm2d`` between each convolution and its ReLU (without
        it the network learns the embedded digits far more slowly).

    Notes
    -----
    Input ``(B, in_channels, H, W)`` with ``H, W >= 2 ** (len(channels) - 1)``
    (``4`` by default; ``32 x 32`` for CIFAR), output logits
    ``(B, num_classes)``. 57,130 parameters with the defaults (56,970 without BatchNorm).

    Examples
    --------
    >>> SmallCNN(in_channels=1)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 64),
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        previous = positive_int("in_channels", in_channels)
        channels = _sizes("channels", channels)
        if not channels:
            raise ValueError("channels must have at least one entry")
        layers: list[nn.Module] = []
        for i, width in enumerate(channels):
            layers.append(nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
            if i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))
            previous = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(previous, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits."""
        return self.net(x)
