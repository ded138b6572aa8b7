"""The contracts every ptft backbone follows, one per input kind, so any task can use any backbone
of the kind its data gives.

* :class:`SpatialBackbone` (images): ``forward_features(x) -> (B, C, H, W)`` with its
  ``feature_channels`` and ``feature_stride``.
* :class:`SequenceBackbone` (text, audio): ``forward_features(x) -> SequenceFeatures`` holding
  ``(B, T, C)`` states and a padding mask.

Both give pooled features ``(B, out_dim)`` from ``forward`` and ``layer_groups()`` for layer-wise
learning-rate decay, and record the arguments they were built with (``spec()``), so a backbone is
rebuilt from an export or checkpoint without repeating its configuration.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import nn

from ptft.backbones.sizes import check_memory, sizes_named
from ptft.errors import ConfigError

if TYPE_CHECKING:
    from ptft.data.spec import DataSpec


class HandoffModule(nn.Module):
    """A module that can cross from one run to another: it records the arguments it was built with,
    so ``spec()`` rebuilds it (without weights) from a checkpoint or export. Backbones are
    handoff modules; so are task heads a fine-tuned model exports with it (``ptft.heads``).
    Sizes too large for the memory are refused before anything is allocated (:mod:`ptft.backbones.sizes`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: HandoffModule, *args: Any, **kw: Any) -> None:
            if type(self) is not cls:  # a base class's __init__: the most derived class checks and records
                return init(self, *args, **kw)
            bound = signature.bind(self, *args, **kw)
            arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
            with sizes_named(cls.__name__, arguments):
                check_memory(lambda: cls(*args, **kw), cls.__name__, arguments)
                init(self, *args, **kw)
            bound.apply_defaults()
            self._init_args = {k: v for k, v in bound.arguments.items() if k != "self"}

        cls.__init__ = recording_init

    def spec(self) -> dict[str, Any]:
        """``{"class_path": ..., "init_args": ...}`` that rebuilds this module (without weights)."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self._init_args)}


class Backbone(HandoffModule):
    """A network that is pretrained, handed off and fine-tuned.

    Subclasses set ``out_dim`` (size of the pooled features) and ``dropout`` (applied to pooled
    features). ``input_kind`` names what the backbone reads (``image``, ``text``, ``audio``); it must
    match the ``input_kind`` of the DataModule's :class:`~ptft.data.spec.DataSpec`.
    ``fine_tuning_options`` names the init args fine-tuning may change (``model.backbone_overrides``):
    those the pretrained weights fit whatever their value (dropout, drop path, pooling); the others
    are the architecture, which fine-tuning takes from the pretrained backbone.
    """

    input_kind: ClassVar[str]
    fine_tuning_options: ClassVar[tuple[str, ...]] = ()
    out_dim: int
    dropout: nn.Module

    def check_data(self, spec: DataSpec) -> None:
        """Raise a ConfigError if this backbone cannot read the data ``spec`` describes."""
        if spec.input_kind != self.input_kind:
            raise ConfigError(
                f"the data gives {spec.input_kind} inputs, but the backbone {type(self).__name__} reads "
                f"{self.input_kind} inputs; use a backbone for {spec.input_kind} data"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, out_dim)``."""
        return self.dropout(self.pool(self.forward_features(x)))

    def forward_features(self, x: torch.Tensor) -> Any:
        raise NotImplementedError

    def pool(self, features: Any) -> torch.Tensor:
        raise NotImplementedError

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

    def with_fine_tuning_options(self, overrides: dict[str, Any]) -> Backbone:
        """This backbone rebuilt with the init args in ``overrides``, with its weights. Only
        ``fine_tuning_options`` may be overridden; any other key is a ConfigError. The rebuild
        draws no random numbers, so the rest of a model initialises as it would without it."""
        for key in overrides:
            if key not in self.fine_tuning_options:
                raise ConfigError(
                    f"model.backbone_overrides.{key}: fine-tuning keeps the architecture of the {type(self).__name__} it is given; "
                    f"it may override only {', '.join(self.fine_tuning_options) or 'nothing'}"
                )
        spec = self.spec()
        with torch.random.fork_rng(devices=[]):
            rebuilt = type(self)(**{**spec["init_args"], **overrides})
        rebuilt.load_state_dict(rebuilt.adapt_state_dict(self.state_dict(), spec))
        return rebuilt

    def with_fresh_top_groups(self, count: int) -> Backbone:
        """This backbone with the parameters of its last ``count`` :meth:`layer_groups` (the layers
        nearest the output), and the buffers of the modules holding them, drawn afresh as a random
        init of the same spec draws them; every other weight is kept. Draws from torch's global
        random stream."""
        groups = self.layer_groups()
        if not 0 < count < len(groups):
            raise ConfigError(f"model.reinit_top_groups must be between 1 and {len(groups) - 1} for a "
                              f"{type(self).__name__} of {len(groups)} layer groups, got {count}")
        names = {name for group in groups[-count:] for name in group}
        owners = {name.rpartition(".")[0] for name in names}
        buffers = {name for name, _ in self.named_buffers() if name.rpartition(".")[0] in owners}
        fresh = type(self)(**self.spec()["init_args"]).state_dict()
        self.load_state_dict({**self.state_dict(), **{k: fresh[k] for k in names | buffers}})
        return self

    def layer_groups(self) -> list[list[str]]:
        """Parameter names grouped by depth, input first: the units of layer-wise learning-rate
        decay. By default one group per direct child module (parameters held directly go first);
        backbones override it where a child holds several layers."""
        groups = [[n for n, p in self.named_parameters(recurse=False)]]
        groups += [[f"{name}.{n}" for n, _ in child.named_parameters()] for name, child in self.named_children()]
        return [g for g in groups if g]


