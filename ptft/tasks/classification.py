"""Classification fine-tuning: a head on the pooled backbone features, for images
(ImageFolderDataModule) and texts (TextClassificationDataModule + TextTransformer)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.tasks.fine_tuning import FineTuningTask


def classification_head(in_dim: int, num_classes: int, kind: str, hidden_dim: int, dropout: float, feature_norm: bool) -> nn.Sequential:
    """``[BatchNorm1d without affine]`` -> ``[dropout]`` -> linear, or a one-hidden-layer MLP."""
    layers: list[nn.Module] = [nn.BatchNorm1d(in_dim, affine=False)] if feature_norm else []
    if dropout:
        layers.append(nn.Dropout(dropout))
    if kind == "linear":
        layers.append(nn.Linear(in_dim, num_classes))
    elif kind == "mlp":
        layers += [nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, num_classes)]
    else:
        raise ConfigError(f"model.head must be 'linear' or 'mlp', got {kind!r}")
    return nn.Sequential(*layers)


class Classification(FineTuningTask):
    """Classifier = backbone + head, trained with cross-entropy; logs ``val/acc``, ``val/acc_top5``
    (more than 5 classes) and ``val/loss``. The hand-off (``pretrained``, ``mode``, ``layer_decay``,
    ...) is :class:`~ptft.tasks.fine_tuning.FineTuningTask`'s.

    Args:
        num_classes: number of classes; None: the data's (``data_spec.num_classes``, linked by the CLI).
        head: ``linear`` or ``mlp``.
        head_hidden_dim: hidden width of the ``mlp`` head.
        head_dropout: dropout before the head.
        feature_norm: BatchNorm1d without affine parameters on the features before the head
            (standardises them; the MAE linear-probe recipe).
        label_smoothing: label smoothing of the cross-entropy.
        **kwargs: the hand-off (backbone, pretrained, mode, unfreeze_at_epoch, backbone_lr,
            layer_decay: see :class:`FineTuningTask`) and the options every task shares
            (optimizer, lr_scheduler, on_nonfinite, ...: see :class:`~ptft.tasks.base.PtftTask`).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        head: Literal["linear", "mlp"] = "linear",
        head_hidden_dim: int = 512,
        head_dropout: float = 0.0,
        feature_norm: bool = False,
        label_smoothing: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        spec = self.data_spec
        if num_classes is None:
            if spec is None or spec.num_classes is None:
                raise ConfigError("model.num_classes is not set and the data gives no classes: set model.num_classes")
            num_classes = spec.num_classes
        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2, got {num_classes}")
        self.hparams.num_classes = num_classes
        self.num_classes = num_classes
        self.head = classification_head(self.feature_dim, num_classes, head, head_hidden_dim, head_dropout, feature_norm)
        self.label_smoothing = label_smoothing
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        accuracies = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes > 5:
            accuracies["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.eval_metrics = nn.ModuleDict({
            stage: MetricCollection({k: m.clone() for k, m in accuracies.items()}, prefix=f"{stage}/") for stage in ("val", "test")
        })

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        if spec.num_classes is not None and spec.num_classes != self.num_classes:
            raise ConfigError(f"the data has {spec.num_classes} classes but model.num_classes is {self.num_classes}")

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.head]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(inputs))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        logits = self(inputs).float()
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, _ = batch
        return self(inputs).argmax(dim=1)

    def _evaluate(self, batch, stage: str) -> None:
        inputs, labels = batch
        logits = self(inputs).float()
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        metrics = self.eval_metrics[stage]
        metrics.update(logits, labels)
        self.log_dict(metrics, prog_bar=True)


FineTuning = Classification  # the name configs written before the fine-tuning objectives were split use
