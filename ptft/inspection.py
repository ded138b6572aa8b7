"""``ptft inspect PATH``: what a ptft checkpoint, a ptft export or a foreign model (Hugging Face
folder, timm ``.safetensors``, torchvision ``.pth``) holds, and the ptft backbone it maps to."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ptft.errors import MissingPathError
from ptft.handoff import SPEC_FILE, build_backbone, load_checkpoint, pretrained_in_checkpoint, read_pretrained
from ptft.interop.foreign import Foreign, is_foreign, is_state_dict, read_foreign, read_state_dict
from ptft.interop.source_weights import listing


def parameter_count(spec: dict) -> int:
    """Parameters of the module ``spec`` describes, counted on the meta device (nothing allocated)."""
    return sum(p.numel() for p in build_backbone(spec, "meta").parameters())


def describe_spec(spec: dict) -> str:
    init_args = ", ".join(f"{k}={v!r}" for k, v in spec.get("init_args", {}).items())
    return f"{spec['class_path']}({init_args})"


def tokenizer_line(tokenizer: str | None) -> str:
    if tokenizer is None:
        return "none"
    model = json.loads(tokenizer).get("model") or {}
    return f"{len(model.get('vocab') or {})} tokens in its model's vocabulary ({model.get('type', 'unknown')})"


def describe(source: str | os.PathLike) -> str:
    """The report ``ptft inspect`` prints for ``source``."""
    path = Path(source)
    if not path.exists():
        raise MissingPathError(f"{path} does not exist")
    foreign: Foreign | None = None
    if is_foreign(path):
        foreign = read_foreign(path)
        pretrained = foreign.as_pretrained()
    elif path.is_dir():
        pretrained = read_pretrained(path)
        version = json.loads((path / SPEC_FILE).read_text()).get("format_version", 1)
        fmt = f"ptft export (format version {version})"
    else:
        checkpoint = load_checkpoint(path)
        if is_state_dict(checkpoint):
            foreign = read_state_dict(path, checkpoint.get("state_dict", checkpoint))
            pretrained = foreign.as_pretrained()
        else:
            pretrained = pretrained_in_checkpoint(checkpoint, path)
            steps = f", step {checkpoint['global_step']}" if "global_step" in checkpoint else ""
            fmt = f"ptft checkpoint{steps}"
    lines = [f"path: {path}"]
    if foreign is not None:
        lines.append(f"format: {foreign.format}")
        lines.append(f"maps to: {describe_spec(foreign.spec)}")
    else:
        lines.append(f"format: {fmt}" + (f", written by {pretrained.task}" if pretrained.task else ""))
    for name, spec in pretrained.specs.items():
        lines.append(f"module {name}: {spec['class_path'].rpartition('.')[2]}, {parameter_count(spec) / 1e6:.3f} M parameters")
        if foreign is None:
            lines.append(f"  {describe_spec(spec)}")
    lines.append(f"tokenizer: {tokenizer_line(pretrained.tokenizer)}")
    if pretrained.labels is not None:
        lines.append(f"labels ({len(pretrained.labels)}): {listing(pretrained.labels)}")
    if foreign is not None:
        lines.append(f"dropped on purpose ({len(foreign.dropped)} tensors): {listing(foreign.dropped) or '-'}")
        lines += [f"note: {note}" for note in foreign.notes]
    return "\n".join(lines)