def transformer_layer_groups(backbone: nn.Module, num_blocks: int) -> list[list[str]]:
    """Embeddings (everything outside ``blocks.*`` and ``norm.*``), each of ``blocks.0`` ...,
    then the final ``norm``: the layer groups of a Transformer backbone."""
    names = [n for n, _ in backbone.named_parameters()]
    blocks = [[n for n in names if n.startswith(f"blocks.{i}.")] for i in range(num_blocks)]
    embeddings = [n for n in names if not n.startswith(("blocks.", "norm."))]
    return [embeddings, *blocks, [n for n in names if n.startswith("norm.")]]


class SpatialBackbone(Backbone):
    """A backbone of images: ``forward_features(x) -> (B, feature_channels, H / feature_stride,
    W / feature_stride)``; ``pool`` is the global average."""

    input_kind: ClassVar[str] = "image"
    feature_channels: int
    feature_stride: int

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features.mean(dim=(2, 3))

    def stage_channels(self) -> list[int]:
        """Channels of each map :meth:`stage_features` returns, input first; empty when the backbone
        has no stages to probe (multi-layer probes refuse it)."""
        return []

    def stage_features(self, x: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """The feature map ``(B, C_i, H_i, W_i)`` after each stage (ResNet: stem and each layer;
        DCGAN encoder: each stride-2 block; ViT: each block's patch tokens as a grid), input first:
        what multi-layer linear probes pool (``model.probe_layers``). ``depth``: run and return only
        the first ``depth`` stages."""
        raise NotImplementedError(f"{type(self).__name__} has no stages")


class SequenceFeatures(NamedTuple):
    """States of a sequence backbone: ``states`` ``(B, T, C)`` and ``mask`` ``(B, T)``, True at
    real (non-padding) positions; ``mask`` is None when nothing is padded."""

    states: torch.Tensor
    mask: torch.Tensor | None


POOLS = ("cls", "mean", "last")


class SequenceBackbone(Backbone):
    """A backbone of sequences (tokens, audio frames): ``forward_features(x) -> SequenceFeatures``.
    ``pool`` takes the first position (``cls``), the ``mean`` of the real positions, or the
    ``last`` real one, as ``pool_kind`` says."""

    pool_kind: str = "mean"

    @staticmethod
    def check_pool(pool: str) -> str:
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
        return pool

    def pool(self, features: SequenceFeatures) -> torch.Tensor:
        states, mask = features
        if mask is None:
            mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        if self.pool_kind == "cls":
            return states[:, 0]
        if self.pool_kind == "mean":
            weights = mask.to(states.dtype)[..., None]
            return (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        last = (mask.sum(1) - 1).clamp(min=0)
        return states[torch.arange(len(states), device=states.device), last]
