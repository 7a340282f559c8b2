"""All-CNN-C for 32 x 32 images.

The all-convolutional network of Springenberg et al., CIFAR version C: max
pooling is replaced by 3 x 3 convolutions of stride 2 and the fully connected
layers by 1 x 1 convolutions followed by a global average over space.

=======  =======================================  ===========
layer    operation                                output size
=======  =======================================  ===========
input    dropout 0.2                              32 x 32
conv1-2  3 x 3, 96, ReLU                          32 x 32
conv3    3 x 3, 96, stride 2, ReLU; dropout 0.5   16 x 16
conv4-5  3 x 3, 192, ReLU                         16 x 16
conv6    3 x 3, 192, stride 2, ReLU; dropout 0.5  8 x 8
conv7    3 x 3, 192, no padding, ReLU             6 x 6
conv8    1 x 1, 192, ReLU                         6 x 6
conv9    1 x 1, num_classes                       6 x 6
pool     global average                           1 x 1
=======  =======================================  ===========

With the default dropout this is the network trained in the MLRG Deep
Curvature suite (which took it from DeepOBS), and like there the weights are
initialised Xavier-normal with biases 0.1. Two differences: the strided
convolutions pad one pixel on every side instead of TensorFlow's asymmetric
"same" padding (the output sizes agree), and the class scores are the plain
averages, not passed through a ReLU unless ``relu_logits=True``.

Reference: J. T. Springenberg, A. Dosovitskiy, T. Brox and M. Riedmiller,
"Striving for simplicity: the all convolutional net", ICLR workshop 2015.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._validate import positive_int, unit_interval
from ._common import unit_batch_norm_

__all__ = ["AllCNN"]

# (out_channels, kernel_size, stride, padding, dropout after the ReLU)
_LAYERS = (
    (96, 3, 1, 1, False),
    (96, 3, 1, 1, False),
    (96, 3, 2, 1, True),
    (192, 3, 1, 1, False),
    (192, 3, 1, 1, False),
    (192, 3, 2, 1, True),
    (192, 3, 1, 0, False),
    (192, 1, 1, 0, False),
)


class AllCNN(nn.Module):
    """All-CNN-C (Springenberg et al. 2015), CIFAR version.

    Parameters
    ----------
    num_classes : int, default: 10
    in_channels : int, default: 3
    batch_norm : bool, default: False
        Put a ``BatchNorm2d`` between each of the first eight convolutions and
        its ReLU (those convolutions then have no bias).
    dropout : float, default: 0.5
        Drop probability after each of the two strided convolutions.
    input_dropout : float, default: 0.2
        Drop probability applied to the input image.
    relu_logits : bool, default: False
        Apply a ReLU to the class scores before the average, as in the paper's
        table and in DeepOBS.

    Notes
    -----
    Input ``(B, in_channels, H, W)`` with ``H, W >= 9`` (``32 x 32`` for
    CIFAR), output logits ``(B, num_classes)``. 1,369,738 parameters for 10
    classes without BatchNorm.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.5,
        input_dropout: float = 0.2,
        relu_logits: bool = False,
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        dropout = unit_interval("dropout", dropout)
        input_dropout = unit_interval("input_dropout", input_dropout)
        self.batch_norm = bool(batch_norm)
        layers: list[nn.Module] = [nn.Dropout(input_dropout)]
        channels = in_channels
        for out_channels, kernel, stride, padding, drop_after in _LAYERS:
            layers.append(nn.Conv2d(channels, out_channels, kernel, stride, padding, bias=not self.batch_norm))
            if self.batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if drop_after:
                layers.append(nn.Dropout(dropout))
            channels = out_channels
        layers.append(nn.Conv2d(channels, num_classes, kernel_size=1))
        if relu_logits:
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.xavier_normal_(module.weight)
                    if module.bias is not None:
                        module.bias.fill_(0.1)
                elif isinstance(module, nn.BatchNorm2d):
                    unit_batch_norm_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, 32, 32)`` images to ``(B, num_classes)`` logits."""
        return self.net(x)
