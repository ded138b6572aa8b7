"""``ptft export --check``: load a written export in its own library (``transformers`` or timm,
the ``ptft[interop]`` extra) and compare its outputs with the ptft backbone's on random inputs."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import torch

from ptft.backbones.text import TextTransformer
from ptft.backbones.vit import ViT
from ptft.errors import ConfigError

TOLERANCE = 1e-4  # float32, largest absolute difference of any output


def require(module: str) -> ModuleType:
    """``module``, or a one-line ConfigError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"--check loads the export with {module}, which is not installed: pip install 'ptft[interop]'") from None


def sample_inputs(backbone: torch.nn.Module) -> torch.Tensor:
    """Two random inputs of the kind ``backbone`` reads: token ids without padding, or images."""
    generator = torch.Generator().manual_seed(0)
    if isinstance(backbone, TextTransformer):
        ids = torch.randint(0, backbone.vocab_size, (2, min(16, backbone.max_length)), generator=generator)
        return ids.masked_fill(ids == backbone.pad_id, (backbone.pad_id + 1) % backbone.vocab_size)
    size = backbone.grid[0] * backbone.patch_size if isinstance(backbone, ViT) else 64
    return torch.randn(2, 3 if not isinstance(backbone, ViT) else backbone.patch_embed.in_channels, size, size, generator=generator)


def ptft_outputs(backbone: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    if isinstance(backbone, TextTransformer):
        return backbone.hidden_states(inputs)
    if isinstance(backbone, ViT):
        return backbone.tokens(inputs)  # class token (if any) and patches, as Hugging Face and timm return them
    return backbone.forward_features(inputs)


def library_outputs(folder: Path, fmt: str, inputs: torch.Tensor) -> torch.Tensor:
    """The outputs of the export loaded by ``transformers.AutoModel`` (``hf``; missing or unexpected
    weights are an error) or ``timm.create_model("local-dir:...")`` (``timm``, strict)."""
    if fmt == "hf":
        model, info = require("transformers").AutoModel.from_pretrained(folder, output_loading_info=True)
        wrong = [*info["missing_keys"], *info["unexpected_keys"]]
        if wrong:
            raise ConfigError(f"transformers loaded the export with missing or unexpected weights: {', '.join(sorted(wrong)[:5])}")
        key = "input_ids" if inputs.dtype == torch.long else "pixel_values"
        return model.eval()(**{key: inputs}).last_hidden_state
    model = require("timm").create_model(f"local-dir:{folder}", pretrained=True)
    return model.eval().forward_features(inputs)


def check_export(backbone: torch.nn.Module, folder: Path, fmt: str) -> float:
    """The largest absolute difference between the export's outputs in its library and ptft's; a
    ConfigError when it exceeds :data:`TOLERANCE`."""
    inputs = sample_inputs(backbone)
    with torch.no_grad():
        theirs, ours = library_outputs(folder, fmt, inputs), ptft_outputs(backbone.eval(), inputs)
    if theirs.shape != ours.shape:
        raise ConfigError(f"the {fmt} export's outputs have shape {tuple(theirs.shape)}, ptft's {tuple(ours.shape)}")
    difference = (theirs.float() - ours.float()).abs().max().item()
    if not difference <= TOLERANCE:
        raise ConfigError(f"the {fmt} export computes something else: outputs differ by up to {difference:.2e} (tolerance {TOLERANCE:g})")
    return difference
