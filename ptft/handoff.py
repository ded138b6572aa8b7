"""Hand-off from pretraining to fine-tuning: the named modules a task hands on (``backbone``, or an
``encoder`` and a ``decoder``), exported from a checkpoint and rebuilt and loaded strictly.

An export (format version 2) is a folder with

* ``backbone.json``, the manifest: ``{"format_version": 2, "modules": {name: {"class_path",
  "init_args"}}, "task", "source", "export_id"}`` (plus ``"labels"`` when the data had labels);
* ``<name>.safetensors`` for each module (``backbone.safetensors``, or ``encoder.safetensors`` and
  ``decoder.safetensors``), keys as the module's own ``state_dict`` has them (no prefix to strip);
* ``tokenizer.json`` for text models.

A ptft checkpoint holds the same under ``checkpoint["ptft"]`` (``format_version``, ``modules``,
``tokenizer``, ``labels``). Exports and checkpoints written before format version 2 hold one module,
``backbone`` (``backbone.json`` with ``class_path`` at the top; a checkpoint's ``ptft.backbone``),
and still load. Checkpoints are read with
``torch.load(weights_only=True)``: nothing in them is unpickled as code; a module spec's
``class_path`` is imported only from ``ptft.backbones`` or a module named in
``$PTFT_TRUSTED_MODULES`` (:func:`trusted_module`), and built only once its shapes, taken on the
meta device, fit the weights (:func:`check_spec`). Each source is read once
per process (:func:`read_pretrained` keeps the last few, keyed by path, size and modification time).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import json
import os
import pkgutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch.nn.utils import parametrize

from ptft.backbones.base import Backbone, HandoffModule
from ptft.errors import ConfigError, MissingPathError, OutputExistsError
from ptft.reliability import safe_torch_load
from ptft.temp_files import write_files

FORMAT_VERSION = 2
SPEC_FILE = "backbone.json"
TOKENIZER_FILE = "tokenizer.json"
TRUSTED_MODULES_ENV = "PTFT_TRUSTED_MODULES"  # modules outside ptft.backbones that a backbone spec may name


@dataclass(frozen=True)
class Pretrained:
    """What a ptft checkpoint or export hands on: each module's spec and weights, the tokenizer
    JSON (text models; the character vocabulary of speech models), the label names (classifiers)
    and the log-mel settings (speech: :class:`~ptft.data.audio_features.LogMelSettings` as a dict)."""

    source: str
    specs: dict[str, dict[str, Any]]
    states: dict[str, dict[str, torch.Tensor]]
    tokenizer: str | None = None
    labels: list[str] | None = None
    task: str | None = None
    audio: dict[str, Any] | None = None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning checkpoint loaded safely (tensors and plain containers only)."""
    return safe_torch_load(path)


