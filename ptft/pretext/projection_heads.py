"""The heads of joint-embedding pretraining (SimCLR, BYOL, DINO): they map the backbone's pooled
features into the space the loss compares, and are dropped at hand-off."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ptft.errors import ConfigError


def check_dims(**dims: int) -> None:
    """A one-line ConfigError naming the first ``model.<name>`` that is not a positive integer."""
    for name, value in dims.items():
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")


class ProjectionMLP(nn.Sequential):
    """``Linear - BatchNorm - ReLU - Linear``: SimCLR's projector, and BYOL's projector and predictor.

    Args:
        in_dim: input features (the backbone's ``out_dim``, or a projection).
        hidden_dim: width of the hidden layer.
        out_dim: size of the projection.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


class DINOHead(nn.Module):
    """DINO's head: a 3-layer MLP with GELU to a ``bottleneck_dim`` embedding, L2-normalised, then a
    weight-normalised Linear (no bias) to ``out_dim`` logits. With ``norm_last_layer`` the weight
    norm's magnitude is fixed at 1 (not trained), so every logit is a cosine similarity to a unit
    prototype, which the paper found steadier.

    Args:
        in_dim: the backbone's ``out_dim``.
        out_dim: number of logits ("prototypes"); ``model.out_dim``.
        hidden_dim: width of the MLP's hidden layers.
        bottleneck_dim: size of the normalised embedding.
        norm_last_layer: fix the magnitude of the last layer's weight norm at 1.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, norm_last_layer: bool = True) -> None:
        super().__init__()
        check_dims(out_dim=out_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
                                 nn.Linear(hidden_dim, bottleneck_dim))
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, eps=1e-6))
