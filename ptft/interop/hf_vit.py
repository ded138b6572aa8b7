"""Hugging Face ViT and ViT-MAE <-> ptft :class:`~ptft.backbones.vit.ViT`.

Both are pre-LN ViTs with a class token whose position embedding has a slot for the class token:
ptft builds them with ``class_token_position: true`` and ``pool: cls``. The separate query, key and
value projections become ptft's fused ``qkv``.

Weights are read under Hugging Face's file names (what ``save_pretrained`` writes:
``encoder.layer.N.attention.attention.query`` ...) and under the module names of transformers 5
(``layers.N.attention.q_proj`` ...); exports use the file names.
"""

from __future__ import annotations

import torch

from ptft.backbones.vit import ViT, sincos_position_embedding
from ptft.errors import ConfigError
from ptft.interop.source_weights import SourceWeights

VIT_CLASS = f"{ViT.__module__}.{ViT.__qualname__}"

# Hugging Face hidden_act -> ptft activation (gelu_new and gelu_pytorch_tanh are GELU's tanh approximation).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
EXPORT_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}

# One block's tensors: ptft name -> (Hugging Face file name, transformers 5 module name), after ``layer N.``.
FILE_NAMES = {
    "norm1": "layernorm_before", "norm2": "layernorm_after",
    "q": "attention.attention.query", "k": "attention.attention.key", "v": "attention.attention.value",
    "proj": "attention.output.dense", "mlp.0": "intermediate.dense", "mlp.3": "output.dense",
}
MODULE_NAMES = {
    "norm1": "layernorm_before", "norm2": "layernorm_after",
    "q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj",
    "proj": "attention.o_proj", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2",
}


def square(config: dict, key: str, source: str) -> int:
    """``image_size``/``patch_size``: an int, or a square ``[h, w]``."""
    value = config.get(key)
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ConfigError(f"{source}: config {key}={value} is not square; ptft's ViT has square images and patches")
        value = value[0]
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{source}: config {key}={value!r} is not a positive integer")
    return value


def mlp_ratio_of(width: int, hidden: int, what: str) -> float:
    """The ``mlp_ratio`` with which ptft's block has ``hidden`` MLP units (``int(width * mlp_ratio)``)."""
    ratio = hidden / width
    if int(width * ratio) != hidden:
        raise ConfigError(f"{what}={hidden} is not a whole multiple ptft's ViT can express for width {width}")
    return ratio


def prefix_of(weights: SourceWeights, base_keys: tuple[str, ...]) -> str:
    """``vit.`` for a model with a head (ViTForImageClassification, ViTMAEForPreTraining), else ``""``."""
    return "vit." if any(f"vit.{key}" in weights for key in base_keys) else ""


def common_spec(config: dict, source: str) -> dict:
    """The ptft ViT init args a Hugging Face ViT or ViT-MAE config gives."""
    activation = config.get("hidden_act", "gelu")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"{source}: config hidden_act={activation!r} has no ptft counterpart; ptft's ViT computes "
                          f"{', '.join(ACTIVATIONS)}")
    width, heads = config["hidden_size"], config["num_attention_heads"]
    if width % heads:
        raise ConfigError(f"{source}: config hidden_size {width} is not divisible by num_attention_heads {heads}")
    return {
        "image_size": square(config, "image_size", source),
        "patch_size": square(config, "patch_size", source),
        "depth": config["num_hidden_layers"],
        "width": width,
        "heads": heads,
        "mlp_ratio": mlp_ratio_of(width, config["intermediate_size"], f"{source}: config intermediate_size"),
        "class_token": True,
        "class_token_position": True,
        "pool": "cls",
        "in_channels": config.get("num_channels", 3),
        "norm_eps": config.get("layer_norm_eps", 1e-12),
        "activation": ACTIVATIONS[activation],
    }


