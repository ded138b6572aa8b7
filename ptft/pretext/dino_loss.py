"""DINO's self-distillation loss and centre update (Caron et al. 2021) as pure functions."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def teacher_probabilities(teacher_logits: torch.Tensor, center: torch.Tensor, teacher_temp: float) -> torch.Tensor:
    """The teacher's targets: ``softmax((logits - center) / teacher_temp)``, centred and sharpened,
    in float32 and without gradient."""
    return F.softmax((teacher_logits.detach().float() - center.float()) / teacher_temp, dim=-1)


def dino_loss(student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """Cross-entropy ``-sum q_t log p_s`` between the teacher's centred, sharpened probabilities of
    each global view ``t`` and the student's ``log_softmax(logits / student_temp)`` of each view
    ``s``, averaged over the batch and over the pairs with ``s != t``. ``student_logits`` holds every
    view ``(B, K)``, the global ones first in the order of ``teacher_logits`` (the teacher sees the
    global views only); ``center`` is ``(1, K)`` or ``(K,)``."""
    if len(teacher_logits) < 1 or len(student_logits) < len(teacher_logits):
        raise ValueError(f"dino_loss: {len(teacher_logits)} teacher and {len(student_logits)} student views; the student needs every teacher view")
    if len(student_logits) == 1:
        raise ValueError("dino_loss needs at least two views: a view is never compared with itself")
    targets = [teacher_probabilities(t, center, teacher_temp) for t in teacher_logits]
    log_probs = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student_logits]
    total, pairs = 0.0, 0
    for t, q in enumerate(targets):
        for s, log_p in enumerate(log_probs):
            if s == t:
                continue
            total = total + (-q * log_p).sum(-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """``momentum * center + (1 - momentum) * mean(teacher_logits)`` over the rows of
    ``teacher_logits`` ``(N, K)`` (every global view of the batch); under ``torch.distributed`` the
    mean is over every rank's rows (sum and count all-reduced). Returns the new centre ``(1, K)``."""
    stats = torch.cat([teacher_logits.detach().float().sum(0), teacher_logits.new_tensor([len(teacher_logits)], dtype=torch.float32)])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(stats)
    batch_center = (stats[:-1] / stats[-1]).reshape(1, -1)
    return center * momentum + batch_center.to(center.dtype) * (1 - momentum)
