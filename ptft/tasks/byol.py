"""BYOL (Grill et al. 2020): an online network predicts a slowly moving target network's
projection of another view of the same image; no negatives."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ptft.backbones.base import Backbone
from ptft.ema import cosine_momentum, ema_update_
from ptft.errors import ConfigError
from ptft.pretext.byol_loss import byol_loss
from ptft.pretext.collapse import normalized_std
from ptft.pretext.projection_heads import ProjectionMLP, check_dims
from ptft.tasks.joint_embedding import JointEmbeddingTask, forward_views


class BYOLPretraining(JointEmbeddingTask):
    """BYOL: the online network (backbone -> projector -> predictor) predicts the target network's
    (EMA backbone -> EMA projector) projection of the other global view; the loss
    :func:`~ptft.pretext.byol_loss.byol_loss` is summed over both orders of the two views
    (``data.views`` with ``global_crops: 2, local_crops: 0``). The target gets no gradient: after
    each optimizer step it moves to ``m * target + (1 - m) * online`` (:func:`~ptft.ema.ema_update_`,
    buffers copied), with ``m`` rising from ``base_momentum`` to 1 along a cosine over the run
    (``trainer.estimated_stepping_batches``, so the run needs ``max_steps`` or ``max_epochs``).
    The online backbone is handed off (as in the paper). Logs ``train/loss``, ``train/momentum`` and
    ``train/z_std`` (:func:`~ptft.pretext.collapse.normalized_std` of the online projections, 0 at collapse).

    Args:
        backbone: the online image backbone; the target starts as a copy of it.
        projection_dim: size of the projection and prediction.
        projection_hidden_dim: hidden width of the projector and predictor.
        base_momentum: EMA momentum of the target at the first step.
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    momentum_schedule = True

    def __init__(
        self,
        backbone: Backbone,
        projection_dim: int = 256,
        projection_hidden_dim: int = 4096,
        base_momentum: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        check_dims(projection_dim=projection_dim, projection_hidden_dim=projection_hidden_dim)
        if not 0 <= base_momentum <= 1:
            raise ConfigError(f"model.base_momentum must be in [0, 1], got {base_momentum}")
        self.projector = ProjectionMLP(backbone.out_dim, projection_hidden_dim, projection_dim)
        self.predictor = ProjectionMLP(projection_dim, projection_hidden_dim, projection_dim)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.base_momentum = base_momentum

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.projector, self.predictor]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Online predictions ``(B, projection_dim)`` of a batch of images."""
        return self.predictor(self.projector(self.backbone(images)))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_backbone(images))

    def momentum(self) -> float:
        """The target's EMA momentum at the current optimizer step."""
        return cosine_momentum(self.global_step, self._run_steps, self.base_momentum)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        views = self.views_of(batch)
        projections = forward_views(lambda x: self.projector(self.backbone(x)), views)
        p1, p2 = forward_views(self.predictor, projections)
        with torch.no_grad():
            t1, t2 = forward_views(self.target, views)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/momentum", self.momentum())
        self.log("train/z_std", normalized_std(projections[0]))
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        momentum = self.momentum()  # of the step being taken (global_step counts it once it is done)
        super().optimizer_step(*args, **kwargs)
        ema_update_([self.target_backbone, self.target_projector], [self.backbone, self.projector], momentum)
