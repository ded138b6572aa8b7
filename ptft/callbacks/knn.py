"""kNN accuracy of the backbone during any run (pretraining included)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from ptft.errors import ConfigError
from ptft.knn import knn_predict


def unpadded(gathered: torch.Tensor, total: int) -> torch.Tensor:
    """The ``total`` items of a dataset, in its order, from what each rank of an unshuffled
    ``DistributedSampler`` gave (``gathered``: ``(world size, per rank, ...)``). The sampler deals
    index ``j * world + rank`` to position ``j`` of ``rank`` and pads the last round with the first
    indices again; those repeats are dropped, so no sample counts twice."""
    world, per_rank = gathered.shape[:2]
    position = torch.arange(per_rank, device=gathered.device)[None] * world + torch.arange(world, device=gathered.device)[:, None]
    return gathered.flatten(0, 1)[position.flatten().argsort()[:total]]


class KNNMonitor(pl.Callback):
    """Logs ``val/knn_acc``: weighted kNN (``k`` neighbours, ``temperature``) on L2-normalised
    pooled backbone features of the unaugmented train split, scored on the val split. Works under
    DDP (each rank encodes its shard, features are gathered). Add it to ``trainer.callbacks``:

        - class_path: ptft.callbacks.KNNMonitor
          init_args: {every_n_epochs: 1}

    Args:
        k: neighbours that vote.
        temperature: softness of the similarity weights.
        every_n_epochs: run after every n-th validation.
        train_split: split whose features are the neighbours.
        eval_split: split that is classified.
    """

    def __init__(self, k: int = 20, temperature: float = 0.07, every_n_epochs: int = 1, train_split: str = "train", eval_split: str = "val") -> None:
        if k < 1 or temperature <= 0 or every_n_epochs < 1:
            raise ConfigError(f"KNNMonitor: k >= 1, temperature > 0 and every_n_epochs >= 1 needed, got {k}, {temperature}, {every_n_epochs}")
        self.k, self.temperature, self.every_n_epochs = k, temperature, every_n_epochs
        self.train_split, self.eval_split = train_split, eval_split

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        spec = getattr(trainer.datamodule, "spec", None)
        if not hasattr(trainer.datamodule, "feature_dataloader") or spec is None or spec.num_classes is None:
            raise ConfigError("KNNMonitor needs a labelled DataModule with feature_dataloader(), e.g. ptft.data.ImageFolderDataModule")

    @torch.no_grad()
    def features(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        datamodule = trainer.datamodule
        loader = datamodule.feature_dataloader(split)
        if trainer.world_size > 1:  # each rank encodes its shard; the features are gathered below
            loader = datamodule.feature_dataloader(split, DistributedSampler(loader.dataset, shuffle=False))
        features, labels = [], []
        for batch in loader:
            images, targets = datamodule.on_after_batch_transfer(pl_module.transfer_batch_to_device(batch, pl_module.device, 0), 0)
            with trainer.precision_plugin.forward_context():
                features.append(pl_module.backbone(images).float())
            labels.append(targets)
        features, labels = torch.cat(features), torch.cat(labels)
        if trainer.world_size > 1:
            total = len(loader.dataset)
            features, labels = unpadded(pl_module.all_gather(features), total), unpadded(pl_module.all_gather(labels), total)
        return features, labels

    def accuracy(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        backbone = pl_module.backbone
        was_training = backbone.training
        backbone.eval()
        try:
            train = self.features(trainer, pl_module, self.train_split)
            query = self.features(trainer, pl_module, self.eval_split)
        finally:
            backbone.train(was_training)
        predictions = knn_predict(*train, query[0], trainer.datamodule.spec.num_classes, self.k, self.temperature)
        return (predictions == query[1]).float().mean()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        pl_module.log("val/knn_acc", self.accuracy(trainer, pl_module), prog_bar=True)
