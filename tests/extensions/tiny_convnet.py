"""A new backbone in one file, outside ``ptft/``: two 3x3 stride-2 convolutions."""

from __future__ import annotations

import torch
from torch import nn

from ptft.backbones.base import SpatialBackbone


class TinyConvNet(SpatialBackbone):
    """conv-BN-ReLU twice, each halving the resolution; the feature map is 1/4 of the input.

    Args:
        in_channels: image channels.
        width: channels of the first convolution (the second has twice as many).
        dropout: dropout on the pooled features.
    """

    def __init__(self, in_channels: int = 3, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.stage = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = self.feature_channels = 2 * width
        self.feature_stride = 4

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(self.stem(x))
