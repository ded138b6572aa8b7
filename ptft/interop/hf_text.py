"""What the Hugging Face BERT and GPT-2 converters share: reading a config with the library's own
defaults, the MLP size and activation ptft can compute, and a ptft TextTransformer's tensors in
the shapes a Hugging Face model holds them (absent biases written as zeros)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ptft.backbones.text import TextTransformer
from ptft.errors import ConfigError

# Hugging Face activation names -> TextTransformer ``activation`` (gelu_new is the tanh formula written out)
ACTIVATIONS_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
# TextTransformer ``activation`` -> the Hugging Face name that computes it with the same torch function
ACTIVATIONS_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}


def setting(config: dict, defaults: dict[str, Any], key: str) -> Any:
    """``config[key]``, or the value the library's config class takes when ``config.json`` lacks it."""
    return config[key] if key in config else defaults[key]


def activation_from_hf(name: str, key: str, source: str) -> str:
    """The TextTransformer ``activation`` of a Hugging Face activation name, or a ConfigError naming ``key``."""
    if name not in ACTIVATIONS_FROM_HF:
        raise ConfigError(f"{source}: {key} {name!r} has no ptft counterpart; ptft computes {', '.join(ACTIVATIONS_FROM_HF)}")
    return ACTIVATIONS_FROM_HF[name]


def mlp_ratio(hidden: int, width: int, key: str, source: str) -> float:
    """The ``mlp_ratio`` whose ``int(width * mlp_ratio)`` (the TransformerBlock's MLP size) is ``hidden``."""
    ratio = hidden / width
    if int(width * ratio) != hidden:
        raise ConfigError(f"{source}: {key} {hidden} is not int(width * mlp_ratio) for any mlp_ratio ptft can hold "
                          f"(width {width}); ptft cannot build this MLP")
    return ratio


def text_args(backbone: nn.Module, target: str) -> dict[str, Any]:
    """The init args of a TextTransformer to export as ``target``; a ConfigError for any other module."""
    if not isinstance(backbone, TextTransformer):
        raise ConfigError(f"{target} export takes a ptft TextTransformer, got a {type(backbone).__name__}; export it with --format ptft")
    return backbone.spec()["init_args"]


def single_norm_eps(backbone: TextTransformer, target: str) -> float:
    """The epsilon every LayerNorm of ``backbone`` uses; a ConfigError naming ``norm_eps`` when they
    differ (``target`` has one setting for all of them)."""
    values = sorted({m.eps for m in backbone.modules() if isinstance(m, nn.LayerNorm)})
    if len(values) > 1:
        raise ConfigError(f"{target} has one LayerNorm epsilon, but this TextTransformer's LayerNorms use {values} "
                          "(norm_eps unset: ptft's defaults, 1e-6 in the blocks and 1e-5 in the final norm); only a "
                          "TextTransformer built with one norm_eps exports exactly; export it with --format ptft")
    return values[0] if values else 1e-5


def tensor(value: torch.Tensor) -> torch.Tensor:
    """A detached copy with storage of its own (safetensors refuses tensors that share memory)."""
    return value.detach().clone().contiguous()


def weight_and_bias(module: nn.Linear | nn.LayerNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """A Linear's or LayerNorm's weight and bias; zeros for a bias the module does not have
    (``bias: false``), which computes the same."""
    weight = tensor(module.weight)
    bias = tensor(module.bias) if module.bias is not None else torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    return weight, bias


def pad_token_id(backbone: TextTransformer) -> int | None:
    """The backbone's ``pad_id`` as a Hugging Face ``pad_token_id``: None when it is no token's id."""
    return backbone.pad_id if 0 <= backbone.pad_id < backbone.vocab_size else None
