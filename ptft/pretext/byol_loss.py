"""BYOL's regression loss (Grill et al. 2020) as a pure function."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``2 - 2 cos(p, z)`` averaged over the batch: the squared distance of the L2-normalised online
    prediction ``p`` ``(N, D)`` and target projection ``z`` ``(N, D)`` (computed in float32). ``z`` is
    a target: it is detached here. BYOL sums it over both view orders (the task symmetrises)."""
    return (2 - 2 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)).mean()
