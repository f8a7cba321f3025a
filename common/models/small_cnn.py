"""``small-cnn``: the built-in default base network.

Sized for scikit-learn's 8×8 ``digits`` (it trains in seconds on a CPU) but works on any
input size thanks to adaptive pooling. Its modules are named like torchvision's ResNets
(``stem``, ``layer1``, ``layer2``, ``fc``) so that tangent scopes read the same way for
every architecture: the stem stays frozen, the stages and the head can be linearised.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class SmallCNN(nn.Module):
    """conv-bn-relu stem, two conv stages (the first one pooled), global pooling, linear head."""

    def __init__(self, *, num_classes: int, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        self.layer1 = nn.Sequential(
            *_conv_bn_relu(width, 2 * width), nn.MaxPool2d(kernel_size=2, ceil_mode=True)
        )
        self.layer2 = nn.Sequential(*_conv_bn_relu(2 * width, 4 * width))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def small_cnn(*, num_classes: int, in_channels: int = 1) -> SmallCNN:
    """Build an untrained :class:`SmallCNN` (weights follow torch's default initialisation)."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels)
