"""``checkpoint["ptft"]["experiment"]``: which experiment a checkpoint belongs to, for ``--ckpt_path last``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from ptft.errors import ConfigError
from ptft.reliability import describe_differences, experiment_differences, safe_torch_load


class ExperimentConfig(pl.Callback):
    """Writes the run's experiment settings (:func:`~ptft.reliability.experiment_config`) into every
    checkpoint as ``checkpoint["ptft"]["experiment"]``, so ``--ckpt_path last`` resumes only runs of
    the same experiment. At fit start it refuses to write into a checkpoint folder whose last
    checkpoint belongs to another experiment (a ModelCheckpoint ``dirpath`` shared by two configs).
    The ``ptft`` CLI adds it.

    Args:
        settings: the run's experiment settings.
    """

    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("ptft", {})["experiment"] = self.settings

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folders = {Path(c.dirpath) for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath}
        for path in sorted(path for folder in folders for path in folder.glob("last*.ckpt")):
            differences = experiment_differences(safe_torch_load(path, mmap=True), self.settings)
            if differences:
                raise ConfigError(f"{path.parent}: holds {path.name} of {describe_differences(differences)}; this run would "
                                  "write its checkpoints there: give it its own folder (trainer.logger.save_dir or the "
                                  "ModelCheckpoint dirpath)")
