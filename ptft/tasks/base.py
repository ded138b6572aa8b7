"""Machinery shared by every ptft LightningModule."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable

from ptft.backbones.base import Backbone
from ptft.errors import ConfigError
from ptft.handoff import folded_state_dict


# Init arguments that are objects, not hyperparameters: left out of save_hyperparameters.
NOT_HYPERPARAMETERS = ["backbone", "optimizer", "lr_scheduler"]


class PtftTask(pl.LightningModule):
    """A task around ``self.backbone``: the only part handed from pretraining to fine-tuning.

    Checkpoints carry the backbone's spec (``checkpoint["ptft"]["backbone"]``), so ``ptft export``
    and fine-tuning rebuild it without repeating its configuration, plus the DataModule's
    ``tokenizer`` (text) and ``label_names`` (classification) when it has them.

    Args:
        backbone: the shared network.
        optimizer: optimizer class and arguments, e.g. ``{class_path: torch.optim.AdamW, init_args: {lr: 1e-3}}``.
        lr_scheduler: optional LR scheduler class and arguments.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every ``step``.
        lr_scheduler_monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
    """

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_monitor: str = "val/loss",
    ) -> None:
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise ConfigError(f"model.backbone must be a ptft.backbones.Backbone, got {type(backbone).__name__}")
        self.backbone = backbone
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.lr_scheduler_monitor = lr_scheduler_monitor

    def check_data(self, datamodule: pl.LightningDataModule | None) -> None:
        """Raise a ConfigError if this task cannot use ``datamodule``; the CLI calls it before a
        trainer writes anything, and ``setup`` again for runs started from Python."""

    def setup(self, stage: str) -> None:
        self.check_data(self.trainer.datamodule)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Parameter groups handed to the optimizer; tasks override this for per-part learning
        rates: a group's ``lr`` replaces the optimizer's, its ``lr_scale`` multiplies the result."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def configure_optimizers(self):
        optimizer = self.optimizer(self.parameter_groups())
        for group in optimizer.param_groups:  # groups may scale the optimizer's lr (layer-wise decay)
            group["lr"] *= group.get("lr_scale", 1.0)
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_scheduler_interval, "monitor": self.lr_scheduler_monitor},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint["ptft"] = {"task": f"{cls.__module__}.{cls.__qualname__}", "backbone": self.backbone.spec()}
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        tokenizer = getattr(datamodule, "tokenizer", None)
        if tokenizer is not None:  # text models: fine-tuning and generation need the exact vocabulary
            checkpoint["ptft"]["tokenizer"] = tokenizer.json
        labels = getattr(datamodule, "label_names", None)
        if labels is not None:
            checkpoint["ptft"]["labels"] = list(labels)
        folded = folded_state_dict(self.backbone)
        if folded is not None:  # parametrized weights (spectral norm): store them as a plain backbone has them
            checkpoint["ptft"]["backbone_state_dict"] = folded
