"""Masked autoencoder pretraining (He et al. 2021) on a ViT backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.utils import make_grid

from ptft.backbones.base import Backbone
from ptft.backbones.vit import ViT
from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.image_logging import log_image
from ptft.pretext.mae_decoder import MAEDecoder
from ptft.pretext.masking import patchify, random_masking, unpatchify
from ptft.tasks.base import PtftTask


def masked_patch_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    """Mean squared error over the hidden patches only (``mask`` 1 = hidden); with
    ``norm_pix_loss`` each target patch is standardised by its own mean and variance. A batch with
    no hidden patch scores 0 (not 0 / 0 = NaN), with zero gradients that still reach every
    parameter, so DDP ranks stay in step."""
    target = target.float()
    if norm_pix_loss:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (prediction.float() - target).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class MaskedAutoencoderPretraining(PtftTask):
    """Hide a random ``mask_ratio`` of each image's patches, encode only the visible ones with the
    ViT backbone, reconstruct all patches with a light decoder, and score the hidden ones. A grid
    (masked input / reconstruction with the visible patches pasted in / original) is logged as
    ``val/reconstructions`` each validation epoch.

    Args:
        backbone: a :class:`ptft.backbones.ViT`.
        mask_ratio: fraction of patches hidden per image, in (0, 1).
        norm_pix_loss: regress per-patch standardised pixels (MAE's better-transferring target).
        decoder_width: token width of the decoder.
        decoder_depth: decoder blocks.
        decoder_heads: decoder attention heads.
        num_grid_images: images in the logged grid (0 disables it).
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(
        self,
        backbone: Backbone,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        decoder_width: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        num_grid_images: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        if not isinstance(backbone, ViT):
            raise ConfigError(f"model.backbone must be a ptft.backbones.ViT for masked autoencoding, got {type(backbone).__name__}")
        if not 0 < mask_ratio < 1:
            raise ConfigError(f"model.mask_ratio must be in (0, 1), got {mask_ratio}")
        self.patch_size = backbone.patch_size
        self.channels = backbone.patch_embed.in_channels
        self.decoder = MAEDecoder(backbone.out_dim, backbone.grid, self.patch_size**2 * self.channels, decoder_width, decoder_depth, decoder_heads)
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.num_grid_images = num_grid_images
        self._grid_batch: torch.Tensor | None = None

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.decoder]

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        image_size = spec.image_size
        expected = self.backbone.grid[0] * self.patch_size
        if image_size is not None and image_size != expected:
            raise ConfigError(f"data.image_size={image_size} but the ViT backbone has image_size={expected}; set model.backbone.init_args.image_size={image_size}")

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """``(loss, predictions (B, N, p*p*C), mask (B, N))`` for a batch of images."""
        num_patches = self.backbone.grid[0] * self.backbone.grid[1]
        keep, restore, mask = random_masking(len(images), num_patches, self.mask_ratio, images.device, generator)
        encoded = self.backbone.tokens(images, keep)
        prediction = self.decoder(encoded, restore, self.backbone.num_prefix_tokens)
        loss = masked_patch_loss(prediction, patchify(images, self.patch_size), mask, self.norm_pix_loss)
        return loss, prediction, mask

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self(batch[0])
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images = batch[0]
        loss, prediction, mask = self(images, torch.Generator(images.device).manual_seed(batch_idx))  # same masks every epoch
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        if batch_idx == 0 and self.num_grid_images > 0:
            n = min(self.num_grid_images, len(images))
            self._grid_batch = self.visualise(images[:n], prediction[:n], mask[:n])

    def visualise(self, images: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows of masked input, reconstruction (visible patches pasted in) and original, in [-1, 1]."""
        target = patchify(images.float(), self.patch_size)
        prediction = prediction.float()
        if self.norm_pix_loss:  # undo the per-patch standardisation with the true patch statistics
            prediction = prediction * (target.var(-1, keepdim=True) + 1e-6).sqrt() + target.mean(-1, keepdim=True)
        hidden = mask[..., None]
        grid = self.backbone.grid
        masked_input = unpatchify(target * (1 - hidden), self.patch_size, grid, self.channels)
        reconstruction = unpatchify(target * (1 - hidden) + prediction * hidden, self.patch_size, grid, self.channels)
        return torch.cat([masked_input, reconstruction.clamp(-1, 1), images.float()])

    def on_validation_epoch_end(self) -> None:
        if self._grid_batch is None or self.trainer.sanity_checking:
            return
        rows = self._grid_batch.add(1).div(2)
        log_image(self.trainer, "val/reconstructions", make_grid(rows, nrow=len(rows) // 3, padding=1))
        self._grid_batch = None
