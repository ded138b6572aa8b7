"""Normalisation layers selectable by name from a config."""

from typing import Literal

from torch import nn
from ptft.errors import ConfigError

NormKind = Literal["batch", "group", "none"]


def norm_layer(kind: NormKind, channels: int) -> nn.Module:
    """BatchNorm2d, GroupNorm (up to 32 groups that divide ``channels``) or Identity."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm must be one of 'batch', 'group', 'none', got {kind!r}")
