"""ImageNet-style folders (``root/<split>/<class>/*.JPEG``) as a LightningDataModule.

The data path is built for throughput: JPEGs decode at reduced size (libjpeg-turbo's 1/2, 1/4 or
1/8 scales through simplejpeg when the target is small; PIL for other formats), every crop/resize
is one antialiased resize on uint8 pixels, and images stay uint8 until they reach the device, where
``on_after_batch_transfer`` turns them into float images in [-1, 1] (channels_last). With
``decoded_cache=true`` the images are decoded once, a little above the target size, into a uint8
memmap that every later epoch and every DDP rank reads (see :mod:`ptft.data.decoded_cache`);
augmentations still run per epoch on it. With ``views`` (:class:`ptft.data.MultiView`) the train
split yields several augmented views per image for joint-embedding SSL (:mod:`ptft.data.views`).

Hostile inputs (zero-byte files, symlink loops, symlinks out of their class folder, text with an
image extension, truncated files, decompression bombs, class folders without images) stop the run
with one line naming the file, or, with ``skip_corrupt=true``, are skipped and counted. Grayscale,
CMYK, RGBA, palette and 16-bit images are converted to RGB; images smaller than the target (down to
1x1) are upscaled.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS

from ptft.data import decoded_cache as dcache
from ptft.data.decoding import (DECODE_ERRORS, AugmentPreset, CropResize, check_image_file, collate_images, decode_error, decode_image,
                                images_to_float, load_rgb, source_side)
from ptft.data.folder_files import folder_files
from ptft.data.paths import resolve_data_path
from ptft.data.spec import DataSpec
from ptft.data.loaders import evaluation_loader
from ptft.data.resumable import resumable_loader
from ptft.data.views import ImageViews, MultiView, ViewCollate, views_to_float
from ptft.errors import ConfigError, CorruptImageError, MissingPathError

log = logging.getLogger(__name__)
__all__ = ["ImageFolderDataModule", "CorruptImageError", "decode_image", "stratified_subset"]


def stratified_subset(targets: list[int], fraction: float, seed: int) -> list[int]:
    """Indices of a seeded, per-class random ``fraction`` of the samples (at least one per class).
    Depends only on ``targets``, ``fraction`` and ``seed``, so every DDP rank gets the same subset."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, target in enumerate(targets):
        by_class[target].append(index)
    generator = torch.Generator().manual_seed(seed)
    keep: list[int] = []
    for target in sorted(by_class):
        indices = by_class[target]
        count = max(1, round(fraction * len(indices)))
        keep += [indices[i] for i in torch.randperm(len(indices), generator=generator)[:count].tolist()]
    return sorted(keep)


class ImageFiles(Dataset):
    """(uint8 image, label) pairs decoded from a list of ``(path, label)``: each file decodes at
    the smallest JPEG scale whose shorter side is still ``decode_side``, then ``transform``
    (a :class:`CropResize`) crops and resizes it in one step."""

    def __init__(self, samples: list[tuple[str, int]], decode_side: int, transform: CropResize) -> None:
        self.samples = samples
        self.decode_side = decode_side
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            pixels = load_rgb(path, self.decode_side)
        except CorruptImageError:
            raise
        except DECODE_ERRORS as error:
            raise decode_error(path, error) from None
        return self.transform(pixels), label


