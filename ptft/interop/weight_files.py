"""Reading the weight files of Hugging Face folders, timm and torchvision: safetensors (one file
or shards listed in an index) and PyTorch pickles read with ``weights_only`` (no code runs)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ptft.errors import ConfigError, MissingPathError
from ptft.reliability import safe_torch_load

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, with a one-line error naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_config(folder: Path) -> dict:
    """The folder's ``config.json``."""
    if not (folder / CONFIG_FILE).is_file():
        raise MissingPathError(f"{folder} has no {CONFIG_FILE}: not a Hugging Face or timm model folder (nor a ptft export, "
                               "which has backbone.json)")
    return read_json(folder / CONFIG_FILE)


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one ``.safetensors`` file, or of a PyTorch pickle read with ``weights_only``."""
    if not path.is_file():
        raise MissingPathError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as error:  # safetensors raises its own error type
            raise ConfigError(f"{path}: not a readable safetensors file ({error})") from None
    state = safe_torch_load(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and "ptft" not in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ConfigError(f"{path}: expected a state dict (names to tensors), got {type(state).__name__}")
    return state


def read_sharded(index_file: Path) -> dict[str, torch.Tensor]:
    """The tensors of the shards a ``*.index.json`` lists (``weight_map``: key -> shard file)."""
    weight_map = read_json(index_file).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ConfigError(f"{index_file}: no 'weight_map' from tensor names to shard files")
    shards = sorted(set(weight_map.values()))
    missing = [name for name in shards if not (index_file.parent / name).is_file()]
    if missing:
        raise MissingPathError(f"{index_file} names shards that are not in {index_file.parent}: {', '.join(missing)}")
    state: dict[str, torch.Tensor] = {}
    for name in shards:
        state.update(read_weights_file(index_file.parent / name))
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise ConfigError(f"{index_file}: {len(absent)} tensors it lists are in none of the shards: {', '.join(absent[:5])}")
    return state


def read_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a Hugging Face-style folder: ``model.safetensors``, its sharded index, or
    ``pytorch_model.bin`` (or its index), in that order of preference."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            return read_sharded(path) if name.endswith(".index.json") else read_weights_file(path)
    raise MissingPathError(f"{folder} has no weights: looked for {', '.join(WEIGHT_FILES)}")
