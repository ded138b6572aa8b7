"""Decoding image files to uint8 RGB arrays, safely and at reduced size, and the crop/resize
augmentations that run on those arrays.

Every crop is one antialiased bilinear resize on uint8 pixels (torch's uint8 kernel, which
matches PIL's filter), from an image decoded at the smallest JPEG scale that is still at least
the target size: the work per image is a reduced decode plus one small resize, with no float
conversion before the device.
"""

from __future__ import annotations

import errno
import math
import os
import random
import warnings
from typing import Literal

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import get_worker_info

from ptft.errors import ConfigError, CorruptImageError

AugmentPreset = Literal["crop_flip", "flip", "none"]
# What PIL and the OS raise for files that are not (whole) images.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
CROP_SCALE = (0.25, 1.0)  # random-resized crops cover 25-100% of the image area ...
CROP_RATIO = (3 / 4, 4 / 3)  # ... with an aspect ratio in this range (torchvision's default)
CROP_SOURCE_SCALE = 1.25  # crop_flip decodes/caches at 1.25x the target side, so crops resample little


def pixel_limit() -> int:
    """Images with more pixels than this are refused (PIL's ``Image.MAX_IMAGE_PIXELS``, 89.5M by
    default; PIL itself only warns below twice that)."""
    return int(Image.MAX_IMAGE_PIXELS or 0) or 2**62


def open_image(path: str) -> Image.Image:
    """Open ``path`` (header only) and refuse decompression bombs before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise CorruptImageError(f"{path}: refusing to decode an image over the limit of {pixel_limit():,} pixels "
                                f"(PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?): {error}") from None
    try:
        check_pixel_count(path, *image.size)
    except CorruptImageError:
        image.close()
        raise
    return image


def check_pixel_count(path: str, width: int, height: int) -> None:
    """Refuse an image whose header announces more than :func:`pixel_limit` pixels."""
    if width * height > pixel_limit():
        raise CorruptImageError(f"{path}: refusing to decode a {width}x{height} image ({width * height:,} pixels), "
                                f"over the limit of {pixel_limit():,} pixels (PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?)")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB of any PIL mode: grayscale, CMYK, palette (with or without transparency), RGBA (alpha
    dropped), and 16/32-bit grayscale scaled to 8 bits rather than clipped."""
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":  # I;16, I;16B, I (32-bit), F
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb(path: str, min_side: int) -> np.ndarray:
    """The image at ``path`` as a uint8 ``(H, W, 3)`` RGB array whose shorter side is at least
    ``min_side`` where the file allows it. JPEGs decode at reduced scale (:func:`decode_jpeg`) with
    libjpeg-turbo through simplejpeg (2-3x faster than PIL for small images, the same pixels at
    full size); what simplejpeg refuses (CMYK, damaged files) and other formats go
    through PIL, which converts any mode or raises the error the user sees."""
    with open(path, "rb") as file:
        data = file.read()
    if data[:3] == b"\xff\xd8\xff":
        pixels = decode_jpeg(path, data, min_side)
        if pixels is not None:
            return pixels
    with open_image(path) as image:
        image.draft("RGB", (min_side, min_side))
        return np.asarray(to_rgb(image))


