"""Random per-sample patch masking and patch <-> image reshaping (MAE)."""

from __future__ import annotations

import torch


def random_masking(batch: int, num_patches: int, ratio: float, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices for masking ``ratio`` of the patches of each sample independently.

    Returns ``keep`` ``(B, K)`` (visible patches, K = round(N * (1 - ratio)), at least 1),
    ``restore`` ``(B, N)`` (gathering ``[visible, masked]`` tokens with it gives row-major order)
    and ``mask`` ``(B, N)`` (1.0 where a patch is hidden, in row-major order).
    """
    visible = max(1, round(num_patches * (1 - ratio)))
    order = torch.rand(batch, num_patches, device=device, generator=generator).argsort(dim=1)
    restore = order.argsort(dim=1)
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :visible] = 0
    return order[:, :visible], restore, torch.gather(mask, 1, restore)


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H/p * W/p, p * p * C)``, patches in row-major order."""
    batch, channels, height, width = images.shape
    p = patch_size
    x = images.reshape(batch, channels, height // p, p, width // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    batch = patches.shape[0]
    p = patch_size
    x = patches.reshape(batch, grid[0], grid[1], p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, grid[0] * p, grid[1] * p)
