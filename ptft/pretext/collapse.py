"""Indicators of representation collapse: in joint-embedding pretraining, and in an encoder
that gives the same states for every input."""

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


@torch.no_grad()
def state_spread(states: torch.Tensor) -> torch.Tensor:
    """Mean distance of the rows of ``states`` ``(N, D)`` (e.g. an encoder's output at every real
    token of a batch) from their mean, over their mean norm: about 0.9 for a randomly initialised
    Transformer encoder, 0 when it gives the same state for every token of every input (collapse)."""
    states = states.detach().float()
    return (states - states.mean(0)).norm(dim=-1).mean() / states.norm(dim=-1).mean().clamp(min=1e-12)
