"""Weight initialisers and the residual-network body shared by the model families."""

from __future__ import annotations

import math

import torch
from torch import nn


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


class PreActivationResNet(nn.Module):
    """Base of the pre-activation residual networks: ``conv1``, three stages, BN-ReLU, global pool, linear.

    A subclass sets ``self.conv1`` (16 output channels) and then calls
    :meth:`_build_stages`; the stages have strides 1, 2, 2.
    """

    def _build_stages(self, make_block, widths, blocks_per_stage: int, expansion: int, num_classes: int) -> None:
        """Stages of ``make_block(in_channels, width, stride)`` blocks (output ``width * expansion`` channels), the head, and the initialisation."""
        channels = 16
        stages = []
        for width, stride in zip(widths, (1, 2, 2)):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(make_block(channels, width, stride if i == 0 else 1))
                channels = width * expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                he_normal_fan_out_(module)
            elif isinstance(module, nn.BatchNorm2d):
                unit_batch_norm_(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, H, W)`` images to ``(B, num_classes)`` logits."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.pool(self.relu(self.bn(x)))
        return self.fc(torch.flatten(x, 1))
