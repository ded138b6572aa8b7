"""Critic head: one realness score per image from a backbone's spatial feature map."""

from __future__ import annotations

import torch
from torch import nn


class CriticHead(nn.Module):
    """A linear map of the flattened ``(channels, grid, grid)`` feature map to one score.

    On a DCGAN trunk at 64 px (4x4 map) this is exactly the DCGAN discriminator's last 4x4
    convolution; keeping positions (rather than pooling) lets the critic judge layout.

    Args:
        in_channels: channels of the feature map.
        grid: side of the feature map (image size / backbone stride).
    """

    def __init__(self, in_channels: int, grid: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels * grid * grid, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.flatten(1)).squeeze(1)
