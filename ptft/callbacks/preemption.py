"""Save ``last.ckpt`` when the run is preempted (SIGTERM), so it continues from that batch."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException


def last_checkpoint_path(trainer: pl.Trainer) -> Path:
    """Where ModelCheckpoint keeps ``last.ckpt`` (``<default_root_dir>/checkpoints`` without one)."""
    callback = next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)), None)
    if callback is not None and callback.dirpath:
        return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class PreemptionCheckpoint(pl.Callback):
    """On SIGTERM, save ``last.ckpt`` after the current batch (every rank takes part; rank 0
    writes), so ``ptft fit ... --ckpt_path last`` continues from that batch. The ``ptft`` command
    then exits with code 143. Other exceptions save nothing: the last periodic checkpoint stays.
    Every ptft task adds it."""

    def __init__(self) -> None:
        self.saved_path: Path | None = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        self.saved_path = path
        exception.ptft_checkpoint = str(path)  # type: ignore[attr-defined]  # the CLI reports it
