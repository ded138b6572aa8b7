"""Checkpoints written atomically and read safely, in every ptft run."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from ptft.reliability import AtomicCheckpointIO, checkpoint_folders
from ptft.temp_files import remove_stale_temp_files


class AtomicCheckpoints(pl.Callback):
    """Puts :class:`~ptft.reliability.AtomicCheckpointIO` in place of Lightning's default
    CheckpointIO at setup (a CheckpointIO given in ``trainer.plugins`` is kept): checkpoints are
    written through a temporary file in their folder, fsynced and renamed, and read with
    ``weights_only=True``. Before fitting, it removes the temporary files that killed runs left in
    the checkpoint folders (and ``default_root_dir``), once per node. Every ptft task adds it."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if stage == "fit" and trainer.local_rank == 0:
            for folder in sorted({*checkpoint_folders(trainer), Path(trainer.default_root_dir)}):
                remove_stale_temp_files(folder)
