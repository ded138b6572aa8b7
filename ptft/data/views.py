"""Multi-view augmentations for joint-embedding self-supervised learning (SimCLR, BYOL, DINO).

:class:`MultiView` is the ``data.views`` setting of :class:`ptft.data.ImageFolderDataModule`: with
it, each training image yields ``global_crops`` random-resized crops at ``global_size`` and
``local_crops`` at ``local_size`` (DINO's multi-crop), each with its own flip, colour jitter,
grayscale, blur and solarize draws (BYOL's asymmetric blur/solarize probabilities by default).

The crops are done on uint8 pixels as :class:`ptft.data.decoding.CropResize` does (one antialiased
resize each, from an image decoded, or cached, at ``source_scale`` x ``global_size``). The colour
operations then run either

* per view in the DataLoader workers (torchvision's ``transforms.v2.functional`` kernels on float
  pixels, back to uint8 for the trip to the device), or
* with ``color_on_device=true``, batched on the device after the transfer
  (:func:`color_views_batched`: the same operations with one random parameter set per sample).
  The parameters are still drawn in the workers, per sample, and travel with the batch: the
  views stay a function of ``(seed, epoch, index)`` and exact mid-epoch resume still holds.

Either way every random draw comes from the per-sample seeded streams of
:class:`ptft.data.resumable.SeededSamples`.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.utils.data import get_worker_info
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from ptft.data.decoding import CROP_SOURCE_SCALE, CropResize, stack_images
from ptft.errors import ConfigError

__all__ = ["MultiView", "ImageViews", "collate_views", "color_views_batched", "views_to_float"]

# One view's colour parameters, a row of floats: the jitter factors, the order the four jitter
# operations run in, then grayscale (0/1), the blur sigma (0: no blur) and solarize (0/1).
BRIGHTNESS, CONTRAST, SATURATION, HUE, ORDER, GRAY, SIGMA, SOLARIZE = 0, 1, 2, 3, 4, 8, 9, 10
NUM_PARAMS = 11
IDENTITY = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing
SOLARIZE_THRESHOLD = 0.5


def blur_kernel_size(side: int) -> int:
    """Gaussian kernel of a blurred view: the odd size nearest below 10% of its side, at least 3
    (SimCLR's and BYOL's rule: 23 taps at 224 px, 7 at 64 px, 3 at 32 px)."""
    return max(3, int(side * 0.1) // 2 * 2 + 1)


def _unit_interval(key: str, values: tuple[float, ...]) -> None:
    if any(not 0 <= value <= 1 for value in values):
        raise ConfigError(f"data.views.{key} must hold probabilities in [0, 1], got {values if len(values) > 1 else values[0]}")


def _scale_range(key: str, scale: tuple[float, float]) -> None:
    low, high = scale
    if not 0 < low <= high <= 1:
        raise ConfigError(f"data.views.{key} must be (min, max) area fractions with 0 < min <= max <= 1, got {tuple(scale)}")


class MultiView:
    """Multi-view crops and colour augmentations of the train split, for joint-embedding SSL.

    Set as ``data.views`` of :class:`ptft.data.ImageFolderDataModule`; the train batches become
    ``(views, labels)`` with ``views`` a list of float ``(B, 3, side, side)`` tensors in [-1, 1], the
    ``global_crops`` global views first, then the ``local_crops`` local ones; ``data.spec.views``
    is ``(global_crops, local_crops)``. Validation, test, predict and feature loaders stay single-view.

    Args:
        global_crops: global views per image (2 for SimCLR/BYOL/DINO).
        global_size: side of the global views; None: ``data.image_size``.
        global_scale: (min, max) area fraction of the image a global crop covers.
        local_crops: local views per image (DINO's multi-crop, e.g. 6 or 10; 0: none).
        local_size: side of the local views; at most the global side.
        local_scale: (min, max) area fraction of a local crop.
        flip: probability of a horizontal flip, per view.
        jitter: probability of colour jitter, per view (the four jitter operations in a random order).
        brightness, contrast, saturation: jitter strengths: factors drawn from [1 - x, 1 + x].
        hue: jitter strength of the hue shift, drawn from [-hue, hue] (at most 0.5).
        grayscale: probability of converting a view to grayscale.
        blur: probability of a Gaussian blur for (the first global view, the other global views, the
            local views); BYOL's asymmetric (1.0, 0.1, 0.5) by default.
        blur_sigma: (min, max) of the blur's random sigma, in pixels; the kernel is 10% of the view's
            side (odd, at least 3 taps).
        solarize: probability of solarizing (threshold 0.5) for (the first global view, the other
            global views, the local views); BYOL's (0.0, 0.2, 0.0) by default.
        color_on_device: run jitter, grayscale, blur and solarize batched on the device after the
            transfer instead of per view in the DataLoader workers (the random parameters are still
            drawn per sample in the workers).
        source_scale: train images are decoded (or cached, with ``data.decoded_cache``) with their
            shorter side at ``source_scale * global_size`` before cropping; larger keeps small crops
            sharper at more decoding cost and cache size.
    """

    def __init__(
        self,
        global_crops: int = 2,
        global_size: int | None = None,
        global_scale: tuple[float, float] = (0.08, 1.0),
        local_crops: int = 0,
        local_size: int = 32,
        local_scale: tuple[float, float] = (0.05, 0.4),
        flip: float = 0.5,
        jitter: float = 0.8,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        grayscale: float = 0.2,
        blur: tuple[float, float, float] = (1.0, 0.1, 0.5),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        solarize: tuple[float, float, float] = (0.0, 0.2, 0.0),
        color_on_device: bool = False,
        source_scale: float = CROP_SOURCE_SCALE,
    ) -> None:
        if global_crops < 1:
            raise ConfigError(f"data.views.global_crops must be >= 1, got {global_crops}")
        if local_crops < 0:
            raise ConfigError(f"data.views.local_crops must be >= 0, got {local_crops}")
        if global_size is not None and global_size < 1:
            raise ConfigError(f"data.views.global_size must be >= 1 (or null for data.image_size), got {global_size}")
        if local_size < 1:
            raise ConfigError(f"data.views.local_size must be >= 1, got {local_size}")
        if global_size is not None and local_crops and local_size > global_size:
            raise ConfigError(f"data.views.local_size {local_size} is larger than the global crops ({global_size})")
        _scale_range("global_scale", global_scale)
        _scale_range("local_scale", local_scale)
        for key, value in (("flip", flip), ("jitter", jitter), ("grayscale", grayscale)):
            _unit_interval(key, (value,))
        for key, values in (("blur", blur), ("solarize", solarize)):
            if len(values) != 3:
                raise ConfigError(f"data.views.{key} must hold 3 probabilities (first global view, other global views, "
                                  f"local views), got {tuple(values)}")
            _unit_interval(key, tuple(values))
        for key, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ConfigError(f"data.views.{key} must be >= 0 (factors are drawn from [1 - {key}, 1 + {key}]), got {value}")
        if not 0 <= hue <= 0.5:
            raise ConfigError(f"data.views.hue must be in [0, 0.5], got {hue}")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ConfigError(f"data.views.blur_sigma must be (min, max) with 0 < min <= max, got {tuple(blur_sigma)}")
        if source_scale < 1:
            raise ConfigError(f"data.views.source_scale must be >= 1, got {source_scale}")
        self.global_crops, self.global_size, self.global_scale = global_crops, global_size, tuple(global_scale)
        self.local_crops, self.local_size, self.local_scale = local_crops, local_size, tuple(local_scale)
        self.flip, self.jitter, self.grayscale = flip, jitter, grayscale
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.blur, self.blur_sigma, self.solarize = tuple(blur), tuple(blur_sigma), tuple(solarize)
        self.color_on_device = color_on_device
        self.source_scale = source_scale

    def __repr__(self) -> str:
        return f"MultiView({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    @property
    def counts(self) -> tuple[int, int]:
        """``(global_crops, local_crops)``: the view layout (``DataSpec.views``)."""
        return self.global_crops, self.local_crops

    def sizes(self, image_size: int) -> tuple[int, int]:
        """``(global side, local side)`` for data of ``image_size``; a local side above the global one is refused."""
        global_size = self.global_size or image_size
        if self.local_crops and self.local_size > global_size:
            raise ConfigError(f"data.views.local_size {self.local_size} is larger than the global crops ({global_size})")
        return global_size, self.local_size

    def source_side(self, image_size: int) -> int:
        """Shorter side the train images are decoded (or cached) at before cropping."""
        return math.ceil(self.sizes(image_size)[0] * self.source_scale)

    def draw(self, view: int) -> list[float]:
        """The colour parameters of view number ``view`` (globals first), drawn from Python's random."""
        if random.random() < self.jitter:
            factors = [random.uniform(max(0.0, 1 - x), 1 + x) for x in (self.brightness, self.contrast, self.saturation)]
            factors.append(random.uniform(-self.hue, self.hue))
            order = random.sample(range(4), 4)
        else:
            factors, order = list(IDENTITY), [0, 1, 2, 3]
        kind = 0 if view == 0 else 1 if view < self.global_crops else 2
        gray = float(random.random() < self.grayscale)
        sigma = random.uniform(*self.blur_sigma) if random.random() < self.blur[kind] else 0.0
        solarize = float(random.random() < self.solarize[kind])
        return [*factors, *map(float, order), gray, sigma, solarize]


class ImageViews:
    """The train transform of a :class:`MultiView`: uint8 ``(H, W, 3)`` array -> ``(views, params)``,
    ``views`` the uint8 ``(3, side, side)`` crops (globals first) and ``params`` None (colour already
    applied here) or, with ``color_on_device``, a float ``(views, NUM_PARAMS)`` tensor of each view's
    colour parameters for :func:`color_views_batched`."""

    def __init__(self, views: MultiView, image_size: int) -> None:
        global_size, local_size = views.sizes(image_size)
        self.views = views
        self.crops = ([CropResize("crop_flip", global_size, views.global_scale, views.flip)] * views.global_crops
                      + [CropResize("crop_flip", local_size, views.local_scale, views.flip)] * views.local_crops)

    def __call__(self, pixels: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        out, params = [], []
        for view, crop in enumerate(self.crops):
            image = crop(pixels)
            params.append(self.views.draw(view))
            out.append(image if self.views.color_on_device else color_view(image, params[-1]))
        return out, torch.tensor(params) if self.views.color_on_device else None


def color_view(image: torch.Tensor, params: list[float]) -> torch.Tensor:
    """One uint8 ``(3, H, W)`` view with its colour operations applied (torchvision's kernels, in
    float, one rounding back to uint8 at the end); the CPU path."""
    brightness, contrast, saturation, hue = params[BRIGHTNESS:ORDER]
    order = [int(i) for i in params[ORDER:GRAY]]
    gray, sigma, solarize = params[GRAY] > 0, params[SIGMA], params[SOLARIZE] > 0
    jittered = [brightness, contrast, saturation, hue] != list(IDENTITY)
    if not (jittered or gray or sigma > 0 or solarize):
        return image
    x = image.to(torch.float32).div_(255)
    if jittered:
        for op in order:
            if op == 0 and brightness != 1:
                x = TF.adjust_brightness_image(x, brightness)
            elif op == 1 and contrast != 1:
                x = TF.adjust_contrast_image(x, contrast)
            elif op == 2 and saturation != 1:
                x = TF.adjust_saturation_image(x, saturation)
            elif op == 3 and hue != 0:
                x = TF.adjust_hue_image(x, hue)
    if gray:
        x = TF.rgb_to_grayscale_image(x, num_output_channels=3)
    if sigma > 0:
        size = blur_kernel_size(x.shape[-1])
        x = TF.gaussian_blur_image(x, [size, size], [sigma, sigma])
    if solarize:
        x = TF.solarize_image(x, SOLARIZE_THRESHOLD)
    return x.mul(255).round_().to(torch.uint8)  # not in place: grayscale gives an expanded view


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    ratio = _per_sample(ratio)
    return (image * ratio).add_(other * (1 - ratio)).clamp_(0, 1)


def _adjust_hue(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    hsv = _rgb_to_hsv(image)  # torchvision's conversion (what adjust_hue_image uses), batched
    hue = (hsv[:, 0] + shift.view(-1, 1, 1)).remainder_(1.0)
    return _hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1))


def _gaussian_blur(image: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (0: unchanged), reflect padding, as
    torchvision's ``gaussian_blur_image`` does for one sigma."""
    batch, channels, height, width = image.shape
    size = blur_kernel_size(width)
    x = torch.arange(size, device=image.device, dtype=image.dtype) - size // 2
    # sigma 0 (no blur): clamped to 0.001, a kernel of exactly one tap
    kernel = torch.softmax(-0.5 * (x / sigma.clamp(min=1e-3).view(-1, 1)) ** 2, dim=1)
    kernel = kernel.repeat_interleave(channels, dim=0)  # one per (sample, channel)
    pad = size // 2
    out = F.pad(image.reshape(1, batch * channels, height, width), (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(-1, 1, 1, size), groups=batch * channels)
    out = F.conv2d(out, kernel.view(-1, 1, size, 1), groups=batch * channels)
    return out.view(batch, channels, height, width)


def color_views_batched(images: torch.Tensor, params: torch.Tensor, jitter: tuple[bool, bool, bool, bool] = (True,) * 4) -> torch.Tensor:
    """Float ``(B, 3, H, W)`` images in [0, 1] with each sample's colour parameters (``params``, ``(B,
    NUM_PARAMS)``) applied, batched, without a host sync: the device path. ``jitter`` says which of
    brightness, contrast, saturation, hue can differ from identity at all (the others are skipped).

    The jitter operations run in each sample's own order: at each of the four steps every operation
    runs on the whole batch, with the identity factor for the samples whose step it is not."""
    params = params.to(images.dtype)
    order = params[:, ORDER:GRAY]
    x = images
    identity = torch.tensor(IDENTITY, dtype=images.dtype, device=images.device)
    for step in range(4):
        for op in range(4):
            if not jitter[op]:
                continue
            factor = torch.where(order[:, step] == op, params[:, BRIGHTNESS + op], identity[op])
            if op == 0:
                x = (x * _per_sample(factor)).clamp_(0, 1)
            elif op == 1:
                mean = TF.rgb_to_grayscale_image(x).mean(dim=(-3, -2, -1), keepdim=True)
                x = _blend(x, mean, factor)
            elif op == 2:
                x = _blend(x, TF.rgb_to_grayscale_image(x), factor)
            else:
                x = _adjust_hue(x, factor)
    x = torch.where(_per_sample(params[:, GRAY] > 0), TF.rgb_to_grayscale_image(x, num_output_channels=3), x)
    x = _gaussian_blur(x, params[:, SIGMA])
    return torch.where(_per_sample(params[:, SOLARIZE] > 0) & (x >= SOLARIZE_THRESHOLD), 1 - x, x)


def collate_views(samples: list[tuple[tuple[list[torch.Tensor], torch.Tensor | None], int]]) -> tuple:
    """``((views, params), label)`` samples -> ``(views, labels)``, ``views`` a list of uint8
    ``(B, 3, side, side)`` channels-last batches (one per view), or ``(views, labels, params)``
    with ``params`` ``(B, views, NUM_PARAMS)`` when the colour operations run on the device."""
    count = len(samples[0][0][0])
    views = [stack_images([sample[0][0][view] for sample in samples]) for view in range(count)]
    labels = torch.tensor([label for _, label in samples])
    if samples[0][0][1] is None:
        return views, labels
    out = None
    if get_worker_info() is not None:
        out = torch.empty((len(samples), *samples[0][0][1].shape)).share_memory_()
    return views, labels, torch.stack([sample[0][1] for sample in samples], out=out)


def views_to_float(batch: tuple, views: MultiView) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A multi-view batch on the device -> ``(views, labels)``: float ``(B, 3, side, side)`` views in
    [-1, 1], channels-last (as :func:`ptft.data.decoding.images_to_float`), after the batched
    colour operations when the batch carries their parameters."""
    images, labels, *params = batch
    if not params:
        return [image.to(torch.float32, memory_format=torch.channels_last).mul_(2 / 255).sub_(1.0) for image in images], labels
    jitter = tuple(x > 0 for x in (views.brightness, views.contrast, views.saturation, views.hue))
    out: list[torch.Tensor] = []
    for group in (images[:views.global_crops], images[views.global_crops:]):  # the views of one size in one batch
        if not group:
            continue
        first = len(out)
        batch_size = group[0].shape[0]
        pixels = torch.cat(group).to(torch.float32).div_(255)
        colour = params[0][:, first:first + len(group)].transpose(0, 1).reshape(-1, NUM_PARAMS)
        pixels = color_views_batched(pixels, colour, jitter).mul_(2).sub_(1)
        out += [view.contiguous(memory_format=torch.channels_last) for view in pixels.split(batch_size)]
    return out, labels
