"""The lightweight Transformer decoder of a masked autoencoder."""

from __future__ import annotations

import torch
from torch import nn

from ptft.backbones.transformer import TransformerBlock
from ptft.backbones.vit import sincos_position_embedding


class MAEDecoder(nn.Module):
    """Visible-token encodings + mask tokens, unshuffled to image order, with fixed 2-D sin-cos
    positions, through a few Transformer blocks, to pixel values of every patch.

    Args:
        encoder_width: token width of the encoder (the ViT backbone).
        grid: patch grid ``(rows, cols)`` of the training images.
        patch_pixels: values predicted per patch (patch_size**2 * channels).
        width: decoder token width.
        depth: decoder blocks.
        heads: decoder attention heads.
    """

    def __init__(self, encoder_width: int, grid: tuple[int, int], patch_pixels: int, width: int = 128, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("positions", sincos_position_embedding(*grid, width), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.predict = nn.Linear(width, patch_pixels)

    def forward(self, encoded: torch.Tensor, restore: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
        """``encoded`` ``(B, prefix + K, encoder_width)`` -> predictions ``(B, N, patch_pixels)``."""
        x = self.embed(encoded)
        prefix, visible = x[:, :num_prefix_tokens], x[:, num_prefix_tokens:]
        masked = self.mask_token.to(x.dtype).expand(len(x), restore.shape[1] - visible.shape[1], -1)
        patches = torch.gather(torch.cat([visible, masked], dim=1), 1, restore[..., None].expand(-1, -1, x.shape[-1]))
        x = torch.cat([prefix, patches + self.positions.to(x.dtype)], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.predict(self.norm(x))[:, num_prefix_tokens:]
