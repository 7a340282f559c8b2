"""Pre-activation ResNets for 32 x 32 images (PreResNet-20/56/110/164).

The CIFAR architecture of He et al. as used in the SWA code base of Izmailov
et al. and in the MLRG Deep Curvature suite: a 3 x 3 stem convolution to 16
channels, three stages of residual blocks at widths 16, 32 and 64 (stride 2
between stages), then BatchNorm-ReLU, global average pooling and one linear
layer. Blocks are pre-activation (BN-ReLU-conv). Below depth 44 they are
basic blocks (two 3 x 3 convolutions, depth ``6 n + 2``); from depth 44 on
they are bottleneck blocks (1 x 1, 3 x 3, 1 x 1 convolutions, expansion 4,
depth ``9 n + 2``). Convolutions have no bias; a block whose shape changes
adds a 1 x 1 convolution (with the block's stride) on its shortcut.

Reference: K. He, X. Zhang, S. Ren and J. Sun, "Identity mappings in deep
residual networks", ECCV 2016.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._validate import positive_int
from ._common import PreActivationResNet

__all__ = ["PreActBasicBlock", "PreActBottleneck", "PreResNet", "preresnet_layout"]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class PreActBasicBlock(nn.Module):
    """``x + conv3x3(relu(bn(conv3x3(relu(bn(x))))))``; output has ``planes`` channels.

    Input ``(B, in_channels, H, W)``, output ``(B, planes, H / stride, W / stride)``.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck ``1x1 (planes) -> 3x3 (planes, stride) -> 1x1 (4 planes)`` plus shortcut.

    Input ``(B, in_channels, H, W)``, output ``(B, 4 * planes, H / stride, W / stride)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


Block = type[PreActBasicBlock] | type[PreActBottleneck]


def preresnet_layout(depth: int) -> tuple[Block, int]:
    """The block type and the number ``n`` of blocks per stage for a PreResNet of ``depth`` layers.

    Raises
    ------
    ValueError
        If ``depth`` is neither ``6 n + 2`` below 44 nor ``9 n + 2`` from 44 on.

    Examples
    --------
    >>> preresnet_layout(20)[1], preresnet_layout(164)[1]
    (3, 18)
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8:
        raise ValueError(f"PreResNet depth must be an int >= 8; got {depth!r}")
    if depth < 44:
        if (depth - 2) % 6:
            raise ValueError(f"a PreResNet below depth 44 has basic blocks and depth 6 n + 2 (8, 14, 20, ...); got {depth}")
        return PreActBasicBlock, (depth - 2) // 6
    if (depth - 2) % 9:
        raise ValueError(
            f"a PreResNet of depth >= 44 has bottleneck blocks and depth 9 n + 2 (47, 56, 110, 164, ...); got {depth}"
        )
    return PreActBottleneck, (depth - 2) // 9


class PreResNet(PreActivationResNet):
    """Pre-activation ResNet for 32 x 32 images (CIFAR form of the SWA / Deep Curvature code).

    Parameters
    ----------
    num_classes : int, default: 10
    in_channels : int, default: 3
    depth : int, default: 110
        ``6 n + 2`` (basic blocks) below 44, ``9 n + 2`` (bottlenecks) from 44 on;
        see :func:`preresnet_layout`.

    Notes
    -----
    Input ``(B, in_channels, H, W)`` (``32 x 32`` for CIFAR; the global
    average pool accepts any size >= 4), output logits ``(B, num_classes)``.
    Convolutions are initialised with ``N(0, 2 / (k * k * out_channels))``,
    BatchNorm with scale 1 and shift 0, the linear layer with PyTorch's default.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 110) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        block, n = preresnet_layout(depth)
        self.depth = depth
        self.conv1 = _conv3x3(in_channels, 16)
        self._build_stages(block, (16, 32, 64), n, block.expansion, num_classes)
