"""``last.ckpt`` holds the final state of a run that ends normally."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from ptft.callbacks.preemption import save_last_checkpoint


class FinalCheckpoint(pl.Callback):
    """When training ends normally (``max_steps`` or ``max_epochs``), write ``last.ckpt`` unless a
    ``save_last`` ModelCheckpoint already saved this step. A run that ends between two step
    checkpoints or validations would otherwise leave ``last.ckpt``, the input of ``ptft export``
    and of ``--ckpt_path last``, at an earlier step. A run stopped by an error, a non-finite loss or
    SIGTERM does not end normally: the guards decide what it keeps. Every ptft task adds it."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        savers = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.save_last]
        if not savers or trainer.global_step == 0:
            return
        if any(getattr(c, "_last_global_step_saved", None) == trainer.global_step for c in savers):
            return
        save_last_checkpoint(trainer)
