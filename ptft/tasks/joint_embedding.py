"""What SimCLR, BYOL and DINO share: several augmented views per image, the view checks, and the
run length their momentum schedules span. Each method is its own file (simclr.py, byol.py, dino.py)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.pretext.collapse import normalized_std
from ptft.tasks.base import PtftTask


def forward_views(network: nn.Module, views: list[torch.Tensor]) -> list[torch.Tensor]:
    """``network`` applied to each view, with consecutive views of one size batched into a single
    call (the global crops together, then the local crops), as the methods' papers do; BatchNorm
    then normalises over all the views of a call."""
    outputs: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[1:] == views[start].shape[1:]:
            end += 1
        outputs += network(torch.cat(views[start:end])).chunk(end - start)
        start = end
    return outputs


class JointEmbeddingTask(PtftTask):
    """A pretraining task on several augmented views of each image: train batches are
    ``(views, labels)`` with ``views`` a list of ``(B, 3, S, S)`` tensors, global crops first
    (``ptft.data.MultiView``, ``data.views``); validation batches are plain ``(images, labels)``,
    on which ``val/feature_std`` (:func:`~ptft.pretext.collapse.normalized_std` of the backbone's
    pooled features: about 1 spread out, 0 collapsed) is logged. Add a ``ptft.callbacks.KNNMonitor``
    for ``val/knn_acc``.

    Subclasses set ``global_crops`` (the number they need, or the least with ``more_global_crops``),
    ``local_crops`` (whether they use local crops) and ``momentum_schedule`` (an EMA target whose
    momentum schedule spans the run, so the run needs a set length)."""

    global_crops: ClassVar[int] = 2
    more_global_crops: ClassVar[bool] = False
    local_crops: ClassVar[bool] = False
    momentum_schedule: ClassVar[bool] = False

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        views = getattr(spec, "views", None)
        name = type(self).__name__
        if views is None:
            raise ConfigError(f"{name} needs several augmented views of each image, but the data gives one: set data.views "
                              f"(a ptft.data.MultiView with global_crops: {self.global_crops})")
        n_global, n_local = views
        if n_global < self.global_crops or (n_global > self.global_crops and not self.more_global_crops):
            wanted = f"at least {self.global_crops}" if self.more_global_crops else f"exactly {self.global_crops}"
            raise ConfigError(f"{name} needs {wanted} global crops, got data.views.global_crops={n_global}")
        if n_local and not self.local_crops:
            raise ConfigError(f"{name} does not use local crops, got data.views.local_crops={n_local}: set it to 0")

    def views_of(self, batch: Any) -> list[torch.Tensor]:
        views = batch[0]
        if isinstance(views, torch.Tensor):
            raise ConfigError(f"{type(self).__name__} got a batch of single images: train it on data with several views (set data.views)")
        return list(views)

    def run_steps(self) -> float:
        """Optimizer steps of the run (``trainer.estimated_stepping_batches``), which the momentum
        schedule spans; a ConfigError when the run has no set length."""
        steps = float(self.trainer.estimated_stepping_batches)
        if math.isinf(steps) or steps < 1:
            raise self.no_run_length()
        return steps

    def no_run_length(self) -> ConfigError:
        return ConfigError(f"{type(self).__name__}: the momentum schedule spans the run, which has no set length: "
                           "set trainer.max_steps or trainer.max_epochs")

    def on_train_start(self) -> None:
        if self.momentum_schedule:
            self._run_steps = self.run_steps()

    def check_schedule(self, run_steps: float) -> None:
        super().check_schedule(run_steps)
        if self.momentum_schedule and math.isinf(run_steps):
            raise self.no_run_length()

    def validation_step(self, batch, batch_idx: int) -> None:
        images, _ = batch
        self.log("val/feature_std", normalized_std(self.backbone(images)), sync_dist=True)