def split_by_module(state: dict[str, torch.Tensor], names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """``{name: {key without "<name>.": tensor}}`` of a state dict holding several modules."""
    return {name: {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")} for name in names}


def weights_file(name: str) -> str:
    return f"{name}.safetensors"


def _read_export(path: Path) -> Pretrained:
    if not (path / SPEC_FILE).is_file():
        raise MissingPathError(f"{path} is not a ptft export folder ({SPEC_FILE} missing) nor a Hugging Face or timm model "
                               "folder (config.json missing)")
    try:
        info = json.loads((path / SPEC_FILE).read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path / SPEC_FILE}: not valid JSON ({error})") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{path / SPEC_FILE}: expected a JSON object, got {type(info).__name__}")
    version = info.get("format_version", 1)
    if version > FORMAT_VERSION:
        raise ConfigError(f"{path}: export format version {version} is newer than this ptft reads ({FORMAT_VERSION}); update ptft")
    specs = info.get("modules") if version >= 2 else {"backbone": {k: info[k] for k in ("class_path", "init_args") if k in info}}
    if not isinstance(specs, dict) or not specs:
        raise ConfigError(f"{path / SPEC_FILE}: 'modules' must map module names to {{class_path, init_args}}")
    missing = [weights_file(name) for name in specs if not (path / weights_file(name)).is_file()]
    if missing:
        raise MissingPathError(f"{path} is not a complete ptft export folder: {', '.join(missing)} missing")
    for spec in specs.values():
        build_backbone(spec, "meta")  # a spec that does not describe a backbone fails before any weights are read
    states = {}
    for name in specs:
        file = path / weights_file(name)
        try:
            with safe_open(file, "pt") as weights:
                export_id = (weights.metadata() or {}).get("ptft_export_id")
            states[name] = load_file(file)
        except Exception as error:  # safetensors raises its own error type
            raise ConfigError(f"{file}: not a readable safetensors file ({error})") from None
        if "export_id" in info and export_id != info["export_id"]:
            raise ConfigError(f"{path}: {file.name} and {SPEC_FILE} come from different exports (an interrupted export?); run `ptft export` again")
    tokenizer = (path / TOKENIZER_FILE).read_text(encoding="utf-8") if (path / TOKENIZER_FILE).is_file() else None
    return Pretrained(str(path), specs, states, tokenizer, info.get("labels"), info.get("task"), info.get("audio"))


def pretrained_in_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Pretrained:
    """The hand-off of a checkpoint already loaded from ``path`` (formats 1 and 2)."""
    info = checkpoint.get("ptft") if isinstance(checkpoint, dict) else None
    if not isinstance(info, dict) or not ("modules" in info or "backbone" in info):
        raise ConfigError(f"{path} is not a ptft checkpoint (it has no module specs under checkpoint['ptft'])")
    specs = info.get("modules") or {"backbone": info["backbone"]}
    states = split_by_module(checkpoint["state_dict"], list(specs))
    folded = info.get("folded_state_dicts") or ({"backbone": info["backbone_state_dict"]} if "backbone_state_dict" in info else {})
    states.update(folded)  # modules with parametrized weights (spectral norm), stored as plain tensors
    return Pretrained(str(path), specs, states, info.get("tokenizer"), info.get("labels"), info.get("task"), info.get("audio"))


@functools.lru_cache(maxsize=4)
def _read_cached(path: Path, stamp: tuple) -> Pretrained:
    from ptft.interop.foreign import is_foreign, is_state_dict, read_foreign, read_state_dict

    if is_foreign(path):
        return read_foreign(path).as_pretrained()
    if path.is_dir():
        return _read_export(path)
    checkpoint = load_checkpoint(path)
    if is_state_dict(checkpoint):  # a torchvision-style .pth
        return read_state_dict(path, checkpoint.get("state_dict", checkpoint)).as_pretrained()
    return pretrained_in_checkpoint(checkpoint, path)


def read_pretrained(source: str | os.PathLike) -> Pretrained:
    """The modules, tokenizer and labels of a ptft ``.ckpt`` or export folder, or the backbone a
    Hugging Face, timm or torchvision checkpoint converts to (:mod:`ptft.interop.foreign`), read
    once per process while the files are unchanged."""
    path = Path(source)
    if not path.exists():
        raise MissingPathError(f"checkpoint {path} does not exist: give a ptft .ckpt file or a `ptft export` folder "
                               "(or a Hugging Face folder, a timm .safetensors or a torchvision .pth)")
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    stamp = tuple((f.stat().st_size, f.stat().st_mtime_ns) if f.exists() else None for f in files)
    return _read_cached(path.resolve(), stamp)


def read_backbone(source: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` of the ``backbone`` module of a ptft ``.ckpt`` or export folder."""
    pretrained = read_pretrained(source)
    if "backbone" not in pretrained.specs:
        raise ConfigError(f"{source} holds the modules {', '.join(pretrained.specs)}, not a single backbone")
    return pretrained.specs["backbone"], pretrained.states["backbone"]


def read_tokenizer(source: str | os.PathLike) -> str | None:
    """The tokenizer JSON a text model was trained with; None when there is none (an image model)."""
    return read_pretrained(source).tokenizer


def module_specs(modules: dict[str, Backbone]) -> dict[str, dict[str, Any]]:
    return {name: module.spec() for name, module in modules.items()}


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


def trusted_module(module_name: str) -> bool:
    """Whether a spec's ``class_path`` may import ``module_name``: ptft's own backbone and head
    modules (``ptft.backbones``, ``ptft.heads`` and their submodules, listed without importing
    anything), or a module named in ``$PTFT_TRUSTED_MODULES`` (comma-separated; a package name
    trusts its submodules too)."""
    import ptft.backbones
    import ptft.heads

    for package in (ptft.backbones, ptft.heads):
        if module_name == package.__name__ or module_name in {f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)}:
            return True
    trusted = [name.strip() for name in os.environ.get(TRUSTED_MODULES_ENV, "").split(",") if name.strip()]
    return any(module_name == name or module_name.startswith(f"{name}.") for name in trusted)


def build_backbone(spec: dict[str, Any], device: str | None = None) -> HandoffModule:
    """Instantiate the backbone (or exported head) a spec describes (random weights) on ``device``
    (``"meta"``: shapes only, nothing allocated): only :class:`~ptft.backbones.base.HandoffModule`
    subclasses, and only from a :func:`trusted_module`, checked before anything is imported (a
    hostile export must not make ptft import arbitrary modules)."""
    class_path = spec.get("class_path", "") if isinstance(spec, dict) else ""
    module_name, _, class_name = class_path.rpartition(".")
    if not trusted_module(module_name):
        raise ConfigError(
            f"backbone class_path {class_path!r} is not a ptft backbone (ptft.backbones.*) and was not imported; "
            f"to load backbones from a module you trust, set {TRUSTED_MODULES_ENV}={module_name or class_path}"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"backbone class_path {class_path!r} cannot be imported") from None
    if not (isinstance(cls, type) and issubclass(cls, HandoffModule)):
        raise ConfigError(f"backbone class_path {class_path!r} is not a ptft.backbones.Backbone")
    init_args = spec.get("init_args", {})
    try:
        inspect.signature(cls).bind(**init_args)
    except TypeError as error:
        raise ConfigError(f"backbone spec {class_path}: init_args {init_args!r} do not fit its arguments ({error})") from None
    with torch.device(device) if device else contextlib.nullcontext():
        return cls(**init_args)


def check_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike, what: str = "backbone",
                  subject: str | None = None) -> None:
    """Raise a ConfigError listing the missing, unexpected and mis-shaped keys when ``state`` does
    not fit ``module`` (shapes only: a module on the meta device will do)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = [f"{k}: {tuple(state[k].shape)} in {source}, {tuple(own[k].shape)} here" for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or misshaped:
        def listing(title: str, items: list[str]) -> str:
            shown = "\n    ".join(items[:10]) + (f"\n    ... and {len(items) - 10} more" if len(items) > 10 else "")
            return f"\n  {title} ({len(items)}):\n    {shown}" if items else ""

        raise ConfigError(
            f"{what} weights in {source} do not match {subject or f'the configured {type(module).__name__}'}:"
            + listing("missing", missing) + listing("unexpected", unexpected) + listing("mis-shaped", misshaped)
        )


def check_spec(spec: dict[str, Any], state: dict[str, torch.Tensor], source: str | os.PathLike, what: str = "backbone") -> None:
    """Refuse a spec that does not describe its weights (a hostile ``backbone.json`` asking for
    ``base_width: 8000`` next to a small weights file), comparing shapes on the meta device:
    nothing is allocated."""
    shell = build_backbone(spec, "meta")
    check_weights(shell, state, source, what, f"the {type(shell).__name__} its spec describes (nothing was built)")


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | os.PathLike, what: str = "backbone") -> None:
    """Strict load with a readable report of missing, unexpected and mis-shaped keys."""
    check_weights(module, state, source, what)
    module.load_state_dict(state, strict=True)


def build_loaded(spec: dict[str, Any], state: dict[str, torch.Tensor], source: str | os.PathLike, what: str = "backbone") -> HandoffModule:
    """The module ``spec`` describes with the weights ``state``, built only once :func:`check_spec`
    found that they fit."""
    check_spec(spec, state, source, what)
    module = build_backbone(spec)
    module.load_state_dict(state, strict=True)
    return module


def load_module(pretrained: Pretrained, name: str = "backbone", configured: Backbone | None = None) -> Backbone:
    """Module ``name`` of ``pretrained`` with its weights: built from its spec, or ``configured``
    (it must be the same class; its ``adapt_state_dict`` may adapt the weights, e.g. a ViT's
    position embedding to another image size)."""
    if name not in pretrained.specs:
        raise ConfigError(f"{pretrained.source} holds the modules {', '.join(pretrained.specs)}, not {name!r}")
    spec, state = pretrained.specs[name], pretrained.states[name]
    if configured is None:
        return build_loaded(spec, state, pretrained.source, name)
    if spec.get("class_path") != configured.spec()["class_path"]:
        raise ConfigError(
            f"model.pretrained {pretrained.source} holds a {spec.get('class_path')}, but model.{name} is a "
            f"{configured.spec()['class_path']}; drop model.{name} to use the pretrained one as it is"
        )
    load_weights(configured, configured.adapt_state_dict(state, spec), pretrained.source, name)
    return configured


def load_backbone(source: str | os.PathLike, backbone: Backbone | None = None) -> Backbone:
    """The pretrained ``backbone`` of a ``.ckpt`` or export folder (see :func:`load_module`)."""
    return load_module(read_pretrained(source), "backbone", backbone)


def export_backbone(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write the hand-off modules of a ptft checkpoint (or another export) to ``out_dir``.

    Files are written under temporary names, fsynced and renamed into place, the manifest last, so
    a failed export leaves any previous export untouched; the weights and the manifest carry the
    same export id, so files mixed by a crash between the renames are refused when read. An
    existing export is replaced only with ``overwrite``. Temporary files of an export that was
    killed are removed first (:func:`~ptft.temp_files.remove_stale_temp_files`); the files get the
    permissions of a normally created file (the umask's), so that a team can share an export folder.
    """
    out = Path(out_dir)
    if (out / SPEC_FILE).exists() and not overwrite:
        raise OutputExistsError(f"{out / SPEC_FILE} exists; pass --overwrite to replace it")
    pretrained = read_pretrained(checkpoint)
    for name, spec in pretrained.specs.items():
        check_spec(spec, pretrained.states[name], checkpoint, name)  # every spec must describe its weights before anything is written
    export_id = uuid.uuid4().hex  # in every file: a reader refuses files from different exports
    info = {"format_version": FORMAT_VERSION, "modules": pretrained.specs, "task": pretrained.task,
            "source": str(Path(checkpoint).resolve()), "export_id": export_id}
    if pretrained.labels is not None:
        info["labels"] = pretrained.labels
    if pretrained.audio is not None:
        info["audio"] = pretrained.audio
    files = {TOKENIZER_FILE: pretrained.tokenizer.encode("utf-8")} if pretrained.tokenizer is not None else {}
    for name, state in pretrained.states.items():
        files[weights_file(name)] = save({k: v.contiguous() for k, v in state.items()}, metadata={"ptft_export_id": export_id})
    files[SPEC_FILE] = (json.dumps(info, indent=2) + "\n").encode()  # renamed last: the manifest makes an export complete
    write_files(out, files)
    return out
