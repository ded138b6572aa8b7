"""Multi-view augmentations for joint-embedding self-supervised learning (SimCLR, BYOL, DINO).

:class:`MultiView` is the ``data.views`` setting of :class:`ptft.data.ImageFolderDataModule`: with
it, each training image yields ``global_crops`` random-resized crops at ``global_size`` and
``local_crops`` at ``local_size`` (DINO's multi-crop), each with its own flip, colour jitter,
grayscale, blur and solarize draws (BYOL's asymmetric blur/solarize probabilities by default).

The crops are done on uint8 pixels as :class:`ptft.data.decoding.CropResize` does (one antialiased
resize each, from an image decoded, or cached, at ``source_scale`` x ``global_size``), and each
view's colour parameters are drawn with it, per sample, from the streams that
:class:`ptft.data.resumable.SeededSamples` seeds from ``(seed, epoch, index)``. The colour operations
(:func:`color_views_batched`, torchvision's colour kernels rewritten for one parameter set per sample)
then run either

* in the DataLoader workers, batched over the views of one size in a batch when it is collated
  (:class:`ViewCollate`), back to uint8 for the trip to the device, or
* with ``color_on_device=true``, batched on the device after the transfer (:func:`views_to_float`),
  from the parameters that travel with the batch.

Either way the views are a function of ``(seed, epoch, index)`` alone, so exact mid-epoch resume holds.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch.utils.data import get_worker_info

from ptft.data.decoding import CROP_SOURCE_SCALE, CropResize, stack_images
from ptft.errors import ConfigError

__all__ = ["MultiView", "ImageViews", "ViewCollate", "color_views_batched", "views_to_float"]

# One view's colour parameters, a row of floats: the jitter factors, the order the four jitter
# operations run in, then grayscale (0/1), the blur sigma (0: no blur) and solarize (0/1).
BRIGHTNESS, CONTRAST, SATURATION, HUE, ORDER, GRAY, SIGMA, SOLARIZE = 0, 1, 2, 3, 4, 8, 9, 10
NUM_PARAMS = 11
IDENTITY = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing
SOLARIZE_THRESHOLD = 0.5


def blur_kernel_size(side: int) -> int:
    """Gaussian kernel of a blurred view: 10% of its side, rounded down, then up to an odd size, at
    least 3 (SimCLR's and BYOL's rule: 23 taps at 224 px; 7 at 64 px, 3 at 32 px)."""
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
    ``views`` the uint8 ``(3, side, side)`` crops (globals first) and ``params`` a float ``(views,
    NUM_PARAMS)`` tensor of each view's colour parameters, applied by :class:`ViewCollate` (colour in
    the workers) or by :func:`views_to_float` (on the device)."""

    def __init__(self, views: MultiView, image_size: int) -> None:
        global_size, local_size = views.sizes(image_size)
        self.views = views
        self.crops = ([CropResize("crop_flip", global_size, views.global_scale, views.flip)] * views.global_crops
                      + [CropResize("crop_flip", local_size, views.local_scale, views.flip)] * views.local_crops)

    def __call__(self, pixels: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        images, params = [], []
        for view, crop in enumerate(self.crops):
            images.append(crop(pixels))
            params.append(self.views.draw(view))
        return images, torch.tensor(params)


# Colour operations on float (N, 3, H, W) images in [0, 1] with one factor per sample ((N,) tensors):
# torchvision's adjust_brightness / adjust_contrast / adjust_saturation / adjust_hue, rgb_to_grayscale,
# gaussian_blur and solarize, computed the same way, but batched with per-sample parameters (torchvision's
# kernels take one factor per call), one channel plane at a time where torchvision broadcasts over
# channels (several times faster on CPU), and the HSV round trip of the hue shift in closed form.
def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma (torchvision's ITU-R 601 weights)."""
    return TF.rgb_to_grayscale_image(x)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return x.mul(_per_sample(factor)).clamp_(0, 1)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_sample(factor)
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return x.mul(factor).add_(mean * (1 - factor)).clamp_(0, 1)


def _saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    factor = _per_sample(factor)
    return x.mul(factor).add_(_gray(x).mul_(1 - factor)).clamp_(0, 1)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue (RGB -> HSV, hue + shift, -> RGB) per sample: with V = max, C = max - min
    and the shifted hue h in sixths of the circle, channel n of the result is
    ``V - C * clamp(min(k, 4 - k), 0, 1)`` with ``k = (h + (5, 3, 1)[n]) mod 6``."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    top = torch.maximum(torch.maximum(r, g), b)
    chroma = top - torch.minimum(torch.minimum(r, g), b)
    inverse = chroma.clamp(min=1e-12).reciprocal_()  # chroma 0 (gray): any hue gives V
    hue = torch.where(top == r, (g - b).mul_(inverse),
                      torch.where(top == g, (b - r).mul_(inverse).add_(2), (r - g).mul_(inverse).add_(4)))
    hue = hue.add_(shift.view(-1, 1, 1), alpha=6).remainder_(6)
    out = torch.empty_like(x)
    for channel, offset in enumerate((5.0, 3.0, 1.0)):
        k = hue + offset
        k = torch.where(k >= 6, k - 6, k)
        torch.sub(top, torch.minimum(k, 4 - k).clamp_(0, 1).mul_(chroma), out=out[:, channel])
    return out


def _grayscale(x: torch.Tensor, _=None) -> torch.Tensor:
    return _gray(x).expand_as(x).contiguous()


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (0: unchanged, a one-tap kernel), reflect
    padding, the kernel of torchvision's gaussian_blur; 10% of the side (:func:`blur_kernel_size`)."""
    batch, channels, height, width = x.shape
    size = blur_kernel_size(width)
    taps = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
    kernel = torch.softmax(-0.5 * (taps / sigma.clamp(min=1e-3).view(-1, 1)) ** 2, dim=1).repeat_interleave(channels, dim=0)
    pad = size // 2
    out = F.pad(x.reshape(1, batch * channels, height, width), (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(-1, 1, 1, size), groups=batch * channels)
    out = F.conv2d(out, kernel.view(-1, 1, size, 1), groups=batch * channels)
    return out.view(batch, channels, height, width)


def _solarize(x: torch.Tensor, _=None) -> torch.Tensor:
    return TF.solarize_image(x, SOLARIZE_THRESHOLD)


JITTER = (_brightness, _contrast, _saturation, _hue)


def color_views_batched(images: torch.Tensor, params: torch.Tensor, sync_free: bool | None = None) -> torch.Tensor:
    """Float ``(N, 3, H, W)`` images in [0, 1] with each sample's colour parameters (``params``, ``(N,
    NUM_PARAMS)``, see :meth:`MultiView.draw`) applied: the jitter operations in the sample's own
    order, then grayscale, blur and solarize.

    On a CPU (``sync_free`` False, the default there) each operation runs on the samples that need
    it only (picked in Python). On an accelerator (``sync_free`` True) nothing is read back to the
    host: every operation runs on the whole batch, with identity factors for the samples it does not
    concern (so the jitter runs 4 x 4 times, each sample's operation of each of its four steps)."""
    if sync_free is None:
        sync_free = images.device.type != "cpu"
    params = params.to(images.device, images.dtype)
    x = images
    if sync_free:
        for step in range(4):
            for op, function in enumerate(JITTER):
                selected = params[:, ORDER + step] == op
                x = function(x, torch.where(selected, params[:, BRIGHTNESS + op], IDENTITY[op]))  # no host-to-device copy
        x = torch.where(_per_sample(params[:, GRAY] > 0), _grayscale(x), x)
        x = _blur(x, params[:, SIGMA])
        return torch.where(_per_sample(params[:, SOLARIZE] > 0), _solarize(x), x)
    rows = params.tolist()

    def apply(function, which: list[int], column: int) -> None:
        nonlocal x
        if len(which) == len(rows):
            x = function(x, params[:, column])
        elif which:
            index = torch.tensor(which, device=x.device)
            x = x.index_copy(0, index, function(x[index], params[index, column]))

    for step in range(4):
        for op, function in enumerate(JITTER):
            apply(function, [i for i, row in enumerate(rows) if row[ORDER + step] == op and row[op] != IDENTITY[op]], op)
    apply(_grayscale, [i for i, row in enumerate(rows) if row[GRAY] > 0], GRAY)
    apply(_blur, [i for i, row in enumerate(rows) if row[SIGMA] > 0], SIGMA)
    apply(_solarize, [i for i, row in enumerate(rows) if row[SOLARIZE] > 0], SOLARIZE)
    return x


def _groups(views: MultiView, count: int) -> list[range]:
    """The view numbers of one size: the globals, then the locals (when any)."""
    return [group for group in (range(views.global_crops), range(views.global_crops, count)) if len(group)]


class ViewCollate:
    """``((views, params), label)`` samples -> ``(views, labels)``: ``views`` a list of uint8 ``(B, 3,
    side, side)`` channels-last batches, one per view (globals first), in shared memory in a worker.
    The colour operations run here, batched over the batch's views of one size, unless they run on
    the device: then the batch is ``(views, labels, params)`` with ``params`` ``(B, views,
    NUM_PARAMS)`` and :func:`views_to_float` applies them."""

    def __init__(self, views: MultiView) -> None:
        self.views = views

    def __call__(self, samples: list[tuple[tuple[list[torch.Tensor], torch.Tensor], int]]) -> tuple:
        labels = torch.tensor([label for _, label in samples])
        count = len(samples[0][0][0])
        if self.views.color_on_device:
            out = None
            if get_worker_info() is not None:
                out = torch.empty((len(samples), count, NUM_PARAMS)).share_memory_()
            params = torch.stack([sample[0][1] for sample in samples], out=out)
            return [stack_images([sample[0][0][view] for sample in samples]) for view in range(count)], labels, params
        views: list[torch.Tensor] = []
        for group in _groups(self.views, count):
            pixels = torch.stack([sample[0][0][view] for view in group for sample in samples])  # view-major
            params = torch.cat([torch.stack([sample[0][1][view] for sample in samples]) for view in group])
            colour = color_views_batched(pixels.to(torch.float32, memory_format=torch.contiguous_format).div_(255), params)
            colour = colour.mul_(255).round_()
            for chunk in colour.split(len(samples)):
                out = torch.empty((len(samples), *chunk.shape[2:], 3), dtype=torch.uint8)
                if get_worker_info() is not None:
                    out.share_memory_()
                views.append(out.copy_(chunk.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return views, labels


def views_to_float(batch: tuple, views: MultiView) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A multi-view batch on the device -> ``(views, labels)``: float ``(B, 3, side, side)`` views in
    [-1, 1], channels-last (as :func:`ptft.data.decoding.images_to_float`), after the batched
    colour operations when the batch carries their parameters (``color_on_device``)."""
    images, labels, *params = batch
    if not params:
        return [image.to(torch.float32, memory_format=torch.channels_last).mul_(2 / 255).sub_(1.0) for image in images], labels
    out: list[torch.Tensor] = []
    for group in _groups(views, len(images)):  # the views of one size as one batch
        pixels = torch.cat([images[view] for view in group]).to(torch.float32, memory_format=torch.contiguous_format).div_(255)
        colour = params[0][:, group.start:group.stop].transpose(0, 1).reshape(-1, NUM_PARAMS)
        pixels = color_views_batched(pixels, colour).mul_(2).sub_(1)
        out += [view.contiguous(memory_format=torch.channels_last) for view in pixels.split(images[0].shape[0])]
    return out, labels
