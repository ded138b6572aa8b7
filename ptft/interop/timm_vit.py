"""timm ``VisionTransformer`` <-> ptft :class:`~ptft.backbones.vit.ViT`.

timm's plain ViT is ptft's: pre-LN blocks with a fused ``qkv``, a learned position embedding
with (default) or without (``no_embed_class``) a slot for the class token, a final LayerNorm.
The variants timm builds from the same class with more parts (layer scale, register tokens,
QK norm, a pre-norm, ``fc_norm``, attention pooling) are refused, naming the tensor.

Weights do not record the number of heads, the LayerNorm epsilon or the activation: they come from
the timm hub config's ``model_args`` when given, else timm's ViT defaults (head dimension 64,
epsilon 1e-6, exact GELU).
"""

from __future__ import annotations

import math

import torch

from ptft.backbones.vit import ViT
from ptft.errors import ConfigError
from ptft.interop.hf_vit import VIT_CLASS, mlp_ratio_of
from ptft.interop.source_weights import SourceWeights

TIMM_EPS = 1e-6
TIMM_HEAD_DIM = 64
EXPORT_ARCHITECTURE = "vit_base_patch16_224"  # any vit_* function: model_args override all its sizes

# Tensors of timm ViT variants ptft's ViT does not compute: key pattern -> what they are.
REFUSED = {
    r"reg_token": "register tokens (reg_tokens)",
    r"norm_pre\.": "a LayerNorm before the blocks (pre_norm, CLIP's)",
    r"fc_norm\.": "a LayerNorm after pooling instead of before it (fc_norm, global_pool='avg')",
    r"attn_pool\.": "attention pooling (global_pool='map')",
    r"blocks\.\d+\.ls[12]\.": "layer scale (init_values)",
    r"blocks\.\d+\.attn\.(q_norm|k_norm|norm)\.": "QK or attention-output norm (qk_norm, scale_attn_norm)",
    r"blocks\.\d+\.mlp\.norm\.": "an MLP norm (scale_mlp_norm)",
    r"patch_embed\.norm\.": "a patch-embedding norm (embed_norm_layer)",
}

# model_args keys a timm hub config may hold and ptft reads or may ignore (rates of training-only
# dropout, initialisation, input-size handling); any other is refused by name.
READ_ARGS = {"img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias", "class_token",
             "no_embed_class", "global_pool", "fc_norm", "act_layer", "num_classes"}
INERT_ARGS = {"drop_rate", "pos_drop_rate", "patch_drop_rate", "proj_drop_rate", "attn_drop_rate", "drop_path_rate", "weight_init",
              "fix_init", "dynamic_img_size", "dynamic_img_pad", "strict_img_size"}
DEFAULT_ARGS = {"reg_tokens": 0, "pre_norm": False, "final_norm": True, "qk_norm": False, "init_values": None, "pos_embed": "learn",
                "proj_bias": True, "patch_bias": True}
