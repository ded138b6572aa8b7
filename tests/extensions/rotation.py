"""Rotation prediction (RotNet, Gidaris et al. 2018) as a ptft pretraining objective, defined
outside ``ptft/``: images are turned by 0, 90, 180 or 270 degrees and a linear head on the
backbone's pooled features predicts the turn. Only the backbone is handed on; the head is a pretext part."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ptft.backbones.base import Backbone
from ptft.errors import ConfigError
from ptft.tasks.base import PtftTask


def turn(images: torch.Tensor, every: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Square images ``(B, C, H, H)`` turned counter-clockwise, and the quarter turns (0-3):
    each image in all four turns (``every``, ``4B`` images) or one random turn per image."""
    turned = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    if every:
        return turned.flatten(0, 1), torch.arange(4, device=images.device).repeat_interleave(len(images))
    quarters = torch.randint(4, (len(images),), device=images.device)
    return turned[quarters, torch.arange(len(images), device=images.device)], quarters


def rotation_loss(logits: torch.Tensor, quarters: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the predicted quarter turns."""
    return F.cross_entropy(logits.float(), quarters)


class RotationPretraining(PtftTask):
    """Rotation prediction: a linear head on the pooled backbone features predicts each image's turn.

    Logs ``train/loss``, ``train/acc``, ``val/loss`` and ``val/acc`` (validation shows every image in all four turns).

    Args:
        backbone: any image backbone (the data must give square images, as ImageFolderDataModule does).
        rotations: ``all`` (each image in all four turns: a batch of B becomes 4B, the paper's
            recipe) or ``random`` (one random turn per image, a quarter of the compute).
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(self, backbone: Backbone, rotations: Literal["all", "random"] = "all", **kwargs: Any) -> None:
        super().__init__(backbone, **kwargs)
        if rotations not in ("all", "random"):
            raise ConfigError(f"model.rotations must be 'all' or 'random', got {rotations!r}")
        self.rotations = rotations
        self.head = nn.Linear(backbone.out_dim, 4)
        self.train_acc, self.val_acc = MulticlassAccuracy(4, average="micro"), MulticlassAccuracy(4, average="micro")

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.head]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, quarters = turn(batch[0], every=self.rotations == "all")  # class labels are not used
        logits = self(images)
        loss = rotation_loss(logits, quarters)
        self.train_acc(logits, quarters)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, quarters = turn(batch[0], every=True)
        logits = self(images)
        self.val_acc(logits, quarters)
        self.log("val/loss", rotation_loss(logits, quarters), prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
