"""Foreign checkpoints read as a ptft hand-off: a Hugging Face folder (``config.json`` + weights),
a timm ViT or ResNet (``.safetensors``, or a timm hub folder whose ``config.json`` names its
``architecture``) or a torchvision ResNet state dict (``.pth``, read with ``weights_only``).

Each converter builds the ptft backbone's spec from the source's own config and maps every tensor
(:class:`~ptft.interop.source_weights.SourceWeights`): mapped, or dropped on purpose (pooler,
MLM head, classifier), never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ptft.errors import ConfigError, PtftError
from ptft.handoff import Pretrained, check_spec
from ptft.interop import hf_bert, hf_gpt2, hf_vit, resnet, timm_vit
from ptft.interop.source_weights import SourceWeights
from ptft.interop.weight_files import CONFIG_FILE, read_config, read_folder_weights, read_weights_file

TOKENIZER_FILE = "tokenizer.json"
Converter = Callable[[dict, SourceWeights], tuple[dict, dict[str, torch.Tensor]]]

# Hugging Face ``model_type`` -> converter to a ptft backbone spec and state dict.
HF_IMPORTERS: dict[str, Converter] = {
    "bert": hf_bert.import_bert,
    "gpt2": hf_gpt2.import_gpt2,
    "vit": hf_vit.import_vit,
    "vit_mae": hf_vit.import_vit_mae,
}


@dataclass
class Foreign:
    """A foreign checkpoint converted to a ptft backbone: ``spec`` and ``state`` as a ptft export
    holds them, the ``dropped`` source tensors, the tokenizer JSON (when the folder has one ptft
    can use) and notes on what was not imported."""

    source: str
    format: str
    spec: dict
    state: dict[str, torch.Tensor]
    dropped: list[str]
    tokenizer: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_pretrained(self) -> Pretrained:
        """The hand-off fine-tuning reads: one ``backbone`` module; ``task`` names the source format."""
        return Pretrained(self.source, {"backbone": self.spec}, {"backbone": self.state}, self.tokenizer, task=self.format)


def is_foreign(path: Path) -> bool:
    """Whether ``path`` is a foreign model rather than a ptft checkpoint or export: a folder with
    ``config.json`` and no ``backbone.json``, or a ``.safetensors`` file."""
    if path.is_dir():
        return (path / CONFIG_FILE).is_file() and not (path / "backbone.json").is_file()
    return path.suffix == ".safetensors"


def is_state_dict(loaded: object) -> bool:
    """Whether a loaded ``.pth``/``.bin`` holds a plain state dict (torchvision's), not a ptft checkpoint."""
    if not isinstance(loaded, dict) or "ptft" in loaded:
        return False
    state = loaded.get("state_dict", loaded)
    return isinstance(state, dict) and bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def state_dict_converter(weights: SourceWeights) -> tuple[str, Callable[[dict | None, SourceWeights], tuple[dict, dict]]]:
    """The format and converter of a bare state dict, recognised by its keys."""
    if "blocks.0.attn.qkv.weight" in weights or "patch_embed.proj.weight" in weights:
        return "timm ViT", timm_vit.import_timm_vit
    if "layer1.0.conv1.weight" in weights and "conv1.weight" in weights:
        return "torchvision/timm ResNet", resnet.import_resnet
    raise ConfigError(f"{weights.source} is not a ptft checkpoint (no module specs under checkpoint['ptft']) nor a state dict "
                      f"ptft has a converter for (first keys: {', '.join(list(weights.state)[:4])}); ptft reads Hugging Face "
                      "BERT, GPT-2, ViT and ViT-MAE folders, timm ViTs and ResNets, torchvision ResNets")


def convert(source: str, fmt: str, converter, config: dict | None, weights: SourceWeights) -> Foreign:
    try:
        spec, state = converter(config, weights)
    except PtftError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as error:  # shapes that disagree with the config, a malformed config
        raise ConfigError(f"{source}: the {fmt} checkpoint does not fit its own config ({str(error).splitlines()[0]})") from None
    dropped = weights.finish()
    check_spec(spec, state, source)  # every tensor's shape must fit the backbone its config describes
    return Foreign(source, fmt, spec, state, dropped)


def read_folder(folder: Path) -> Foreign:
    """A Hugging Face folder (``model_type`` in its config) or a timm hub folder (``architecture``)."""
    config = read_config(folder)
    weights = SourceWeights(read_folder_weights(folder), str(folder))
    if "architecture" in config and "model_type" not in config:
        fmt, converter = state_dict_converter(weights)
        return convert(str(folder), fmt, converter, config, weights)
    model_type = config.get("model_type")
    if model_type not in HF_IMPORTERS:
        raise ConfigError(f"{folder / CONFIG_FILE}: model_type {model_type!r} has no ptft backbone; ptft imports "
                          f"{', '.join(sorted(HF_IMPORTERS))}")
    foreign = convert(str(folder), f"Hugging Face {model_type}", HF_IMPORTERS[model_type], config, weights)
    if (folder / TOKENIZER_FILE).is_file():
        from ptft.data.tokenizer import TextTokenizer

        text = (folder / TOKENIZER_FILE).read_text(encoding="utf-8")
        try:
            foreign.tokenizer = TextTokenizer.from_json(text, str(folder / TOKENIZER_FILE)).json
        except ConfigError as error:
            foreign.notes.append(f"{TOKENIZER_FILE} not imported: {error}")
    return foreign


def read_state_dict(path: Path, state: dict[str, torch.Tensor] | None = None) -> Foreign:
    """A bare state dict file (timm ``.safetensors``, torchvision ``.pth``); ``state``: already loaded."""
    weights = SourceWeights(state if state is not None else read_weights_file(path), str(path))
    fmt, converter = state_dict_converter(weights)
    return convert(str(path), fmt, converter, None, weights)


def read_foreign(path: Path) -> Foreign:
    """The ptft backbone a foreign folder or file converts to."""
    return read_folder(path) if path.is_dir() else read_state_dict(path)
