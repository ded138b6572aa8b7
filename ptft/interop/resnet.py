"""torchvision and timm ResNet-18/34/50 <-> ptft :class:`~ptft.backbones.resnet.ResNet`.

ptft's ResNet is torchvision's without its classifier; timm's ``resnet18/34/50`` name their
tensors as torchvision does. Only the stem is renamed (``conv1``/``bn1`` -> ``stem.0``/``stem.1``).
"""

from __future__ import annotations

import re

import torch

from ptft.backbones.resnet import ResNet
from ptft.errors import ConfigError
from ptft.interop.source_weights import SourceWeights

RESNET_CLASS = f"{ResNet.__module__}.{ResNet.__qualname__}"
# (blocks in layer1..4, bottleneck) -> arch
ARCHS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34", ((3, 4, 6, 3), True): "resnet50"}
STEM = {"conv1.": "stem.0.", "bn1.": "stem.1."}


def block_counts(weights: SourceWeights) -> tuple[int, ...]:
    return tuple(len({key.split(".")[1] for key in weights.keys(rf"layer{i}\.\d+\.")}) for i in range(1, 5))


def import_resnet(config: dict | None, weights: SourceWeights) -> tuple[dict, dict[str, torch.Tensor]]:
    """A torchvision or timm ResNet-18/34/50 state dict (``config``: a timm hub config.json, or
    None) as a ptft ResNet with batch norm and the ImageNet stem. The classifier ``fc`` is dropped.
    A missing ``num_batches_tracked`` (timm's files often omit it) becomes 0: it only matters for
    batch norm without momentum, which ResNets do not use."""
    source = weights.source
    counts = block_counts(weights)
    bottleneck = "layer1.0.conv3.weight" in weights
    arch = ARCHS.get((counts, bottleneck))
    if arch is None:
        raise ConfigError(f"{source}: a ResNet with {list(counts)} blocks in layer1-4 ({'bottleneck' if bottleneck else 'basic'} "
                          "blocks); ptft's ResNets are resnet18 [2, 2, 2, 2], resnet34 [3, 4, 6, 3] and resnet50 [3, 4, 6, 3] "
                          "with bottlenecks")
    named = str((config or {}).get("architecture", arch)).split(".")[0]
    if named != arch:
        raise ConfigError(f"{source}: config architecture {named!r} is not the plain {arch} its block counts match; "
                          "ptft builds only torchvision's resnet18/34/50")
    with torch.device("meta"):
        expected = ResNet(arch=arch).state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, target in expected.items():
        name = key
        for ours, theirs in STEM.items():
            if key.startswith(theirs):
                name = ours + key[len(theirs):]
        if name.endswith("num_batches_tracked") and name not in weights:
            state[key] = torch.zeros((), dtype=torch.long)
            continue
        tensor = weights.take(name)
        if tensor.shape != target.shape:
            raise ConfigError(f"{source}: {name} has shape {tuple(tensor.shape)}, {arch} has {tuple(target.shape)}: "
                              "not a plain torchvision/timm ResNet (wider, grouped or a deep stem?)")
        state[key] = tensor
    weights.drop(r"fc\.")
    spec = {"class_path": RESNET_CLASS, "init_args": {"arch": arch, "small_images": False, "norm": "batch"}}
    return spec, state


def export_timm_resnet(backbone: ResNet) -> tuple[dict, dict[str, torch.Tensor]]:
    """A ptft ResNet as timm's ``resnet18/34/50`` without a classifier: a timm hub ``config.json``
    (num_classes 0) and the state dict (torchvision's names, which timm shares). Refused: the
    small-image stem (timm's resnets have the 7x7/stride-2 stem and max-pool) and group or no norm
    (their config names batch norm only)."""
    if not isinstance(backbone, ResNet):
        raise ConfigError(f"export to a timm ResNet takes a ptft ResNet, got {type(backbone).__name__}")
    args = backbone.spec()["init_args"]
    if args["small_images"]:
        raise ConfigError("a ResNet with small_images: true has a 3x3/stride-1 stem without max-pool, which timm's "
                          f"{args['arch']} does not; export one with the ImageNet stem (small_images: false)")
    if args["norm"] != "batch":
        raise ConfigError(f"a ResNet with norm: {args['norm']} has no timm {args['arch']} counterpart: timm's resnets use batch norm")
    state = {}
    for key, tensor in backbone.state_dict().items():
        for ours, theirs in STEM.items():
            key = re.sub(rf"^{re.escape(theirs)}", ours, key)
        state[key] = tensor.detach().clone()
    config = {
        "architecture": args["arch"],
        "num_classes": 0,
        "num_features": backbone.out_dim,
        "global_pool": "avg",
        "pretrained_cfg": {
            "tag": "ptft",
            "custom_load": False,
            "input_size": [3, 224, 224],
            "num_classes": 0,
            "first_conv": "conv1",
            "classifier": "fc",
        },
    }
    return config, state