def take_encoder(weights: SourceWeights, prefix: str, args: dict) -> dict[str, torch.Tensor]:
    """Patch embedding, class token, blocks and final norm (positions are the caller's)."""
    width = args["width"]
    state = {
        "class_token": weights.take(f"{prefix}embeddings.cls_token"),
        "patch_embed.weight": weights.take(f"{prefix}embeddings.patch_embeddings.projection.weight"),
        "patch_embed.bias": weights.take(f"{prefix}embeddings.patch_embeddings.projection.bias"),
        "norm.weight": weights.take(f"{prefix}layernorm.weight"),
        "norm.bias": weights.take(f"{prefix}layernorm.bias"),
    }
    file_names = f"{prefix}encoder.layer.0.layernorm_before.weight" in weights
    names, layer = (FILE_NAMES, "encoder.layer") if file_names else (MODULE_NAMES, "layers")
    for i in range(args["depth"]):
        source = {key: f"{prefix}{layer}.{i}.{name}" for key, name in names.items()}
        block = f"blocks.{i}"
        for part in ("norm1", "norm2", "proj", "mlp.0", "mlp.3"):
            for kind in ("weight", "bias"):
                state[f"{block}.{part}.{kind}"] = weights.take(f"{source[part]}.{kind}")
        state[f"{block}.qkv.weight"] = torch.cat([weights.take(f"{source[p]}.weight") for p in "qkv"])
        # qkv_bias false: zero biases compute the same (ptft's blocks always have them)
        state[f"{block}.qkv.bias"] = (torch.cat([weights.take(f"{source[p]}.bias") for p in "qkv"]) if args["qkv_bias"]
                                      else torch.zeros(3 * width, dtype=state[f"{block}.qkv.weight"].dtype))
    return state


