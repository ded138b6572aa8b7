"""ResNet trunks from torchvision.models, with a stem for small images."""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import nn
from torchvision import models

from ptft.backbones.base import SpatialBackbone
from ptft.backbones.norm import NormKind, norm_layer
from ptft.errors import ConfigError

_OUT_DIM = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class ResNet(SpatialBackbone):
    """torchvision ResNet without its classifier, returning globally average-pooled features.

    Args:
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        small_images: replace the 7x7/stride-2 stem and max-pool by a 3x3/stride-1 conv, for
            32-64 px inputs (CIFAR-style); the feature map is then 1/8 of the input, else 1/32.
        norm: ``batch``, ``group`` or ``none``.
        dropout: dropout on the pooled features.
        zero_init_residual: zero the last norm of each residual block (torchvision's option).
    """

    fine_tuning_options = ("dropout",)

    def __init__(
        self,
        arch: Literal["resnet18", "resnet34", "resnet50"] = "resnet18",
        small_images: bool = False,
        norm: NormKind = "batch",
        dropout: float = 0.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if arch not in _OUT_DIM:
            raise ConfigError(f"arch must be one of {sorted(_OUT_DIM)}, got {arch!r}")
        if norm == "none" and zero_init_residual:
            raise ConfigError("zero_init_residual needs a norm layer; use norm='batch' or 'group'")
        net = getattr(models, arch)(
            weights=None,
            norm_layer=functools.partial(norm_layer, norm),
            zero_init_residual=zero_init_residual,
        )
        if small_images:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.dropout = nn.Dropout(dropout)
        self.out_dim = self.feature_channels = _OUT_DIM[arch]
        self.feature_stride = 8 if small_images else 32

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def stage_channels(self) -> list[int]:
        """Stem, layer1 ... layer4."""
        expansion = type(self.layer1[0]).expansion  # 1 for BasicBlock (resnet18/34), 4 for Bottleneck (resnet50)
        return [64, *(width * expansion for width in (64, 128, 256, 512))]

    def stage_features(self, x: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """The maps after the stem and after each of layer1 ... layer4 (the last is ``forward_features``)."""
        maps = [self.stem(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[:None if depth is None else depth - 1]:
            maps.append(layer(maps[-1]))
        return maps[:depth]
