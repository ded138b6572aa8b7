"""How evenly a quantizer spreads frames over its codebook: the perplexity of the codes."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class CodePerplexity(Metric):
    """Perplexity (exp of the entropy) of the codes of the frames seen: ``codebook_size`` when
    every code is used equally often, 1 when every frame gets the same code. BEST-RQ's targets
    carry information only through the codes actually used, and a model that always predicts
    the most frequent code already scores that code's share as accuracy. The counts add up over
    processes under DDP.

    Args:
        codebook_size: number of codes the quantizer can give.
    """

    full_state_update = False

    def __init__(self, codebook_size: int) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.add_state("counts", torch.zeros(codebook_size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, codes: torch.Tensor, real: torch.Tensor) -> None:
        """Count the ``codes`` (any shape) where the boolean ``real`` of the same shape is True
        (False for padding frames). Unweighted ``bincount`` is deterministic on GPUs too."""
        self.counts += torch.bincount(codes[real], minlength=self.codebook_size)

    def compute(self) -> torch.Tensor:
        shares = self.counts.float() / self.counts.sum().clamp(min=1)
        return torch.exp(-(shares * shares.clamp(min=1e-30).log()).sum())
