"""Fine-tuning a backbone with a classification head: linear probe, full, or unfreezing later;
for images (ImageFolderDataModule) and texts (TextClassificationDataModule + TextTransformer)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ptft.backbones.base import Backbone
from ptft.backbones.text import TextTransformer
from ptft.data.tokenizer import TextTokenizer
from ptft.handoff import load_backbone, read_tokenizer
from ptft.tasks.base import NOT_HYPERPARAMETERS, PtftTask
from ptft.errors import ConfigError, PtftError


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


class FineTuning(PtftTask):
    """Classifier = backbone + head, from a pretraining checkpoint, an export folder, or random init.
    A text model's tokenizer comes with it (checkpoint or export) and is handed to the DataModule.

    Args:
        num_classes: number of classes (linked from the DataModule by the CLI).
        backbone: the backbone to build. Optional with ``pretrained``, which then rebuilds the
            exported one; when both are given the weights must fit it exactly.
        pretrained: a ptft pretraining ``.ckpt`` or a ``ptft export`` folder; None trains from random init.
        mode: ``full`` (train everything) or ``linear_probe`` (backbone frozen and kept in eval
            mode, so BatchNorm statistics do not drift; its features are computed without grad).
        unfreeze_at_epoch: with ``linear_probe``, train the whole network from this epoch on.
            Under DDP this needs ``--trainer.strategy=ddp_find_unused_parameters_true``.
        head: ``linear`` or ``mlp``.
        head_hidden_dim: hidden width of the ``mlp`` head.
        head_dropout: dropout before the head.
        feature_norm: BatchNorm1d without affine parameters on the features before the head
            (standardises them; the MAE linear-probe recipe).
        backbone_lr: learning rate of the backbone (None: the optimizer's lr, as for the head).
        layer_decay: layer-wise learning-rate decay (e.g. 0.75, the MAE recipe): the backbone's
            deepest group (ViT: final norm; ResNet: last stage) trains at the backbone's rate, each
            group closer to the input at ``layer_decay`` times the next one's (ViT: per block, ResNet:
            per stage, DCGAN encoder: per layer; see ``Backbone.layer_groups``). None: no decay.
        label_smoothing: label smoothing of the cross-entropy.
        optimizer, lr_scheduler, lr_scheduler_interval, lr_scheduler_monitor, on_nonfinite, torch_compile: see :class:`PtftTask`.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: Backbone | None = None,
        pretrained: str | None = None,
        mode: Literal["full", "linear_probe"] = "full",
        unfreeze_at_epoch: int | None = None,
        head: Literal["linear", "mlp"] = "linear",
        head_hidden_dim: int = 512,
        head_dropout: float = 0.0,
        feature_norm: bool = False,
        backbone_lr: float | None = None,
        layer_decay: float | None = None,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_monitor: str = "val/loss",
        on_nonfinite: Literal["raise", "skip"] = "raise",
        torch_compile: bool = False,
    ) -> None:
        if mode not in ("full", "linear_probe"):
            raise ConfigError(f"model.mode must be 'full' or 'linear_probe', got {mode!r}")
        if unfreeze_at_epoch is not None and (mode != "linear_probe" or unfreeze_at_epoch < 1):
            raise ConfigError("model.unfreeze_at_epoch needs model.mode=linear_probe and a value >= 1")
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ConfigError(f"model.layer_decay must be in (0, 1], got {layer_decay}")
        if num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2, got {num_classes}")
        tokenizer = None
        if pretrained is not None:
            try:
                backbone = load_backbone(pretrained, backbone)
                tokenizer = read_tokenizer(pretrained)
            except PtftError as error:
                raise type(error)(f"model.pretrained: {error}") from None
        elif backbone is None:
            raise ConfigError("give model.backbone (random init) or model.pretrained (a .ckpt or export folder)")
        super().__init__(backbone, optimizer, lr_scheduler, lr_scheduler_interval, lr_scheduler_monitor, on_nonfinite, torch_compile)
        self.save_hyperparameters(ignore=NOT_HYPERPARAMETERS)
        self.head = classification_head(backbone.out_dim, num_classes, head, head_hidden_dim, head_dropout, feature_norm)
        self.mode = mode
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.backbone_lr = backbone_lr
        self.layer_decay = layer_decay
        self.label_smoothing = label_smoothing
        self.pretrained_tokenizer = TextTokenizer.from_json(tokenizer, str(pretrained)) if tokenizer is not None else None
        self.frozen = mode == "linear_probe"
        if self.frozen:
            self.backbone.eval()  # Lightning keeps each submodule's mode as it finds it
            if unfreeze_at_epoch is None:
                self.backbone.requires_grad_(False)  # never trained: not in the optimizer, not in DDP's buckets
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        accuracies = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes > 5:
            accuracies["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.eval_metrics = nn.ModuleDict({
            stage: MetricCollection({k: m.clone() for k, m in accuracies.items()}, prefix=f"{stage}/") for stage in ("val", "test")
        })

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.head]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def check_data(self, datamodule) -> None:
        """Text data needs a text backbone; a pretrained text model hands its tokenizer to the data."""
        if datamodule is None:
            return
        text_data = hasattr(datamodule, "tokenizer")
        if text_data != isinstance(self.backbone, TextTransformer):
            raise ConfigError(
                f"{type(datamodule).__name__} gives {'token ids' if text_data else 'images'}, but the backbone is a "
                f"{type(self.backbone).__name__}; use {'ptft.backbones.TextTransformer' if text_data else 'an image backbone'}"
            )
        if not text_data:
            return
        if self.pretrained_tokenizer is not None:
            datamodule.use_tokenizer(self.pretrained_tokenizer, self.hparams.pretrained)
        elif self.hparams.pretrained is not None:
            raise ConfigError(f"model.pretrained {self.hparams.pretrained} holds no tokenizer: it was not pretrained on text")
        self.backbone.check_data(datamodule.tokenizer, getattr(datamodule, "block_size", None))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        strategy = self.trainer.strategy
        if self.unfreeze_at_epoch is not None and isinstance(strategy, DDPStrategy):
            if not strategy._ddp_kwargs.get("find_unused_parameters", False):
                raise ConfigError(
                    "model.unfreeze_at_epoch under DDP: the frozen backbone gets no gradients at first; "
                    "use --trainer.strategy=ddp_find_unused_parameters_true"
                )

    def on_train_epoch_start(self) -> None:
        if self.frozen and self.unfreeze_at_epoch is not None and self.current_epoch >= self.unfreeze_at_epoch:
            self.frozen = False
        self.backbone.train(not self.frozen)

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()), "name": "head"}]
        if self.mode == "linear_probe" and self.unfreeze_at_epoch is None:
            return groups
        parameters = dict(self.backbone.named_parameters())
        layers = self.backbone.layer_groups() if self.layer_decay is not None else [list(parameters)]
        for depth, names in enumerate(layers):
            group: dict[str, Any] = {"params": [parameters[n] for n in names], "name": f"backbone.{depth}" if len(layers) > 1 else "backbone"}
            if self.backbone_lr is not None:
                group["lr"] = self.backbone_lr
            if self.layer_decay is not None:
                group["lr_scale"] = self.layer_decay ** (len(layers) - 1 - depth)
            groups.append(group)
        return groups

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                features = self.backbone(images)
        else:
            features = self.backbone(images)
        return self.head(features)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images).float()
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
        images, _ = batch
        return self(images).argmax(dim=1)

    def _evaluate(self, batch, stage: str) -> None:
        images, labels = batch
        logits = self(images).float()
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), prog_bar=True, sync_dist=True)
        metrics = self.eval_metrics[stage]
        metrics.update(logits, labels)
        self.log_dict(metrics, prog_bar=True)
