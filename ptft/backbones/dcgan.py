"""DCGAN-style convolutional encoder (Radford et al. 2015); doubles as a GAN discriminator trunk."""

from __future__ import annotations

import torch
from torch import nn

from ptft.backbones.base import SpatialBackbone
from ptft.backbones.norm import NormKind, norm_layer
from ptft.errors import ConfigError


class DCGANEncoder(SpatialBackbone):
    """Stack of 4x4 stride-2 convolutions with LeakyReLU(0.2), channels doubling per layer.

    Each layer halves the resolution, so ``num_layers=4`` maps 64 px to a 4x4 feature map (and
    32 px to 2x2). As in DCGAN, the first layer has no normalisation.

    Args:
        in_channels: image channels.
        base_width: channels of the first layer.
        num_layers: number of stride-2 layers (the feature map is 1/2**num_layers of the input).
        max_width: cap on the number of channels.
        norm: ``batch``, ``group`` or ``none`` (``none`` suits spectral-normalised critics).
        dropout: dropout on the pooled features.
    """

    fine_tuning_options = ("dropout",)

    def __init__(
        self,
        in_channels: int = 3,
        base_width: int = 64,
        num_layers: int = 4,
        max_width: int = 512,
        norm: NormKind = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_layers):
            width = min(base_width * 2**i, max_width)
            layers += [
                nn.Conv2d(channels, width, kernel_size=4, stride=2, padding=1, bias=norm == "none" or i == 0),
                nn.Identity() if i == 0 else norm_layer(norm, width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = width
        self.layers = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = self.feature_channels = channels
        self.feature_stride = 2**num_layers

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def stage_channels(self) -> list[int]:
        """Each stride-2 block's width."""
        return [self.layers[i].out_channels for i in range(0, len(self.layers), 3)]

    def stage_features(self, x: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """The map after each stride-2 block (conv, norm, LeakyReLU): the DCGAN paper's probe features."""
        maps = []
        for i in range(0, len(self.layers) if depth is None else 3 * depth, 3):
            x = self.layers[i + 2](self.layers[i + 1](self.layers[i](x)))
            maps.append(x)
        return maps

    def layer_groups(self) -> list[list[str]]:
        """One group per stride-2 layer (conv, norm, activation)."""
        groups: list[list[str]] = [[] for _ in range(len(self.layers) // 3)]
        for name, _ in self.layers.named_parameters():
            groups[int(name.split(".")[0]) // 3].append(f"layers.{name}")
        return groups
