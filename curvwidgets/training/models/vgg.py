"""VGG-11/13/16/19 for 32 x 32 images, with or without BatchNorm.

This is the CIFAR variant of VGG used by the SWA code base of Izmailov et al.
and by Granziol et al., "MLRG Deep Curvature suite" (2020): five stages of
3 x 3 convolutions (padding 1, with bias) each followed by a 2 x 2 max-pool,
which turn a 32 x 32 image into a 512-vector, then a small classifier
``Dropout, Linear(512, 512), ReLU, Dropout, Linear(512, 512), ReLU,
Linear(512, num_classes)``. VGG-16 without BatchNorm has 15,291,300
parameters for 100 classes.

Reference: K. Simonyan and A. Zisserman, "Very deep convolutional networks
for large-scale image recognition", ICLR 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..._validate import positive_int, unit_interval
from ._common import he_normal_fan_out_

__all__ = ["VGG", "VGG_CONFIGS"]

#: Output channels of each 3 x 3 convolution; ``"M"`` is a 2 x 2 max-pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


def _features(config: Sequence[int | str], in_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, int(item), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(item)))
        layers.append(nn.ReLU(inplace=True))
        channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG network for 32 x 32 images (CIFAR form of the SWA / Deep Curvature code).

    Parameters
    ----------
    num_classes : int, default: 10
    in_channels : int, default: 3
    depth : {11, 13, 16, 19}, default: 16
        Number of weight layers (convolutions plus the three linear layers).
    batch_norm : bool, default: False
        Put a ``BatchNorm2d`` between every convolution and its ReLU.
    dropout : float, default: 0.5
        Drop probability of the two dropout layers in the classifier.

    Notes
    -----
    Input ``(B, in_channels, 32, 32)``, output logits ``(B, num_classes)``.
    The five max-pools reduce 32 x 32 to 1 x 1, so other image sizes do not
    fit the ``Linear(512, 512)`` classifier. Convolutions are initialised
    with ``N(0, 2 / (9 * out_channels))`` weights and zero bias; linear and
    BatchNorm layers keep PyTorch's defaults, as in the reference code.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        depth: int = 16,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        if depth not in VGG_CONFIGS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_CONFIGS)}; got {depth!r}")
        dropout = unit_interval("dropout", dropout)
        self.depth = depth
        self.batch_norm = bool(batch_norm)
        self.features = _features(VGG_CONFIGS[depth], in_channels, self.batch_norm)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                he_normal_fan_out_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, 32, 32)`` images to ``(B, num_classes)`` logits."""
        return self.classifier(torch.flatten(self.features(x), 1))
