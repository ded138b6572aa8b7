"""Autoencoder pretraining: plain and denoising (gaussian noise or random patch masking)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from ptft.backbones.base import Backbone, SpatialBackbone
from ptft.data.spec import DataSpec
from ptft.image_logging import log_image
from ptft.pretext.conv_decoder import ConvDecoder
from ptft.tasks.base import PtftTask
from ptft.errors import ConfigError


def mask_patches(images: torch.Tensor, ratio: float, patch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a random ``ratio`` of the ``patch_size`` squares of each image to 0 (mid-grey)."""
    batch, _, height, width = images.shape
    grid = (batch, 1, -(-height // patch_size), -(-width // patch_size))
    keep = torch.rand(grid, device=images.device, generator=generator) >= ratio
    keep = keep.repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)[:, :, :height, :width]
    return images * keep


class AutoencoderPretraining(PtftTask):
    """Encode with the backbone's feature map, decode with a :class:`ConvDecoder`, reconstruct the
    clean image. A reconstruction grid (clean / corrupted / reconstructed) is logged each
    validation epoch as ``val/reconstructions``.

    Args:
        backbone: the encoder.
        corruption: ``none`` (plain autoencoder), ``gaussian`` (add noise) or ``mask`` (blank
            random square patches): the input corruption of a denoising autoencoder.
        noise_std: standard deviation of the gaussian noise (images are in [-1, 1]).
        mask_ratio: fraction of patches blanked by ``mask``.
        mask_patch_size: side of a blanked patch in pixels.
        loss: ``mse`` or ``l1`` reconstruction loss.
        decoder_width: fewest channels of a decoder layer.
        num_grid_images: images in the logged reconstruction grid (0 disables it).
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(
        self,
        backbone: Backbone,
        corruption: Literal["none", "gaussian", "mask"] = "none",
        noise_std: float = 0.2,
        mask_ratio: float = 0.5,
        mask_patch_size: int = 4,
        loss: Literal["mse", "l1"] = "mse",
        decoder_width: int = 64,
        num_grid_images: int = 8,
        **kwargs: Any,
    ) -> None:
        if not isinstance(backbone, SpatialBackbone):
            raise ConfigError(f"model.backbone of AutoencoderPretraining must be an image backbone (a SpatialBackbone), got {type(backbone).__name__}")
        super().__init__(backbone, **kwargs)
        if corruption not in ("none", "gaussian", "mask"):
            raise ConfigError(f"model.corruption must be 'none', 'gaussian' or 'mask', got {corruption!r}")
        if loss not in ("mse", "l1"):
            raise ConfigError(f"model.loss must be 'mse' or 'l1', got {loss!r}")
        if not 0 <= mask_ratio < 1:
            raise ConfigError(f"model.mask_ratio must be in [0, 1), got {mask_ratio}")
        if noise_std < 0 or mask_patch_size < 1:
            raise ConfigError(f"model.noise_std must be >= 0 and model.mask_patch_size >= 1, got {noise_std}, {mask_patch_size}")
        self.decoder = ConvDecoder(backbone.feature_channels, backbone.feature_stride, width=decoder_width)
        self.corruption = corruption
        self.noise_std = noise_std
        self.mask_ratio = mask_ratio
        self.mask_patch_size = mask_patch_size
        self.loss_fn = F.mse_loss if loss == "mse" else F.l1_loss
        self.num_grid_images = num_grid_images
        self._grid_batch: torch.Tensor | None = None

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.decoder]

    def corrupt(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.corruption == "gaussian":
            noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=generator)
            return images + self.noise_std * noise
        if self.corruption == "mask":
            return mask_patches(images, self.mask_ratio, self.mask_patch_size, generator)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        reconstruction = self.decoder(self.backbone.forward_features(images))
        if reconstruction.shape[-2:] != images.shape[-2:]:
            raise ConfigError(
                f"the decoder made {tuple(reconstruction.shape[-2:])} images from {tuple(images.shape[-2:])} inputs: "
                f"data.image_size must be a multiple of the backbone's stride {self.backbone.feature_stride}"
            )
        return reconstruction

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        image_size = spec.image_size
        if image_size is not None and image_size % self.backbone.feature_stride:
            raise ConfigError(
                f"data.image_size={image_size} is not a multiple of the backbone's stride "
                f"{self.backbone.feature_stride}: the decoder could not reproduce the input size"
            )

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, _ = batch
        loss = self.loss_fn(self(self.corrupt(images)).float(), images.float())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, _ = batch
        generator = torch.Generator(images.device).manual_seed(batch_idx)  # same corruption every epoch
        corrupted = self.corrupt(images, generator)
        reconstruction = self(corrupted).float()
        self.log("val/loss", self.loss_fn(reconstruction, images.float()), prog_bar=True, sync_dist=True)
        self.log("val/recon_mse", F.mse_loss(reconstruction, images.float()), sync_dist=True)
        if batch_idx == 0 and self.num_grid_images > 0:
            n = min(self.num_grid_images, len(images))
            self._grid_batch = torch.cat([images[:n], corrupted[:n], reconstruction[:n].to(images.dtype)])

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, _ = batch
        return self(images)

    def on_validation_epoch_end(self) -> None:
        if self._grid_batch is None or self.trainer.sanity_checking:
            return
        rows = self._grid_batch.float().add(1).div(2)
        log_image(self.trainer, "val/reconstructions", make_grid(rows, nrow=len(rows) // 3, padding=1))
        self._grid_batch = None