def decode_jpeg(path: str, data: bytes, min_side: int) -> np.ndarray | None:
    """JPEG bytes as RGB, reduced in the decoder (libjpeg-turbo's M/8 scales, at least 2x) to the
    smallest size whose shorter side is still >= ``min_side``; at full size when no such reduction
    fits (scales between 1x and 2x decode slower than full size). None if simplejpeg cannot decode it."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    check_pixel_count(path, width, height)
    try:
        if min(height, width) < 2 * min_side:
            return simplejpeg.decode_jpeg(data, colorspace="RGB")
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=min_side, min_width=min_side, min_factor=2)
    except ValueError:  # CMYK, truncated or otherwise damaged (strict mode): PIL's turn
        return None


def resize_shorter_side(pixels: np.ndarray, side: int) -> np.ndarray:
    """Resize a uint8 HWC array so that its shorter side is ``side`` (kept aspect, bilinear, antialiased)."""
    height, width = pixels.shape[:2]
    scale = side / min(height, width)
    if scale == 1:
        return pixels
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    out = F.interpolate(torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None], size=size,
                        mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def decode_image(path: str, size: int) -> torch.Tensor:
    """Decode ``path`` to a uint8 ``(3, H, W)`` RGB tensor whose shorter side is ``size``
    (smaller images are upscaled). JPEGs decode at reduced scale."""
    return torch.from_numpy(resize_shorter_side(load_rgb(path, size), size)).permute(2, 0, 1)


def check_image_file(path: str, size: int, decode: bool) -> str | None:
    """None if ``path`` is a usable image, else why not: a zero-byte file, a symlink loop, a header
    PIL cannot parse, too many pixels; with ``decode`` the image is also decoded at reduced size,
    which finds truncated files."""
    try:
        if os.stat(path).st_size == 0:
            return "empty file (0 bytes)"
        if decode:
            load_rgb(path, size)
        else:
            with open_image(path):
                pass
        return None
    except CorruptImageError as error:
        return str(error).split(": ", 1)[1]
    except DECODE_ERRORS as error:
        if isinstance(error, OSError) and error.errno == errno.ELOOP:
            return "symlink loop (too many levels of symbolic links)"
        return str(error) or type(error).__name__


def decode_error(path: str, error: BaseException) -> CorruptImageError:
    """The one-line error for an image that fails to decode while training."""
    return CorruptImageError(f"{path}: cannot decode image ({str(error) or type(error).__name__}); fix or remove it, "
                             "or set data.skip_corrupt=true to find and skip damaged images before training")


def source_side(preset: AugmentPreset, image_size: int) -> int:
    """Shorter side images are decoded (or cached) at before cropping: the target for centre crops,
    a little above it for random-resized crops."""
    return math.ceil(image_size * CROP_SOURCE_SCALE) if preset == "crop_flip" else image_size


class CropResize:
    """uint8 ``(H, W, 3)`` array -> uint8 ``(3, size, size)`` tensor in one resize.

    ``crop_flip``: a random-resized crop (area fraction in :data:`CROP_SCALE`, aspect ratio in
    :data:`CROP_RATIO`, sampled as torchvision's ``RandomResizedCrop`` does) and a random horizontal
    flip (for fine-tuning); ``flip``: the central square and a random flip (autoencoder
    pretraining, linear probes); ``none``: the central square (evaluation). Randomness comes from
    Python's ``random``, which the DataLoader seeds per worker. ``scale`` (the crops' area fraction)
    and ``flip`` (the flip probability) are for multi-view crops (:mod:`ptft.data.views`).
    """

    def __init__(self, preset: AugmentPreset, size: int, scale: tuple[float, float] = CROP_SCALE, flip: float = 0.5) -> None:
        if preset not in ("crop_flip", "flip", "none"):
            raise ConfigError(f"data.train_augment must be one of 'crop_flip', 'flip', 'none', got {preset!r}")
        self.preset = preset
        self.size = size
        self.scale = scale
        self.flip = flip

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width)."""
        if self.preset == "crop_flip":
            area = height * width
            log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
            for _ in range(10):
                target = area * random.uniform(*self.scale)
                ratio = math.exp(random.uniform(*log_ratio))
                w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
                if 0 < w <= width and 0 < h <= height:
                    return random.randint(0, height - h), random.randint(0, width - w), h, w
        side = min(height, width)  # centre square (also the fallback of random-resized crops)
        return (height - side) // 2, (width - side) // 2, side, side

    def __call__(self, pixels: np.ndarray) -> torch.Tensor:
        """A ``(3, size, size)`` view of an ``(size, size, 3)`` (HWC) uint8 array: channels-last,
        which :func:`collate_images` stacks without a transpose."""
        top, left, h, w = self.crop_box(*pixels.shape[:2])
        image = torch.from_numpy(np.array(pixels[top:top + h, left:left + w])).permute(2, 0, 1)  # a copy: memmaps are read-only
        if (h, w) != (self.size, self.size):
            # F.interpolate's uint8 antialiased kernel, told to write channels-last (F.interpolate picks the
            # output layout itself, often NCHW, and transposing 3-channel uint8 costs as much as the resize)
            out = torch.empty((1, self.size, self.size, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
            image = torch.ops.aten._upsample_bilinear2d_aa.out(image[None], [self.size, self.size], False, None, None, out=out)[0]
        if self.preset != "none" and random.random() < self.flip:
            image = image.flip(-1)
        return image


def collate_images(samples: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uint8 image, label)`` pairs -> a ``(B, 3, H, W)`` uint8 batch in channels-last memory
    (``torch.channels_last``, what the device-side float conversion and the convnets want) and
    int64 labels. In a DataLoader worker the batch is written straight into shared memory."""
    return stack_images([image for image, _ in samples]), torch.tensor([label for _, label in samples])


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(3, H, W)`` images -> a ``(B, 3, H, W)`` batch in channels-last memory, in shared
    memory when called in a DataLoader worker."""
    pixels = [image.permute(1, 2, 0) for image in images]
    out = None
    if get_worker_info() is not None:  # as default_collate does: no copy when the batch crosses to the main process
        out = torch.empty((len(pixels), *pixels[0].shape), dtype=images[0].dtype).share_memory_()
    return torch.stack(pixels, out=out).permute(0, 3, 1, 2)


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """A uint8 image batch as float32 in [-1, 1], channels-last: one pass to float, then in place.
    Image DataModules call it in ``on_after_batch_transfer``, on the device, since batches cross as uint8."""
    return images.to(torch.float32, memory_format=torch.channels_last).mul_(2 / 255).sub_(1.0)
