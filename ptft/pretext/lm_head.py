"""Language-model head whose output projection is the backbone's token embedding (tied weights)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TiedLMHead(nn.Module):
    """Token states -> logits over the vocabulary: ``[dense + GELU + LayerNorm]`` (BERT's transform,
    with ``transform``) then ``states @ embedding.T + bias``. The embedding stays the backbone's
    parameter: nothing here duplicates it, so checkpoints hold it once.

    Args:
        width: token-state dimension.
        vocab_size: rows of the tied embedding.
        transform: apply BERT's dense + GELU + LayerNorm before the projection (masked LM).
    """

    def __init__(self, width: int, vocab_size: int, transform: bool) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width)) if transform else nn.Identity()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, states: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(states), embedding, self.bias)
