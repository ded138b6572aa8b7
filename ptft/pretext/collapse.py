"""An indicator of representation collapse for joint-embedding pretraining."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def normalized_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the batch standard deviation of the L2-normalised rows of ``z``
    ``(N, D)``, times ``sqrt(D)``: about 1 for embeddings spread over the sphere, 0 when every
    image maps to the same point (collapse). Needs N >= 2."""
    normalized = F.normalize(z.detach().float(), dim=-1)
    return normalized.std(0).mean() * normalized.shape[-1] ** 0.5