class ImageFolderDataModule(pl.LightningDataModule):
    """Images in ``root/<split>/<class>/*.{JPEG,jpg,png,...}`` with torchvision ImageFolder semantics
    (classes are the sorted sub-folder names of the train split).

    Args:
        root: dataset folder; a relative path is looked up in ``$PTFT_DATA`` when it is not in the
            working directory.
        train_split, val_split: sub-folders for training and validation (``test`` for CIFAR-style trees).
        test_split: optional sub-folder for ``ptft test``.
        image_size: side of the square images fed to the model.
        batch_size: per-device batch size.
        num_workers: DataLoader worker processes.
        label_fraction: stratified fraction of the train split to use, in (0, 1].
        split_seed: seed of the ``label_fraction`` subset (independent of the training seed).
        train_augment: augmentation preset for the train split: ``flip``, ``crop_flip`` or ``none``
            (see :class:`ptft.data.decoding.CropResize`).
        skip_corrupt: decode every image once at start-up and skip (and count) those that fail,
            instead of stopping at the first unreadable one; symlink loops and symlinks that lead out of
            their class folder are skipped and counted too (``skipped_files``: ``<file>: <why>`` lines).
        decoded_cache: decode every image once (shorter side ``image_size``, or 1.25x that for
            ``crop_flip``) into a uint8 memmap and train from it: built by ``prepare_data`` (local
            rank 0), read-only on every rank, reused by later epochs and runs, rebuilt when a file's
            path, size or mtime changes. Augmentations still run per epoch on the cached pixels.
            Costs about ``N * side^2 * 3`` bytes of disk (Imagenette train at 64 px, ``crop_flip``: ~0.18 GB).
        cache_dir: folder for decoded caches; default ``<root>/.ptft_cache`` when ``root`` is
            writable, else ``$XDG_CACHE_HOME/ptft`` (``~/.cache/ptft``).
        views: multi-view crops and colour augmentations of the train split for joint-embedding SSL
            (:class:`ptft.data.MultiView`; replaces ``train_augment`` there): train batches become
            ``(views, labels)``, a list of float views, globals first; ``spec.views`` is
            ``(global_crops, local_crops)``. The decoded cache, when on, holds the train split at the
            views' source side.
    """

    def __init__(
        self,
        root: str = "imagenette",
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        image_size: int = 64,
        batch_size: int = 128,
        num_workers: int = 2,
        label_fraction: float = 1.0,
        split_seed: int = 0,
        train_augment: AugmentPreset = "crop_flip",
        skip_corrupt: bool = False,
        decoded_cache: bool = False,
        cache_dir: str | None = None,
        views: MultiView | None = None,
    ) -> None:
        super().__init__()
        if not 0 < label_fraction <= 1:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {label_fraction}")
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise ConfigError(
                f"data.image_size and data.batch_size must be >= 1 and data.num_workers >= 0, "
                f"got {image_size}, {batch_size}, {num_workers}"
            )
        CropResize(train_augment, image_size)  # validates the preset name
        if views is not None and not isinstance(views, MultiView):
            raise ConfigError(f"data.views must be a ptft.data.MultiView (or null), got {type(views).__name__}")
        view_sizes = views.sizes(image_size) if views is not None else None  # refuses local crops above the global size
        self.root = resolve_data_path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_augment = train_augment
        self.skip_corrupt = skip_corrupt
        self.decoded_cache = decoded_cache
        self.views = views
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else dcache.default_cache_root(self.root)
        self.classes = self._check_class_folders()
        self.spec = DataSpec("image", num_classes=len(self.classes), label_names=self.classes, image_size=image_size,
                             views=views.counts if views is not None else None, view_sizes=view_sizes)
        # Scanned now, so that bad trees fail before a trainer or logger writes anything.
        self.skipped_files: list[str] = []
        self.samples = {stage: self._samples(stage) for stage, split in self.splits.items() if split is not None}
        if self.skipped_files:
            message = (f"ptft: skipped {len(self.skipped_files)} unreadable images or symlinks (data.skip_corrupt=true), "
                       f"e.g. {self.skipped_files[0]}")
            log.warning(message)
        if label_fraction < 1:
            train = self.samples["train"]
            self.samples["train"] = [train[i] for i in stratified_subset([label for _, label in train], label_fraction, split_seed)]
        self.datasets: dict[str, Dataset] = {}

    def _split_dir(self, stage: str) -> Path:
        split_dir = self.root / self.splits[stage]
        if not self.root.is_dir():
            raise MissingPathError(f"data.root: {self.root} is not a folder (set data.root or $PTFT_DATA)")
        if not split_dir.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise MissingPathError(f"data.{stage}_split: {split_dir} is not a folder; folders in {self.root}: {found}")
        return split_dir

    def _classes_of(self, stage: str) -> list[str]:
        split_dir = self._split_dir(stage)
        classes = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
        if not classes:
            raise MissingPathError(f"data.{stage}_split: {split_dir} has no class sub-folders (expected <class>/<image>)")
        return classes

    def _check_class_folders(self) -> list[str]:
        classes = self._classes_of("train")
        for stage in ("val", "test"):
            if self.splits[stage] is None:
                continue
            other = self._classes_of(stage)
            if other != classes:
                raise ConfigError(
                    f"class folders of {self.root / self.splits[stage]} differ from {self.root / self.splits['train']}: "
                    f"only in {self.splits['train']}: {sorted(set(classes) - set(other))}, "
                    f"only in {self.splits[stage]}: {sorted(set(other) - set(classes))}"
                )
        return classes

    def _samples(self, stage: str) -> list[tuple[str, int]]:
        split_dir = self._split_dir(stage)
        samples: list[tuple[str, int]] = []
        empty: list[tuple[str, str]] = []
        for label, name in enumerate(self.classes):
            files, links = folder_files(split_dir / name, IMG_EXTENSIONS, self.skip_corrupt)
            self.skipped_files += links
            good = []
            for path in files:
                reason = check_image_file(path, self.image_size, decode=self.skip_corrupt)
                if reason is None:
                    good.append(path)
                elif self.skip_corrupt:
                    self.skipped_files.append(f"{path}: {reason}")
                else:
                    raise CorruptImageError(f"{path}: cannot read image ({reason}); fix or remove it, or set data.skip_corrupt=true")
            if not good:
                empty.append((name, "no readable images" if files else "no images"))
            samples += [(path, label) for path in good]
        if not samples:
            raise MissingPathError(f"data.{stage}_split: no images in {split_dir} "
                                   f"(looked for {', '.join(IMG_EXTENSIONS)} in its class folders)")
        if empty:
            name, what = empty[0]
            raise MissingPathError(f"data.{stage}_split: class folder {split_dir / name} has {what} "
                                   f"(looked for {', '.join(IMG_EXTENSIONS)}); add images or remove the folder")
        return samples

    def _cache_folder(self, split: str, side: int) -> Path:
        key = dcache.cache_key(self.root, self.samples[split], side)
        return self.cache_root / f"{self.splits[split]}-{side}px-{key}"

    def _wanted(self, stage: str | None) -> list[str]:
        stage = getattr(stage, "value", stage) or "fit"  # Lightning passes a TrainerFn enum
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["val"]}
        for split in wanted.get(stage, ["train", "val"]):
            if split not in self.samples:
                raise ConfigError(f"data.{split}_split is not set; `ptft {stage}` needs it")
        return wanted.get(stage, ["train", "val"])

    def prepare_data(self) -> None:
        """Builds the decoded caches (``decoded_cache=true``) of every configured split; Lightning
        calls this on local rank 0 only, before ``setup`` on every rank."""
        if not self.decoded_cache:
            return
        for split in self.samples:
            side = self._views_side() if split == "train" and self.views is not None else source_side(self._preset(split), self.image_size)
            dcache.build(self._cache_folder(split, side), self.samples[split], side, self.num_workers)

    def _preset(self, split: str) -> AugmentPreset:
        return self.train_augment if split == "train" else "none"

    def _views_side(self) -> int:
        assert self.views is not None
        return self.views.source_side(self.image_size)

    def _dataset(self, split: str, preset: AugmentPreset, build_cache: bool, multiview: bool = False) -> Dataset:
        if multiview:
            side, transform = self._views_side(), ImageViews(self.views, self.image_size)
        else:
            side, transform = source_side(preset, self.image_size), CropResize(preset, self.image_size)
        if self.decoded_cache:
            folder = self._cache_folder(split, side)
            if build_cache:  # without a Trainer nobody called prepare_data
                dcache.build(folder, self.samples[split], side, self.num_workers)
            if (folder / "index.npy").exists():
                return dcache.CachedImages(folder, [label for _, label in self.samples[split]], transform)
        return ImageFiles(self.samples[split], side, transform)

    def setup(self, stage: str | None = None) -> None:
        for split in self._wanted(stage):
            self.datasets[split] = self._dataset(split, self._preset(split), build_cache=True,
                                                 multiview=split == "train" and self.views is not None)

    def train_dataloader(self) -> DataLoader:
        # Resumes mid-epoch with the same order and augmentations (ptft/data/resumable.py).
        collate = ViewCollate(self.views) if self.views is not None else collate_images
        return resumable_loader(self.datasets["train"], self.batch_size, self.num_workers, self.trainer, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return evaluation_loader(self.datasets["val"], self.batch_size, self.num_workers, collate_images)

    def test_dataloader(self) -> DataLoader:
        return evaluation_loader(self.datasets["test"], self.batch_size, self.num_workers, collate_images)

    def predict_dataloader(self) -> DataLoader:
        return evaluation_loader(self.datasets["val"], self.batch_size, self.num_workers, collate_images)

    def feature_dataloader(self, split: str, sampler: Sampler | None = None) -> DataLoader:
        """Unshuffled, unaugmented images of ``split`` (for kNN evaluation and feature extraction)."""
        if split not in self.samples:
            raise ConfigError(f"data.{split}_split is not set; feature extraction needs it")
        # From the cache when one at this size exists (val always; train unless it is cached for crop_flip).
        dataset = self._dataset(split, "none", build_cache=False)
        return evaluation_loader(dataset, self.batch_size, self.num_workers, collate_images, sampler, persistent_workers=False)  # built per use

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 -> float in [-1, 1] on the device; a multi-view train batch (a list of views,
        perhaps with colour parameters) also gets its colour operations here with ``color_on_device``."""
        if isinstance(batch[0], (list, tuple)):
            return views_to_float(batch, self.views)
        images, labels = batch
        return images_to_float(images), labels
