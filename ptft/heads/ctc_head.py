"""The CTC output layer of speech recognition."""

from __future__ import annotations

import torch
from torch import nn

from ptft.backbones.base import HandoffModule


class CTCHead(HandoffModule):
    """Dropout and a linear layer from a speech backbone's states ``(B, T, in_dim)`` to log-probabilities
    ``(B, T, vocab_size)`` over the character vocabulary, whose padding id is the CTC blank.

    Args:
        in_dim: width of the backbone's states.
        vocab_size: size of the character vocabulary (blank included).
        dropout: dropout on the states before the linear layer.
    """

    def __init__(self, in_dim: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, vocab_size)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(states)).float().log_softmax(-1)
