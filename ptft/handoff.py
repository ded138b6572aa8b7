"""Backbone hand-off: export from a pretraining checkpoint, rebuild and load for fine-tuning.

An export is a folder with ``backbone.safetensors`` (weights, keys without the ``backbone.``
prefix) and ``backbone.json`` (``{"class_path", "init_args"}``), plus ``tokenizer.json`` for text models. Checkpoints are read with
``torch.load(weights_only=True)``: nothing in them is unpickled as code.
"""

from __future__ import annotations

import importlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.utils import parametrize

from ptft.backbones.base import Backbone
from ptft.errors import ConfigError, MissingPathError, OutputExistsError
from ptft.reliability import safe_torch_load

WEIGHTS_FILE = "backbone.safetensors"
SPEC_FILE = "backbone.json"
TOKENIZER_FILE = "tokenizer.json"
PREFIX = "backbone."


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning checkpoint loaded safely (tensors and plain containers only)."""
    return safe_torch_load(path)


def read_backbone(source: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` of the backbone in a ptft ``.ckpt`` or an export folder."""
    path = Path(source)
    if not path.exists():
        raise MissingPathError(f"{path} does not exist: give a ptft .ckpt file or a `ptft export` folder")
    if path.is_dir():
        missing = [name for name in (WEIGHTS_FILE, SPEC_FILE) if not (path / name).is_file()]
        if missing:
            raise MissingPathError(f"{path} is not a ptft export folder: {', '.join(missing)} missing")
        try:
            spec = json.loads((path / SPEC_FILE).read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path / SPEC_FILE}: not valid JSON ({error})") from None
        build_backbone(spec)  # a spec that does not describe a backbone fails before any weights are read
        try:
            with safe_open(path / WEIGHTS_FILE, "pt") as weights:
                export_id = (weights.metadata() or {}).get("ptft_export_id")
            state = load_file(path / WEIGHTS_FILE)
        except Exception as error:  # safetensors raises its own error type
            raise ConfigError(f"{path / WEIGHTS_FILE}: not a readable safetensors file ({error})") from None
        if "export_id" in spec and export_id != spec["export_id"]:
            raise ConfigError(f"{path}: {WEIGHTS_FILE} and {SPEC_FILE} come from different exports (an interrupted export?); run `ptft export` again")
        return spec, state
    checkpoint = load_checkpoint(path)
    spec = checkpoint.get("ptft", {}).get("backbone") if isinstance(checkpoint, dict) else None
    if spec is None:
        raise ConfigError(f"{path} is not a ptft checkpoint (it has no backbone spec under checkpoint['ptft'])")
    state = checkpoint["ptft"].get("backbone_state_dict")  # written when the weights are parametrized
    if state is None:
        state = {k[len(PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(PREFIX)}
    return spec, state


def read_tokenizer(source: str | os.PathLike) -> str | None:
    """The tokenizer JSON a text model was trained with, from a ptft ``.ckpt`` or an export folder;
    None when there is none (an image model)."""
    path = Path(source)
    if not path.exists():
        raise MissingPathError(f"{path} does not exist: give a ptft .ckpt file or a `ptft export` folder")
    if path.is_dir():
        file = path / TOKENIZER_FILE
        return file.read_text(encoding="utf-8") if file.is_file() else None
    return load_checkpoint(path).get("ptft", {}).get("tokenizer")


def folded_state_dict(backbone: Backbone) -> dict[str, torch.Tensor] | None:
    """The backbone's weights with parametrizations (e.g. spectral norm) folded into plain
    tensors, as a freshly built backbone expects them; None when nothing is parametrized."""
    parametrized = [(name, m) for name, m in backbone.named_modules() if parametrize.is_parametrized(m)]
    if not parametrized:
        return None
    state = backbone.state_dict()
    modes = [(m, m.training) for m in backbone.modules()]
    backbone.eval()  # spectral norm then uses its current estimate and takes no power-iteration step
    try:
        with torch.no_grad():
            for name, module in parametrized:
                prefix = f"{name}." if name else ""
                for tensor_name in module.parametrizations:
                    inner = f"{prefix}parametrizations.{tensor_name}."
                    state = {k: v for k, v in state.items() if not k.startswith(inner)}
                    state[prefix + tensor_name] = getattr(module, tensor_name).detach().clone()
    finally:
        for module, training in modes:
            module.training = training
    return state


def build_backbone(spec: dict[str, Any]) -> Backbone:
    """Instantiate the backbone a spec describes (random weights); only Backbone subclasses."""
    class_path = spec.get("class_path", "")
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"backbone class_path {class_path!r} cannot be imported") from None
    if not (isinstance(cls, type) and issubclass(cls, Backbone)):
        raise ConfigError(f"backbone class_path {class_path!r} is not a ptft.backbones.Backbone")
    return cls(**spec.get("init_args", {}))


def load_backbone_weights(backbone: Backbone, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Strict load with a readable report of missing, unexpected and mis-shaped keys."""
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [f"{k}: {tuple(state[k].shape)} in {source}, {tuple(own[k].shape)} here" for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or misshaped:
        def listing(title: str, items: list[str]) -> str:
            shown = "\n    ".join(items[:10]) + (f"\n    ... and {len(items) - 10} more" if len(items) > 10 else "")
            return f"\n  {title} ({len(items)}):\n    {shown}" if items else ""

        raise ConfigError(
            f"backbone weights in {source} do not match the configured {type(backbone).__name__}:"
            + listing("missing", missing) + listing("unexpected", unexpected) + listing("mis-shaped", misshaped)
        )
    backbone.load_state_dict(state, strict=True)


def load_backbone(source: str | os.PathLike, backbone: Backbone | None = None) -> Backbone:
    """The pretrained backbone from ``source``, built from its spec, or ``backbone`` with its weights
    loaded when one is configured (it must be the same class)."""
    spec, state = read_backbone(source)
    if backbone is None:
        backbone = build_backbone(spec)
    elif spec.get("class_path") != backbone.spec()["class_path"]:
        raise ConfigError(
            f"model.pretrained {source} holds a {spec.get('class_path')}, but model.backbone is a "
            f"{backbone.spec()['class_path']}; drop model.backbone to use the pretrained one as it is"
        )
    else:
        state = backbone.adapt_state_dict(state, spec)
    load_backbone_weights(backbone, state, source)
    return backbone


def export_backbone(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``out_dir/backbone.safetensors`` and ``out_dir/backbone.json`` from a ptft checkpoint.

    Files are written under temporary names, fsynced and renamed into place, so a failed export
    leaves any previous export untouched; both files carry the same export id, so a pair mixed by
    a crash between the two renames is refused when read. An existing export is replaced only
    with ``overwrite``.
    """
    out = Path(out_dir)
    if (out / WEIGHTS_FILE).exists() and not overwrite:
        raise OutputExistsError(f"{out / WEIGHTS_FILE} exists; pass --overwrite to replace it")
    spec, state = read_backbone(checkpoint)
    build_backbone(spec)  # the spec must rebuild before anything is written
    tokenizer = read_tokenizer(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    tmp_weights, tmp_spec = out / f".{WEIGHTS_FILE}.tmp-{os.getpid()}", out / f".{SPEC_FILE}.tmp-{os.getpid()}"
    export_id = uuid.uuid4().hex  # in both files: a reader refuses a pair from different exports
    try:
        if tokenizer is not None:  # written first: the weights and spec make an export complete
            tmp_tokenizer = out / f".{TOKENIZER_FILE}.tmp-{os.getpid()}"
            tmp_tokenizer.write_text(tokenizer, encoding="utf-8")
            os.replace(tmp_tokenizer, out / TOKENIZER_FILE)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp_weights, metadata={"ptft_export_id": export_id})
        tmp_spec.write_text(json.dumps({**spec, "source": str(Path(checkpoint).resolve()), "export_id": export_id}, indent=2) + "\n")
        for tmp in (tmp_weights, tmp_spec):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp_weights, out / WEIGHTS_FILE)
        os.replace(tmp_spec, out / SPEC_FILE)
    finally:
        for tmp in (tmp_weights, tmp_spec):
            tmp.unlink(missing_ok=True)
    return out
