"""SimCLR's normalised-temperature cross-entropy (NT-Xent, Chen et al. 2020) as a pure function."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(every rank's x concatenated in rank order, this rank's offset in it)``. The gather keeps
    gradients: the backward pass sums every rank's gradient for each rank's slice
    (``torch.distributed.nn.functional.all_gather``). Outside a process group: ``(x, 0)``. Every
    rank must give the same number of rows (a ``DistributedSampler`` deals equal shares)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x)), dist.get_rank() * len(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, gather: bool = False) -> torch.Tensor:
    """NT-Xent of two views ``z1``, ``z2`` ``(N, D)`` of the same N images (row i of each). The 2N
    embeddings are L2-normalised; each is an anchor whose positive is the other view of its image
    and whose negatives are the other 2N - 2 embeddings; the loss is the mean over the 2N anchors of
    the cross-entropy of cosine similarities / ``temperature`` (computed in float32).

    ``gather``: under ``torch.distributed``, the candidates are the embeddings of every rank
    (gathered with gradients), so each anchor has 2NW - 2 negatives for W ranks; the anchors are
    this rank's 2N. The value on a rank is the mean over its anchors, and the mean of the ranks'
    values, and of their gradients (what DDP averages), is the single-process loss of the
    concatenated batch and its gradient."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"nt_xent needs two (N, D) views of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    n = len(z1)
    all1, offset = gather_with_grad(z1) if gather else (z1, 0)
    all2, _ = gather_with_grad(z2) if gather else (z2, 0)
    total = len(all1)
    anchors = torch.cat([z1, z2])  # (2N, D)
    candidates = torch.cat([all1, all2])  # (2NW, D): first views of every rank, then second views
    logits = anchors @ candidates.T / temperature
    rows = torch.arange(n, device=z1.device) + offset  # this rank's images in the gathered batch
    own = torch.cat([rows, rows + total])  # each anchor's own column
    positive = torch.cat([rows + total, rows])  # the other view of its image
    logits[torch.arange(2 * n, device=z1.device), own] = float("-inf")
    return F.cross_entropy(logits, positive)
