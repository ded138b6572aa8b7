"""An online linear probe: a classifier on the frozen, detached backbone features, trained
alongside any pretraining run whose data has labels (lightly's and solo-learn's online classifier)."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ptft.errors import ConfigError


def first_view(inputs: Any) -> Any:
    """The images of a batch's input part: ``views[0]`` of multi-view SSL data (a list of tensors)."""
    return inputs[0] if isinstance(inputs, (list, tuple)) else inputs


class OnlineLinearProbe(pl.Callback):
    """Logs ``train/online_loss`` and ``val/online_acc``: a linear classifier on the pooled
    backbone features (``pl_module.backbone(images)``, detached), trained on every training batch
    with its own optimizer while the task pretrains. Add it to ``trainer.callbacks``:

        - class_path: ptft.callbacks.OnlineLinearProbe
          init_args: {lr: 1.0e-3}

    Batches are ``(images, labels)`` or, for multi-view data, ``(views, labels)`` with ``views`` a
    list of tensors, of which the first is probed. The number of classes is the data's
    (``spec.num_classes``). Labels below 0 count as missing: they add no loss and no accuracy.
    Data without classes, batches without labels, or a first training batch without any label (on
    every rank) turn the probe off for the run with one warning.

    It does not change the pretraining: the backbone runs under ``no_grad`` and, for the probe's
    forward during training, in eval mode (its modules' modes are restored right after), so neither
    gradients nor BatchNorm running statistics nor dropout draws reach it. Eval mode is also how
    the validation features are computed, so the probe trains on the features it is scored on.
    The classifier is initialised from its own ``seed``, drawing nothing from the global random
    stream. The cost is one extra backbone forward (without grad) per training batch.

    Under DDP every rank starts from the same initialisation (the seed) and steps with gradients
    averaged over the ranks (one all-reduce per step), so the classifier stays identical on all
    ranks. ``val/online_acc`` is a torchmetrics accuracy synchronised over the ranks; like every
    Lightning validation metric under DDP, it counts the samples the distributed sampler repeats
    to even out the ranks.

    The classifier's weights and its optimizer state are saved in checkpoints (callback state), so
    a resumed run continues the probe exactly.

    Args:
        lr: learning rate of the probe's optimizer.
        optimizer: ``adam`` or ``sgd`` (momentum 0.9).
        weight_decay: weight decay of the probe's optimizer.
        seed: seed of the classifier's initialisation.
    """

    def __init__(self, lr: float = 1e-3, optimizer: Literal["adam", "sgd"] = "adam", weight_decay: float = 0.0, seed: int = 0) -> None:
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"OnlineLinearProbe: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if lr <= 0 or weight_decay < 0:
            raise ConfigError(f"OnlineLinearProbe: lr > 0 and weight_decay >= 0 needed, got {lr}, {weight_decay}")
        self.lr, self.optimizer_name, self.weight_decay, self.seed = lr, optimizer, weight_decay, seed
        self.classifier: nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.accuracy: MulticlassAccuracy | None = None
        self.enabled = True
        self.checked_labels = False
        self._pending_state: dict[str, Any] | None = None

    def disable(self, why: str) -> None:
        if self.enabled:
            warnings.warn(f"OnlineLinearProbe is off for this run: {why}", stacklevel=2)
        self.enabled = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.classifier is not None:
            return
        spec = getattr(pl_module, "data_spec", None) or getattr(trainer.datamodule, "spec", None)
        num_classes = getattr(spec, "num_classes", None)
        if num_classes is None or num_classes < 2:
            self.disable("the data has no classes (spec.num_classes is not set)")
            return
        generator = torch.Generator().manual_seed(self.seed)  # the global random stream is the pretraining's
        in_dim = pl_module.backbone.out_dim
        bound = in_dim ** -0.5  # nn.Linear's default initialisation
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own initialisation draws from it
            self.classifier = nn.Linear(in_dim, num_classes)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.empty(num_classes, in_dim).uniform_(-bound, bound, generator=generator))
            self.classifier.bias.copy_(torch.empty(num_classes).uniform_(-bound, bound, generator=generator))
        self.accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=-1)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._build(pl_module.device)

    def _build(self, device: torch.device) -> None:
        if self.classifier is None:
            return
        if self.optimizer is None or self.classifier.weight.device != device:
            self.classifier.to(device)
            self.accuracy.to(device)
            parameters = self.classifier.parameters()
            if self.optimizer_name == "adam":
                self.optimizer = torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
            else:
                self.optimizer = torch.optim.SGD(parameters, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        if self._pending_state is not None:
            self.classifier.load_state_dict(self._pending_state["classifier"])
            self.optimizer.load_state_dict(self._pending_state["optimizer"])
            self._pending_state = None

    def state_dict(self) -> dict[str, Any]:
        if self._pending_state is not None:  # restored but not built yet
            return self._pending_state
        if self.classifier is None or self.optimizer is None:
            return {}
        return {"classifier": self.classifier.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._pending_state = state_dict
        if self.optimizer is not None:  # already built: restore now, else when it is built
            self._build(self.classifier.weight.device)

    def _split(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(images, labels)`` of a batch, or None (with the probe turned off) when it has no labels."""
        if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
            self.disable(f"batches are not (inputs, labels) pairs but {type(batch).__name__}")
            return None
        inputs, labels = first_view(batch[0]), batch[1]
        if not (torch.is_tensor(inputs) and torch.is_tensor(labels) and labels.ndim == 1 and not labels.is_floating_point()):
            self.disable("the batches hold no integer class labels")
            return None
        return inputs, labels

    @torch.no_grad()
    def features(self, trainer: pl.Trainer, pl_module: pl.LightningModule, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features without grad, the backbone in eval mode (its modes restored after)."""
        backbone = pl_module.backbone
        modes = [(module, module.training) for module in backbone.modules()]
        backbone.eval()
        try:
            with trainer.precision_plugin.forward_context():
                return backbone(images).float()
        finally:
            for module, training in modes:
                module.training = training

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.enabled or self.classifier is None:
            return
        split = self._split(batch)
        if split is None:
            return
        images, labels = split
        labelled = labels >= 0
        if not self.checked_labels:  # once per run, the same decision on every rank
            self.checked_labels = True
            if trainer.strategy.reduce(labelled.sum().float(), reduce_op="sum").item() == 0:
                self.disable("the first training batch has no labels (all below 0): the data looks unlabelled")
                return
        self._build(pl_module.device)
        features = self.features(trainer, pl_module, images)
        with torch.enable_grad():
            losses = F.cross_entropy(self.classifier(features), labels.clamp(min=0), reduction="none")
            loss = (losses * labelled).sum() / labelled.sum().clamp(min=1)
            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
        if trainer.world_size > 1:  # average the gradients over the ranks: the classifier stays identical on all
            grads = [p.grad for p in self.classifier.parameters()]
            flat = trainer.strategy.reduce(torch.cat([g.flatten() for g in grads]), reduce_op="mean")
            for grad, part in zip(grads, flat.split([g.numel() for g in grads])):
                grad.copy_(part.view_as(grad))
        self.optimizer.step()
        pl_module.log("train/online_loss", loss.detach())

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if not self.enabled or self.classifier is None or trainer.sanity_checking or dataloader_idx or trainer.state.fn != TrainerFn.FITTING:
            return  # scored during fit only: a plain `validate` has no trained probe
        split = self._split(batch)
        if split is None:
            return
        images, labels = split
        self._build(pl_module.device)
        with torch.no_grad():
            self.accuracy.update(self.classifier(self.features(trainer, pl_module, images)), labels)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled or self.accuracy is None or trainer.sanity_checking or not self.accuracy.update_called:
            return
        # compute() sums the counts over the ranks, so every rank logs the same value (sync_dist averages equal values)
        pl_module.log("val/online_acc", self.accuracy.compute(), prog_bar=True, sync_dist=True)
        self.accuracy.reset()
