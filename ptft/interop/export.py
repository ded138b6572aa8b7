"""A ptft backbone written in the format of another ecosystem: a Hugging Face folder that
``transformers.AutoModel.from_pretrained`` loads, or a timm hub folder that ``timm.create_model(
..., pretrained_cfg_overlay=dict(file=...))`` loads, each with zero missing and unexpected keys."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save

from ptft.backbones.resnet import ResNet
from ptft.backbones.text import TextTransformer
from ptft.backbones.vit import ViT
from ptft.errors import ConfigError, OutputExistsError
from ptft.interop import hf_bert, hf_gpt2, hf_vit, resnet, timm_vit
from ptft.interop.export_check import check_export
from ptft.interop.weight_files import CONFIG_FILE
from ptft.temp_files import write_files

EXPORT_FORMATS = ("ptft", "hf", "timm")
WEIGHTS_FILE = "model.safetensors"
Exporter = Callable[[torch.nn.Module], tuple[dict, dict[str, torch.Tensor]]]


def exporter_for(backbone: torch.nn.Module, fmt: str) -> Exporter:
    """The function that converts ``backbone`` to format ``fmt``; a ConfigError saying why when
    that format has no counterpart for it."""
    if fmt == "hf":
        if isinstance(backbone, TextTransformer):
            return hf_gpt2.export_gpt2 if backbone.causal else hf_bert.export_bert
        if isinstance(backbone, ViT):
            return hf_vit.export_vit
        counterpart = "TextTransformer (as BERT or GPT-2) and ViT"
    elif fmt == "timm":
        if isinstance(backbone, ViT):
            return timm_vit.export_timm_vit
        if isinstance(backbone, ResNet):
            return resnet.export_timm_resnet
        counterpart = "ViT and ResNet"
    else:
        raise ConfigError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    raise ConfigError(f"a {type(backbone).__name__} has no {fmt} counterpart that ptft can write (--format {fmt} covers "
                      f"{counterpart}); export it with --format ptft")


def export_foreign(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, fmt: str, overwrite: bool = False,
                   check: bool = False) -> tuple[Path, float | None]:
    """Write the backbone of a ptft checkpoint or export (or of a foreign checkpoint ptft reads) to
    ``out_dir`` as ``config.json`` + ``model.safetensors`` (+ ``tokenizer.json`` for text), in
    format ``fmt`` (``hf`` or ``timm``). The files are renamed into place only once all are
    written, ``config.json`` last; an existing folder is replaced only with ``overwrite``. With
    ``check``, the files are first loaded in their library from a temporary folder and compared
    (:func:`~ptft.interop.export_check.check_export`); a failed check writes nothing. Returns the
    folder and the largest output difference found (None without ``check``)."""
    from ptft.handoff import TOKENIZER_FILE, build_loaded, read_pretrained

    out = Path(out_dir)
    if not overwrite and any((out / name).exists() for name in (CONFIG_FILE, WEIGHTS_FILE)):
        raise OutputExistsError(f"{out} already holds a model ({CONFIG_FILE} or {WEIGHTS_FILE}); pass --overwrite to replace it")
    pretrained = read_pretrained(checkpoint)
    if list(pretrained.specs) != ["backbone"]:
        raise ConfigError(f"{checkpoint} holds the modules {', '.join(pretrained.specs)}; --format {fmt} writes a single backbone "
                          "(an encoder-decoder has no counterpart there): export it with --format ptft")
    backbone = build_loaded(pretrained.specs["backbone"], pretrained.states["backbone"], checkpoint).eval()
    config, state = exporter_for(backbone, fmt)(backbone)
    files = {WEIGHTS_FILE: save({k: v.detach().contiguous() for k, v in state.items()}, metadata={"format": "pt"})}
    if pretrained.tokenizer is not None and fmt == "hf":
        files[TOKENIZER_FILE] = pretrained.tokenizer.encode("utf-8")
    files[CONFIG_FILE] = (json.dumps(config, indent=2) + "\n").encode()
    difference = None
    if check:
        with tempfile.TemporaryDirectory() as scratch:
            write_files(scratch, files)
            difference = check_export(backbone, Path(scratch), fmt)
    write_files(out, files)
    return out, difference
