"""The training loader's position on resume, also when the learning-rate schedule sized the run."""

from __future__ import annotations

import pytorch_lightning as pl


class LoaderPosition(pl.Callback):
    """Hands a resumed run's train loader the position its checkpoint saved.

    Lightning passes it on only when it builds the loader after loading the checkpoint's loop
    state. A schedule sized from ``trainer.estimated_stepping_batches`` in an epoch-based run
    (``max_epochs`` set: every ``WarmupCosine`` without ``total_steps``) makes Lightning build the
    loader earlier, in ``configure_optimizers``, and the position was silently dropped: the resumed
    epoch restarted from its first batch. ``on_train_start`` runs after the loop state is loaded and
    before the first batch is drawn; the loader (:class:`~ptft.data.resumable.ResumableLoader`)
    then skips what the run had already read."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loop = trainer.fit_loop
        if loop._combined_loader_states_to_load:  # still pending: Lightning built the loader before it had them
            loop._load_combined_loader_states()
