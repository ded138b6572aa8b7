"""SimCLR (Chen et al. 2020): two views of each image are pulled together and pushed away from the
other images' views, by NT-Xent on projections of the backbone's pooled features."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ptft.backbones.base import Backbone
from ptft.errors import ConfigError
from ptft.pretext.collapse import normalized_std
from ptft.pretext.nt_xent import nt_xent
from ptft.pretext.projection_heads import ProjectionMLP, check_dims
from ptft.tasks.joint_embedding import JointEmbeddingTask, forward_views


class SimCLRPretraining(JointEmbeddingTask):
    """SimCLR: backbone -> :class:`~ptft.pretext.projection_heads.ProjectionMLP` projector ->
    :func:`~ptft.pretext.nt_xent.nt_xent` of the two global views (``data.views`` with
    ``global_crops: 2, local_crops: 0``). The backbone is handed off; the projector stays behind.
    Logs ``train/loss`` and ``train/z_std`` (:func:`~ptft.pretext.collapse.normalized_std` of the
    projections, 0 at collapse).

    Args:
        backbone: the image backbone (``ResNet`` with ``small_images`` at 32-64 px, or ``ViT``).
        projection_dim: size of the projection the loss compares.
        projection_hidden_dim: hidden width of the projector.
        temperature: NT-Xent temperature.
        gather_negatives: under DDP, use every rank's embeddings as negatives (gathered with
            gradients), so the loss is that of the global batch; False: each rank's own batch.
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(
        self,
        backbone: Backbone,
        projection_dim: int = 128,
        projection_hidden_dim: int = 2048,
        temperature: float = 0.2,
        gather_negatives: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        check_dims(projection_dim=projection_dim, projection_hidden_dim=projection_hidden_dim)
        if not temperature > 0:
            raise ConfigError(f"model.temperature must be > 0, got {temperature}")
        self.projector = ProjectionMLP(backbone.out_dim, projection_hidden_dim, projection_dim)
        self.temperature = temperature
        self.gather_negatives = gather_negatives

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.projector]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Projections ``(B, projection_dim)`` of a batch of images."""
        return self.projector(self.backbone(images))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        z1, z2 = forward_views(self, self.views_of(batch))
        loss = nt_xent(z1, z2, self.temperature, gather=self.gather_negatives)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/z_std", normalized_std(z1))
        return loss
