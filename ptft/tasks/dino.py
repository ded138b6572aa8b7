"""DINO (Caron et al. 2021): self-distillation without labels. A student matches the centred,
sharpened output of a momentum teacher across multi-crop views of each image."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ptft.backbones.base import Backbone
from ptft.ema import cosine_momentum, ema_update_
from ptft.errors import ConfigError
from ptft.pretext.dino_loss import dino_loss, teacher_probabilities, update_center
from ptft.pretext.projection_heads import DINOHead
from ptft.tasks.joint_embedding import JointEmbeddingTask, forward_views


class DINOPretraining(JointEmbeddingTask):
    """DINO: the student (``student_backbone`` -> ``student_head``, a :class:`~ptft.pretext.projection_heads.DINOHead`)
    sees every view (``data.views``: at least 2 global crops, any number of local crops of another
    size); the teacher (``backbone`` -> ``teacher_head``) sees the global views only, without
    gradient. :func:`~ptft.pretext.dino_loss.dino_loss` compares the teacher's centred, sharpened
    softmax of each global view with the student's softmax of every other view. The centre moves
    to ``center_momentum * center + (1 - center_momentum) * mean teacher logits`` each step
    (all ranks' mean). After each optimizer step the teacher moves to ``m * teacher + (1 - m) *
    student`` (:func:`~ptft.ema.ema_update_`, buffers copied), ``m`` rising from ``base_momentum``
    to 1 along a cosine over the run (the run needs ``max_steps`` or ``max_epochs``). The teacher's
    temperature rises linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over the first
    ``warmup_teacher_temp_epochs`` epochs.

    The **teacher** backbone is ``self.backbone``: it is what ``ptft export`` and fine-tuning take
    and what a ``KNNMonitor`` scores, since the paper evaluates the teacher (it is the better
    network throughout training). The student is ``student_backbone``, built from ``model.backbone``;
    the teacher starts as its copy.

    Logs ``train/loss``, ``train/momentum``, ``train/teacher_temp``, and two collapse indicators:
    ``train/teacher_entropy`` (mean entropy of the teacher's per-image targets: log(out_dim) when
    the targets collapse to uniform) and ``train/teacher_batch_entropy`` (entropy of their batch
    mean: 0 when every image gets the same one-hot target).

    Args:
        backbone: the student's image backbone (``ResNet`` or ``ViT``; a ViT reads local crops of
            another size by interpolating its position embedding).
        out_dim: logits of the head ("prototypes"); the paper uses 65536 on ImageNet.
        hidden_dim: hidden width of the head's MLP.
        bottleneck_dim: size of the head's L2-normalised embedding.
        norm_last_layer: fix the weight norm of the head's last layer at 1.
        student_temp: student softmax temperature.
        teacher_temp: teacher softmax temperature after the warm-up.
        warmup_teacher_temp: teacher temperature at epoch 0.
        warmup_teacher_temp_epochs: epochs of the linear teacher-temperature warm-up (0: none).
        base_momentum: teacher EMA momentum at the first step.
        center_momentum: momentum of the centre.
        freeze_last_layer_epochs: epochs during which the student head's last layer is not
            updated (its gradient dropped), which steadies the start of training.
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    global_crops = 2
    more_global_crops = True
    local_crops = True
    momentum_schedule = True

    def __init__(
        self,
        backbone: Backbone,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        norm_last_layer: bool = True,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 0,
        base_momentum: float = 0.996,
        center_momentum: float = 0.9,
        freeze_last_layer_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        if min(student_temp, teacher_temp, warmup_teacher_temp) <= 0:
            raise ConfigError(f"model.student_temp, model.teacher_temp and model.warmup_teacher_temp must be > 0, "
                              f"got {student_temp}, {teacher_temp}, {warmup_teacher_temp}")
        if not (0 <= base_momentum <= 1 and 0 <= center_momentum <= 1):
            raise ConfigError(f"model.base_momentum and model.center_momentum must be in [0, 1], got {base_momentum}, {center_momentum}")
        if warmup_teacher_temp_epochs < 0 or freeze_last_layer_epochs < 0:
            raise ConfigError(f"model.warmup_teacher_temp_epochs and model.freeze_last_layer_epochs must be >= 0, "
                              f"got {warmup_teacher_temp_epochs}, {freeze_last_layer_epochs}")
        self.student_backbone = backbone
        self.student_head = DINOHead(backbone.out_dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer)
        self.backbone = copy.deepcopy(backbone).requires_grad_(False)  # the teacher is the hand-off (see the docstring)
        self.teacher_head = copy.deepcopy(self.student_head).requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.warmup_teacher_temp, self.warmup_teacher_temp_epochs = warmup_teacher_temp, warmup_teacher_temp_epochs
        self.base_momentum, self.center_momentum = base_momentum, center_momentum
        self.freeze_last_layer_epochs = freeze_last_layer_epochs

    def compile_regions(self) -> list[nn.Module]:
        return [*self.student_backbone.compile_regions(), self.student_head, *super().compile_regions(), self.teacher_head]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Student logits ``(B, out_dim)`` of a batch of images."""
        return self.student_head(self.student_backbone(images))

    def teacher(self, images: torch.Tensor) -> torch.Tensor:
        return self.teacher_head(self.backbone(images))

    def momentum(self) -> float:
        """The teacher's EMA momentum at the current optimizer step."""
        return cosine_momentum(self.global_step, self._run_steps, self.base_momentum)

    def teacher_temp_at(self, epoch: int) -> float:
        """The teacher temperature of an epoch (linear warm-up, then constant)."""
        if epoch >= self.warmup_teacher_temp_epochs:
            return self.teacher_temp
        progress = epoch / self.warmup_teacher_temp_epochs
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * progress

    def global_view_count(self, views: list[torch.Tensor]) -> int:
        """Global crops in a batch's views: ``data.views``' count, else the leading views of the first view's size."""
        spec_views = getattr(self.data_spec, "views", None)
        if spec_views is not None:
            return spec_views[0]
        return next((i for i, view in enumerate(views) if view.shape[1:] != views[0].shape[1:]), len(views))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        views = self.views_of(batch)
        n_global = self.global_view_count(views)
        if n_global < 2:
            raise ConfigError(f"DINOPretraining needs at least 2 global crops, the batch has {n_global}: set data.views.global_crops")
        with torch.no_grad():
            teacher_logits = forward_views(self.teacher, views[:n_global])
        student_logits = forward_views(self, views)
        teacher_temp = self.teacher_temp_at(self.current_epoch)
        loss = dino_loss(student_logits, teacher_logits, self.center, self.student_temp, teacher_temp)
        teacher_all = torch.cat(teacher_logits)
        with torch.no_grad():
            targets = teacher_probabilities(teacher_all, self.center, teacher_temp)
            entropy = -(targets * targets.clamp_min(1e-12).log()).sum(-1).mean()
            mean = targets.mean(0)
            batch_entropy = -(mean * mean.clamp_min(1e-12).log()).sum()
        self.center.copy_(update_center(self.center, teacher_all, self.center_momentum))
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({"train/momentum": self.momentum(), "train/teacher_temp": teacher_temp,
                       "train/teacher_entropy": entropy, "train/teacher_batch_entropy": batch_entropy})
        return loss

    def on_after_backward(self) -> None:
        if self.current_epoch < self.freeze_last_layer_epochs:
            for parameter in self.student_head.last_layer.parameters():
                parameter.grad = None

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        momentum = self.momentum()  # of the step being taken (global_step counts it once it is done)
        super().optimizer_step(*args, **kwargs)
        ema_update_([self.backbone, self.teacher_head], [self.student_backbone, self.student_head], momentum)
