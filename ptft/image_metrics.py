"""FID and KID of generated images (torchmetrics), with a pluggable feature extractor.

The standard extractor is InceptionV3 (torch-fidelity's weights, which must be on disk when
there is no network); any ptft backbone, from a ``.ckpt`` or a ``ptft export`` folder, serves
offline. Features are extracted once per batch and shared by both metrics.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from ptft.errors import ConfigError
from ptft.handoff import load_backbone

INCEPTION = "inception"


class BackboneFeatures(nn.Module):
    """Pooled features of a frozen ptft backbone, from images in [-1, 1]; always in eval mode."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.backbone = load_backbone(source).eval().requires_grad_(False)
        self.num_features = self.backbone.out_dim

    def train(self, mode: bool = True) -> BackboneFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images).float()


class InceptionFeatures(nn.Module):
    """torchmetrics' InceptionV3 (torch-fidelity's FID network) on images in [-1, 1]."""

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.inception = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=weights_path)
        except Exception as error:  # no torch-fidelity, no network to fetch its weights, or an unreadable file
            raise ConfigError(
                "model.fid_extractor=inception: the InceptionV3 FID weights are not available "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). torch-fidelity downloads "
                "weights-inception-2015-12-05-6726825d.pth from its GitHub release; offline, put that file in "
                "~/.cache/torch/hub/checkpoints/ or set model.inception_weights=PATH, or use a ptft backbone: model.fid_extractor=<.ckpt or export folder>"
            ) from None
        self.num_features = 2048

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception(images.float().add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)).float()


class _Precomputed(nn.Identity):
    """Hands already-extracted features to torchmetrics as if they were images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def feature_extractor(source: str, inception_weights: str | None = None) -> nn.Module:
    """``inception`` or a ptft backbone source (``.ckpt`` or export folder)."""
    return InceptionFeatures(inception_weights) if source == INCEPTION else BackboneFeatures(source)


class GenerativeMetrics(nn.Module):
    """FID and KID between real and generated images. Real features are kept across
    :meth:`reset_fake`, so the real split is encoded once per run.

    Args:
        extractor: ``inception`` or a ptft ``.ckpt`` / export folder.
        inception_weights: local InceptionV3 weights for ``inception``.
        kid_subset_size: images per KID subset.
    """

    def __init__(self, extractor: str, inception_weights: str | None = None, kid_subset_size: int = 100) -> None:
        super().__init__()
        self.extractor = feature_extractor(extractor, inception_weights)
        features = _Precomputed(self.extractor.num_features)
        self.fid = FrechetInceptionDistance(feature=features, reset_real_features=False)
        self.kid = KernelInceptionDistance(feature=features, reset_real_features=False, subset_size=kid_subset_size)
        self.kid_subset_size = kid_subset_size

    def update(self, images: torch.Tensor, real: bool) -> None:
        features = self.extractor(images)
        self.fid.update(features, real=real)
        self.kid.update(features, real=real)

    def compute(self) -> dict[str, torch.Tensor]:
        counts = int(self.fid.real_features_num_samples), int(self.fid.fake_features_num_samples)
        if min(counts) < self.kid_subset_size:
            raise ConfigError(
                f"KID needs at least model.kid_subset_size={self.kid_subset_size} real and generated images, "
                f"got {counts[0]} and {counts[1]}: lower kid_subset_size or validate on more images"
            )
        kid_mean, _ = self.kid.compute()
        return {"val/fid": self.fid.compute(), "val/kid": kid_mean}

    def reset_fake(self) -> None:
        self.fid.reset()
        self.kid.reset()
