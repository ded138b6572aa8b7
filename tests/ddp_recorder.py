"""A test-only callback: each rank writes which samples it was given and a digest of its weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytorch_lightning as pl


class RecordRank(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.indices: list[int] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            # a sampler of indices, or of lists of them (duration-bucketed speech batches)
            self.indices = [int(k) for i in trainer.train_dataloader.sampler for k in (i if isinstance(i, list) else [i])]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            # (images, labels), (views, labels) of multi-view data, or LM examples of block_size + 1 tokens,
            # whose first block_size the model reads
            inputs = batch[0] if isinstance(batch, (list, tuple)) else batch[:, :-1]
            inputs = inputs[0] if isinstance(inputs, list) else inputs
            with trainer.precision_plugin.forward_context():
                self.output_dtype = str(pl_module.backbone(inputs).dtype)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.named_parameters()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "world_size": trainer.world_size, "indices": self.indices,
                  "steps": trainer.global_step, "weights": digest.hexdigest(), "precision": trainer.precision,
                  "output_dtype": getattr(self, "output_dtype", None)}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
