"""Wide residual networks for 32 x 32 images (WideResNet-28x10).

A 3 x 3 stem convolution to 16 channels, three stages of ``n = (depth - 4) / 6``
pre-activation wide basic blocks at widths ``16 k``, ``32 k`` and ``64 k``
(160, 320 and 640 for ``k = 10``; stride 2 between stages), then
BatchNorm-ReLU, global average pooling and one linear layer. A block is
``BN-ReLU-conv3x3(stride)-dropout-BN-ReLU-conv3x3`` plus a shortcut that is the
identity, or a strided 1 x 1 convolution of the block input where the shape
changes.

Convolutions carry a bias by default, as in the SWA code base of Izmailov et
al. that the MLRG Deep Curvature suite uses (36,489,290 parameters for
WideResNet-28x10 on 10 classes); ``bias=False`` gives the bias-free network of
the original paper (36,479,194 parameters).

Reference: S. Zagoruyko and N. Komodakis, "Wide residual networks", BMVC 2016.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._validate import positive_int, unit_interval
from ._common import PreActivationResNet

__all__ = ["WideBasicBlock", "WideResNet"]


class WideBasicBlock(nn.Module):
    """Pre-activation wide basic block.

    Input ``(B, in_channels, H, W)``, output ``(B, out_channels, H / stride, W / stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=bias)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=bias)
            if stride != 1 or in_channels != out_channels
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(self.relu(self.bn1(x))))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + (x if self.shortcut is None else self.shortcut(x))


class WideResNet(PreActivationResNet):
    """WRN-``depth``-``widen_factor`` for 32 x 32 images.

    Parameters
    ----------
    num_classes : int, default: 10
    in_channels : int, default: 3
    depth : int, default: 28
        ``6 n + 4`` with ``n`` blocks per stage (28 gives 4).
    widen_factor : int, default: 10
        Multiplier ``k`` of the stage widths 16, 32, 64.
    dropout : float, default: 0.0
        Drop probability between the two convolutions of each block.
    bias : bool, default: True
        Give every convolution a bias (the SWA / Deep Curvature code); False
        for the bias-free original.

    Notes
    -----
    Input ``(B, in_channels, H, W)`` (``32 x 32`` for CIFAR; any size >= 4
    works thanks to the global average pool), output logits
    ``(B, num_classes)``. Convolutions are initialised with
    ``N(0, 2 / (k * k * out_channels))`` and zero bias, BatchNorm with scale 1
    and shift 0, the linear layer with PyTorch's default.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        num_classes = positive_int("num_classes", num_classes)
        in_channels = positive_int("in_channels", in_channels)
        widen_factor = positive_int("widen_factor", widen_factor)
        dropout = unit_interval("dropout", dropout)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6 n + 4 with n >= 1 (10, 16, 22, 28, ...); got {depth!r}")
        n = (depth - 4) // 6
        self.depth, self.widen_factor = depth, widen_factor
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=bias)
        self._build_stages(lambda cin, width, stride: WideBasicBlock(cin, width, stride, dropout, bias),
                           tuple(16 * widen_factor * 2 ** i for i in range(3)), n, 1, num_classes)
