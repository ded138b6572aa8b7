"""BEST-RQ's random-projection quantizer (Chiu et al. 2022): frozen targets for masked prediction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RandomProjectionQuantizer(nn.Module):
    """Projects stacked frames with a frozen random matrix (Xavier-initialised) and returns the index
    of the nearest of ``codebook_size`` frozen random unit vectors (cosine distance, as both sides
    are L2-normalised). Both live in buffers drawn from their own ``seed``, so the targets are a
    fixed function of the input, the same in every run and after a resume."""

    def __init__(self, input_dim: int, codebook_dim: int = 16, codebook_size: int = 8192, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        projection = torch.empty(input_dim, codebook_dim)
        bound = (6 / (input_dim + codebook_dim)) ** 0.5
        projection.uniform_(-bound, bound, generator=generator)
        self.register_buffer("projection", projection)
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, codebook_dim, generator=generator), dim=-1))

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Code ids ``(...)`` of frames ``(..., input_dim)``."""
        projected = F.normalize(frames.float() @ self.projection, dim=-1)
        return (projected @ self.codebook.T).argmax(-1)  # nearest unit vector = largest cosine
