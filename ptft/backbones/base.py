"""The contract every ptft backbone follows, so any task can use any backbone."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn


class Backbone(nn.Module):
    """A network that is pretrained, handed off and fine-tuned.

    Subclasses set ``out_dim`` (size of the pooled features), ``feature_channels`` and
    ``feature_stride`` (channels and downsampling factor of the spatial feature map) and
    ``dropout`` (applied to pooled features), and implement ``forward_features(x) -> (B, C, H, W)``.
    ``pool`` is global average pooling; override it for other poolings.

    The arguments a subclass was built with are recorded, so a backbone can be rebuilt from its
    ``spec()`` (``{"class_path", "init_args"}``) without repeating its configuration.
    """

    out_dim: int
    feature_channels: int
    feature_stride: int
    dropout: nn.Module

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Backbone, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            if type(self) is cls:  # only the most derived class records its arguments
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                self._init_args = {k: v for k, v in bound.arguments.items() if k != "self"}

        cls.__init__ = recording_init

    def spec(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": ...}`` that rebuilds this backbone (without weights)."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self._init_args)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.dropout(features.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, out_dim)``."""
        return self.pool(self.forward_features(x))

    def compile_regions(self) -> list[nn.Module]:
        """What a task's ``torch_compile`` compiles: each child module with parameters, and each
        element of a ``ModuleList`` (a Transformer's blocks) on its own; the backbone's methods
        call all of them through ``__call__``, which is what ``nn.Module.compile`` compiles."""
        regions: list[nn.Module] = []
        for child in self.children():
            if isinstance(child, nn.ModuleList):
                regions += list(child)
            elif next(child.parameters(), None) is not None:
                regions.append(child)
        return regions

    def adapt_state_dict(self, state: dict[str, torch.Tensor], source_spec: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weights saved by a backbone built from ``source_spec``, adapted to this one before a
        strict load (e.g. a ViT interpolates its position embedding to another image size)."""
        return state

    def layer_groups(self) -> list[list[str]]:
        """Parameter names grouped by depth, input first: the units of layer-wise learning-rate
        decay. By default one group per direct child module (parameters held directly go first);
        backbones override it where a child holds several layers."""
        groups = [[n for n, p in self.named_parameters(recurse=False)]]
        groups += [[f"{name}.{n}" for n, _ in child.named_parameters()] for name, child in self.named_children()]
        return [g for g in groups if g]
