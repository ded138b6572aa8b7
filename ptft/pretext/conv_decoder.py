"""Convolutional decoder: a backbone's spatial feature map back to an image."""

from __future__ import annotations

import torch
from torch import nn
from ptft.errors import ConfigError


class ConvDecoder(nn.Module):
    """Transposed 4x4 stride-2 convolutions (BatchNorm + ReLU), channels halving down to ``width``,
    then a 3x3 convolution to ``out_channels`` and tanh (images live in [-1, 1]).

    Args:
        in_channels: channels of the feature map.
        upsample_factor: the backbone's ``feature_stride``; a power of two.
        out_channels: image channels.
        width: fewest channels of a hidden layer.
    """

    def __init__(self, in_channels: int, upsample_factor: int, out_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        if upsample_factor < 1 or upsample_factor & (upsample_factor - 1):
            raise ConfigError(f"the decoder upsamples by powers of two; the backbone's stride is {upsample_factor}")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(upsample_factor.bit_length() - 1):
            hidden = max(width, channels // 2)
            layers += [
                nn.ConvTranspose2d(channels, hidden, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
            ]
            channels = hidden
        layers += [nn.Conv2d(channels, out_channels, kernel_size=3, padding=1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