TIMM_ACTIVATIONS = {None: "gelu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}


def check_model_args(model_args: dict, source: str) -> None:
    for key, value in model_args.items():
        if key in READ_ARGS or key in INERT_ARGS:
            continue
        if key in DEFAULT_ARGS and value == DEFAULT_ARGS[key]:
            continue
        raise ConfigError(f"{source}: timm model_args {key}={value!r} has no counterpart in ptft's ViT")
    if model_args.get("act_layer") not in TIMM_ACTIVATIONS:
        raise ConfigError(f"{source}: timm model_args act_layer={model_args['act_layer']!r}: ptft's ViT computes gelu or gelu_tanh")
    if model_args.get("global_pool", "token") not in ("token", "avg", ""):
        raise ConfigError(f"{source}: timm model_args global_pool={model_args['global_pool']!r}: ptft pools the class token or the mean")
    if model_args.get("fc_norm"):
        raise ConfigError(f"{source}: timm model_args fc_norm=True normalises after pooling; ptft's ViT normalises the tokens")


def patch_count(length: int, class_slot: bool) -> int | None:
    """The side of the square patch grid a position embedding of ``length`` rows covers, or None."""
    patches = length - class_slot
    side = math.isqrt(max(patches, 0))
    return side if side > 0 and side * side == patches else None


def import_timm_vit(config: dict | None, weights: SourceWeights) -> tuple[dict, dict[str, torch.Tensor]]:
    """A timm VisionTransformer state dict (``config``: its hub config.json, or None) as a ptft ViT
    with learned positions. The head is dropped; a missing qkv or patch-embedding bias
    (``qkv_bias=False``) becomes zeros (the same function)."""
    source = weights.source
    model_args = dict((config or {}).get("model_args") or {})
    check_model_args(model_args, source)
    for pattern, what in REFUSED.items():
        found = weights.keys(pattern)
        if found:
            raise ConfigError(f"{source}: {found[0]} is {what}, which ptft's ViT does not have")
    if "pos_embed" not in weights:
        raise ConfigError(f"{source}: the timm ViT has no pos_embed (pos_embed='none'); ptft's ViT adds position embeddings")

    patch = weights.take("patch_embed.proj.weight")
    width, in_channels, patch_size, patch_w = patch.shape
    if patch_size != patch_w:
        raise ConfigError(f"{source}: patch_embed.proj.weight has non-square {patch_size}x{patch_w} patches; ptft's are square")
    class_token = "cls_token" in weights
    positions = weights.take("pos_embed")[0]
    no_embed_class = model_args.get("no_embed_class")
    if no_embed_class is None:  # the length tells: N + 1 rows with a class slot, N without
        no_embed_class = not (class_token and patch_count(len(positions), True))
    class_slot = class_token and not no_embed_class
    side = patch_count(len(positions), class_slot)
    if side is None:
        raise ConfigError(f"{source}: pos_embed has {len(positions)} rows, not {'1 + ' if class_slot else ''}a square patch grid")
    depth = len({key.split(".")[1] for key in weights.keys(r"blocks\.\d+\.")})
    heads = model_args.get("num_heads")
    if heads is None:
        if width % TIMM_HEAD_DIM:
            raise ConfigError(f"{source}: embed_dim {width} is not a multiple of timm's usual head dimension {TIMM_HEAD_DIM} and the "
                              "config gives no model_args.num_heads; give the hub config.json with num_heads")
        heads = width // TIMM_HEAD_DIM
    args = {
        "image_size": side * patch_size,
        "patch_size": patch_size,
        "depth": depth,
        "width": width,
        "heads": heads,
        "mlp_ratio": mlp_ratio_of(width, weights.state["blocks.0.mlp.fc1.weight"].shape[0], f"{source}: blocks.0.mlp.fc1 size"),
        "position_embedding": "learned",
        "class_token": class_token,
        "class_token_position": class_slot,
        "pool": "cls" if class_token and model_args.get("global_pool") != "avg" else "mean",
        "in_channels": in_channels,
        "norm_eps": TIMM_EPS,
        "activation": TIMM_ACTIVATIONS[model_args.get("act_layer")],
    }
    state = {
        "patch_embed.weight": patch,
        "patch_embed.bias": weights.take("patch_embed.proj.bias") if "patch_embed.proj.bias" in weights else torch.zeros(width, dtype=patch.dtype),
        "norm.weight": weights.take("norm.weight"),
        "norm.bias": weights.take("norm.bias"),
    }
    if class_token:
        state["class_token"] = weights.take("cls_token")
    if class_slot:
        state["class_position"], state["position_embedding"] = positions[:1], positions[1:]
    else:
        state["position_embedding"] = positions
    names = {"norm1": "norm1", "norm2": "norm2", "qkv": "attn.qkv", "proj": "attn.proj", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    for i in range(depth):
        for part, name in names.items():
            state[f"blocks.{i}.{part}.weight"] = weights.take(f"blocks.{i}.{name}.weight")
            bias = f"blocks.{i}.{name}.bias"
            if part == "qkv" and bias not in weights:
                state[f"blocks.{i}.qkv.bias"] = torch.zeros(3 * width, dtype=patch.dtype)
            else:
                state[f"blocks.{i}.{part}.bias"] = weights.take(bias)
    weights.drop(r"head\.")
    return {"class_path": VIT_CLASS, "init_args": args}, state


def export_timm_vit(backbone: ViT) -> tuple[dict, dict[str, torch.Tensor]]:
    """A ptft ViT as a timm VisionTransformer: a timm hub ``config.json`` (``architecture``,
    ``model_args``, ``pretrained_cfg``, ``num_classes`` 0: no head) and the state dict.
    ``timm.create_model("local-dir:<folder>", pretrained=True)`` rebuilds it. ``pool: cls`` is
    ``global_pool='token'``, ``mean`` is ``'avg'`` with ``fc_norm=False`` (ptft normalises the
    tokens before pooling). A sin-cos embedding is written as its values (timm's is learned)."""
    if not isinstance(backbone, ViT):
        raise ConfigError(f"export to a timm ViT takes a ptft ViT, got {type(backbone).__name__}")
    args = backbone.spec()["init_args"]
    if args["norm_eps"] != TIMM_EPS:
        raise ConfigError(f"a ViT with norm_eps {args['norm_eps']} has no timm hub config: timm's ViT LayerNorms use eps {TIMM_EPS} "
                          "and a config.json cannot name another")
    image_size = backbone.grid[0] * backbone.patch_size
    class_token = backbone.class_token is not None
    model_args = {
        "img_size": image_size,
        "patch_size": backbone.patch_size,
        "in_chans": backbone.patch_embed.in_channels,
        "embed_dim": args["width"],
        "depth": args["depth"],
        "num_heads": args["heads"],
        "mlp_ratio": args["mlp_ratio"],
        "qkv_bias": True,
        "class_token": class_token,
        "no_embed_class": class_token and backbone.class_position is None,
        "global_pool": "token" if args["pool"] == "cls" else "avg",
        "fc_norm": False,
        "act_layer": args["activation"],
    }
    config = {
        "architecture": EXPORT_ARCHITECTURE,
        "num_classes": 0,
        "num_features": args["width"],
        "global_pool": model_args["global_pool"],
        "model_args": model_args,
        "pretrained_cfg": {
            "tag": "ptft",
            "custom_load": False,
            "input_size": [model_args["in_chans"], image_size, image_size],
            "fixed_input_size": True,
            "num_classes": 0,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
    }
    own = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    positions = backbone.positions(backbone.grid).detach().clone()
    if backbone.class_position is not None:
        positions = torch.cat([own["class_position"], positions])
    state = {"pos_embed": positions[None], "patch_embed.proj.weight": own["patch_embed.weight"],
             "patch_embed.proj.bias": own["patch_embed.bias"], "norm.weight": own["norm.weight"], "norm.bias": own["norm.bias"]}
    if class_token:
        state["cls_token"] = own["class_token"]
    names = {"norm1": "norm1", "norm2": "norm2", "qkv": "attn.qkv", "proj": "attn.proj", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    for i in range(args["depth"]):
        for part, name in names.items():
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.{name}.{kind}"] = own[f"blocks.{i}.{part}.{kind}"]
    return config, state
