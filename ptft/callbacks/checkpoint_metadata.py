"""``checkpoint["ptft"]``: what ``ptft export``, fine-tuning and generation need from a checkpoint."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl

from ptft.handoff import FORMAT_VERSION, folded_state_dict, module_specs


class CheckpointMetadata(pl.Callback):
    """Writes into every checkpoint, under ``checkpoint["ptft"]``: the hand-off ``format_version``,
    the ``task`` class, the spec of each module the task hands on (``modules``:
    ``task.handoff_modules()``, e.g. ``{"backbone": ...}``), the weights of modules with
    parametrizations folded into plain tensors (``folded_state_dicts``, spectral norm), and from
    the data's :class:`~ptft.data.spec.DataSpec` the ``tokenizer`` (text), ``max_length`` (text:
    the context length trained on), the ``labels`` (classification) and the log-mel settings
    (``audio``: speech). A module is then rebuilt without repeating its configuration. Every ptft
    task adds it."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        cls = type(pl_module)
        modules = pl_module.handoff_modules()
        info = checkpoint.setdefault("ptft", {})
        info.update({"format_version": FORMAT_VERSION, "task": f"{cls.__module__}.{cls.__qualname__}", "modules": module_specs(modules)})
        folded = {name: state for name, module in modules.items() if (state := folded_state_dict(module)) is not None}
        if folded:
            info["folded_state_dicts"] = folded
        spec = pl_module.data_spec
        if spec is not None and spec.tokenizer is not None:
            info["tokenizer"] = spec.tokenizer.json
        if spec is not None and spec.max_length is not None:
            info["max_length"] = spec.max_length
        if spec is not None and spec.label_names is not None:
            info["labels"] = list(spec.label_names)
        if spec is not None and spec.audio is not None:
            info["audio"] = asdict(spec.audio)