def split_positions(positions: torch.Tensor, args: dict, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, 1 + N, D)`` position embedding as the class slot ``(1, D)`` and the patches' ``(N, D)``."""
    patches = (args["image_size"] // args["patch_size"]) ** 2
    if positions.shape != (1, 1 + patches, args["width"]):
        raise ConfigError(f"{what} has shape {tuple(positions.shape)}, expected (1, {1 + patches}, {args['width']}) "
                          f"for {patches} patches and a class token")
    return positions[0, :1], positions[0, 1:]


def import_vit(config: dict | None, weights: SourceWeights) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Hugging Face ViTModel, ViTForImageClassification or ViTForMaskedImageModeling as a ptft ViT
    with learned positions. The pooler, the classifier and the masked-image-modeling decoder are
    dropped (heads ptft does not build); the ``mask_token`` too (it only replaces masked patches).
    ``qkv_bias: false`` becomes zero query/key/value biases: the same function, though fine-tuning
    may then train them."""
    if config is None:
        raise ConfigError(f"{weights.source}: a Hugging Face ViT needs its config.json")
    source = weights.source
    args = common_spec(config, source)
    args["position_embedding"] = "learned"
    args["qkv_bias"] = config.get("qkv_bias", True)
    prefix = prefix_of(weights, ("embeddings.cls_token",))
    state = take_encoder(weights, prefix, args)
    key = f"{prefix}embeddings.position_embeddings"
    state["class_position"], state["position_embedding"] = split_positions(weights.take(key), args, key)
    weights.drop(f"{prefix}pooler\\.")
    weights.drop(f"{prefix}embeddings\\.mask_token$")
    weights.drop("classifier\\.")
    weights.drop("decoder\\.")  # ViTForMaskedImageModeling's pixel decoder
    del args["qkv_bias"]
    return {"class_path": VIT_CLASS, "init_args": args}, state


def import_vit_mae(config: dict | None, weights: SourceWeights) -> tuple[dict, dict[str, torch.Tensor]]:
    """A Hugging Face ViTMAEModel or ViTMAEForPreTraining's encoder as a ptft ViT (the MAE decoder
    is dropped). Its fixed sin-cos position embedding orders the channels column first
    ([sin w, cos w, sin h, cos h], the original MAE code's layout) where ptft's
    ``sincos_position_embedding`` has the row first, so unless the file's values equal ptft's
    own (a 1-row grid, or a future checkpoint), the positions are imported as ``learned``
    with the file's values: the same function, trainable in fine-tuning. The class slot (zeros in
    MAE) becomes ``class_position``."""
    if config is None:
        raise ConfigError(f"{weights.source}: a Hugging Face ViT-MAE needs its config.json")
    args = common_spec(config, weights.source)
    args["qkv_bias"] = config.get("qkv_bias", True)
    prefix = prefix_of(weights, ("embeddings.cls_token",))
    state = take_encoder(weights, prefix, args)
    key = f"{prefix}embeddings.position_embeddings"
    state["class_position"], patches = split_positions(weights.take(key), args, key)
    grid = args["image_size"] // args["patch_size"]
    own = sincos_position_embedding(grid, grid, args["width"])
    if torch.allclose(patches.float(), own, atol=1e-6, rtol=0):
        args["position_embedding"] = "sincos"  # a buffer ptft computes itself
    else:
        args["position_embedding"] = "learned"
        state["position_embedding"] = patches
    weights.drop("decoder\\.")
    del args["qkv_bias"]
    return {"class_path": VIT_CLASS, "init_args": args}, state


def export_vit(backbone: ViT) -> tuple[dict, dict[str, torch.Tensor]]:
    """A ptft ViT as a Hugging Face ViTModel: ``config.json`` contents and the state dict under
    Hugging Face's file names.

    ViTModel always has a class token, so a ViT without one is refused. Without
    ``class_token_position`` the class slot of the position embedding is zeros (the same
    function); a sin-cos embedding is written as its values (Hugging Face's is learned).
    ViTModel builds a pooler (Dense + tanh) that ptft does not have: it is written as zeros
    (``pooler_output`` is all zeros, plainly untrained), as the BERT export does, so that
    ``AutoModel.from_pretrained`` finds every weight it expects rather than initialising one at random.
    """
    if not isinstance(backbone, ViT):
        raise ConfigError(f"export to a Hugging Face ViT takes a ptft ViT, got {type(backbone).__name__}")
    args = backbone.spec()["init_args"]
    if backbone.class_token is None:
        raise ConfigError("a ViT with class_token: false has no Hugging Face ViT counterpart: ViTModel always prepends a "
                          "class token (export it to timm, which has class_token=False)")
    width, depth = args["width"], args["depth"]
    hidden = backbone.blocks[0].mlp[0].out_features
    config = {
        "architectures": ["ViTModel"],
        "model_type": "vit",
        "hidden_size": width,
        "num_hidden_layers": depth,
        "num_attention_heads": args["heads"],
        "intermediate_size": hidden,
        "hidden_act": EXPORT_ACTIVATIONS[args["activation"]],
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "layer_norm_eps": args["norm_eps"],
        "image_size": backbone.grid[0] * backbone.patch_size,
        "patch_size": backbone.patch_size,
        "num_channels": backbone.patch_embed.in_channels,
        "qkv_bias": True,
        "initializer_range": 0.02,
    }
    own = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    patches = backbone.positions(backbone.grid).detach().clone()
    first = own["class_position"] if backbone.class_position is not None else torch.zeros(1, width, dtype=patches.dtype)
    state = {
        "embeddings.cls_token": own["class_token"],
        "embeddings.position_embeddings": torch.cat([first, patches])[None],
        "embeddings.patch_embeddings.projection.weight": own["patch_embed.weight"],
        "embeddings.patch_embeddings.projection.bias": own["patch_embed.bias"],
        "layernorm.weight": own["norm.weight"],
        "layernorm.bias": own["norm.bias"],
        "pooler.dense.weight": torch.zeros(width, width, dtype=patches.dtype),
        "pooler.dense.bias": torch.zeros(width, dtype=patches.dtype),
    }
    for i in range(depth):
        block, layer = f"blocks.{i}", f"encoder.layer.{i}"
        for part in ("norm1", "norm2", "proj", "mlp.0", "mlp.3"):
            for kind in ("weight", "bias"):
                state[f"{layer}.{FILE_NAMES[part]}.{kind}"] = own[f"{block}.{part}.{kind}"]
        for kind in ("weight", "bias"):
            for part, tensor in zip("qkv", own[f"{block}.qkv.{kind}"].chunk(3)):
                state[f"{layer}.{FILE_NAMES[part]}.{kind}"] = tensor.clone()
    return config, state
