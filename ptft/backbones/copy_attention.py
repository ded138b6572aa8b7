"""Copy attention: the pointer-generator output of an encoder-decoder (See et al. 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ptft.backbones.base import SequenceFeatures


class CopyAttention(nn.Module):
    """Mixes the vocabulary distribution with copying a source token: at each target position, one
    attention head over the encoder states gives weights ``a`` over the source positions, a gate
    ``p_gen = sigmoid(w [state; context] + b)`` (``context``: the ``a``-weighted encoder states)
    chooses between generating and copying, and the next token has probability
    ``p_gen * softmax(logits) + (1 - p_gen) * sum of a over the source positions holding it``.
    A summary can then reuse the words of its input from the first steps of training, before the
    encoder has learned to represent them. Source padding gets no weight.

    Args:
        width: width of the decoder and encoder states.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.gate = nn.Linear(2 * width, 1)

    def forward(self, states: torch.Tensor, memory: SequenceFeatures, source: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``(B, T, V)`` of the next token, from decoder ``states`` ``(B, T, width)``,
        the encoder output ``memory`` of the source ids ``source`` ``(B, S)``, and the vocabulary
        ``logits`` ``(B, T, V)``. Computed in float32, also under mixed precision."""
        scores = self.query(states) @ self.key(memory.states).transpose(1, 2) / states.shape[-1] ** 0.5  # (B, T, S)
        scores = scores.float()
        if memory.mask is not None:
            scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        weights = scores.softmax(-1)
        context = weights.to(memory.states.dtype) @ memory.states
        gate = self.gate(torch.cat([states, context], dim=-1)).float()  # (B, T, 1)
        copied = torch.zeros_like(logits, dtype=torch.float32).scatter_add_(-1, source[:, None, :].expand_as(weights), weights)
        generated = F.logsigmoid(gate) + logits.float().log_softmax(-1)
        # tokens absent from the source get a copy probability of 0: clamped so that log stays finite (and its gradient 0)
        return torch.logaddexp(generated, F.logsigmoid(-gate) + copied.clamp_min(1e-30).log())
