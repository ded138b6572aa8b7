"""Optimizer parameter groups split into weight-decayed matrices and everything else."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.utils import parametrize

DECAYED_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def decayed_parameters(module: nn.Module) -> set[int]:
    """ids of the parameters of ``module`` that weight decay applies to: the ``weight`` of every
    Linear and (transposed) convolution, also under a parametrization such as spectral norm (its
    ``parametrizations.weight.original``), unless the tensor is tied to an Embedding's weight."""
    decayed, embeddings = set(), set()
    for owner in module.modules():
        if isinstance(owner, DECAYED_MODULES):
            weight = owner.parametrizations.weight.parameters(recurse=False) if parametrize.is_parametrized(owner, "weight") else [owner.weight]
            decayed.update(id(p) for p in weight)
        elif isinstance(owner, (nn.Embedding, nn.EmbeddingBag)):
            embeddings.add(id(owner.weight))
    return decayed - embeddings


def split_weight_decay(groups: list[dict[str, Any]], module: nn.Module) -> list[dict[str, Any]]:
    """Each optimizer group of ``module``'s parameters as a decayed group and a ``weight_decay: 0.0``
    group (named ``<name>.no_decay`` when the group has a name), every other key kept on both;
    empty groups are dropped and a parameter given twice appears once. Biases, norm weights,
    embeddings and plain parameters (position embeddings, class and mask tokens) are not decayed."""
    decayed, known = decayed_parameters(module), {id(p) for p in module.parameters()}
    seen: set[int] = set()
    split = []
    for index, group in enumerate(groups):
        params = []
        for p in group["params"]:
            if id(p) not in known:
                raise ValueError(f"split_weight_decay: parameter group {group.get('name', index)!r} holds a parameter that is not in the module")
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        rest = {k: v for k, v in group.items() if k != "params"}
        no_decay = {**rest, "weight_decay": 0.0, **({"name": f"{group['name']}.no_decay"} if "name" in group else {})}
        split += [{**rest, "params": [p for p in params if id(p) in decayed]}, {**no_decay, "params": [p for p in params if id(p) not in decayed]}]
    return [group for group in split if group["params"]]
