"""ImageNet-style folders (``root/<split>/<class>/*.JPEG``) as a LightningDataModule.

Images are decoded at reduced size (PIL's JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale when
the target is small) and stay uint8 until they reach the device, where
``on_after_batch_transfer`` turns them into float images in [-1, 1] (channels_last).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Sampler, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.transforms import v2

from ptft.data.paths import resolve_data_path
from ptft.data.resumable import own_generator, resumable_loader
from ptft.errors import ConfigError, CorruptImageError, MissingPathError

log = logging.getLogger(__name__)

AugmentPreset = Literal["crop_flip", "flip", "none"]
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_image(path: str, size: int) -> torch.Tensor:
    """Decode ``path`` to a uint8 ``(3, H, W)`` RGB tensor whose shorter side is ``size``
    (smaller images are upscaled). JPEGs decode at reduced scale."""
    with Image.open(path) as img:
        img.draft("RGB", (size, size))
        img = img.convert("RGB")
        width, height = img.size
        scale = size / min(width, height)
        if scale != 1:
            img = img.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BILINEAR)
        array = np.asarray(img).copy()
    return torch.from_numpy(array).permute(2, 0, 1)


def augmentation(preset: AugmentPreset, image_size: int) -> v2.Transform:
    """Transforms on uint8 tensors. ``flip``: centre crop + horizontal flips (for pretraining
    autoencoders and for linear probes); ``crop_flip``: random-resized crops (25-100% of the
    image) + flips (for fine-tuning); ``none``: centre crop (the evaluation transform)."""
    center = v2.CenterCrop(image_size)
    if preset == "none":
        return center
    if preset == "flip":
        return v2.Compose([center, v2.RandomHorizontalFlip()])
    if preset == "crop_flip":
        return v2.Compose([v2.RandomResizedCrop(image_size, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    raise ConfigError(f"data.train_augment must be one of 'crop_flip', 'flip', 'none', got {preset!r}")


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
    """(uint8 image, label) pairs from a list of ``(path, label)``."""

    def __init__(self, samples: list[tuple[str, int]], decode_size: int, transform: v2.Transform) -> None:
        self.samples = samples
        self.decode_size = decode_size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            image = decode_image(path, self.decode_size)
        except DECODE_ERRORS as error:
            raise CorruptImageError(
                f"{path}: cannot decode image ({error}); fix or remove it, or set data.skip_corrupt=true "
                "to find and skip damaged images before training"
            ) from None
        return self.transform(image), label


def unreadable_reason(path: str, size: int, decode: bool) -> str | None:
    """None if the image is usable, else why not. Parses the header only (fast), or with ``decode``
    decodes it at reduced size too, which also finds truncated files."""
    try:
        if decode:
            decode_image(path, size)
        else:
            with Image.open(path) as img:
                img.size  # noqa: B018 - parsing the header is the check
        return None
    except DECODE_ERRORS as error:
        return str(error) or type(error).__name__


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
            (see :func:`augmentation`).
        skip_corrupt: decode every image once at start-up and skip (and count) those that fail,
            instead of stopping at the first unreadable one.
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
    ) -> None:
        super().__init__()
        if not 0 < label_fraction <= 1:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {label_fraction}")
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise ConfigError(
                f"data.image_size and data.batch_size must be >= 1 and data.num_workers >= 0, "
                f"got {image_size}, {batch_size}, {num_workers}"
            )
        augmentation(train_augment, image_size)  # validates the preset name
        self.root = resolve_data_path(root)
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_augment = train_augment
        self.skip_corrupt = skip_corrupt
        self.classes = self._check_class_folders()
        self.num_classes = len(self.classes)
        # Scanned now, so that bad trees fail before a trainer or logger writes anything.
        self.skipped_files: list[str] = []
        self.samples = {stage: self._samples(stage) for stage, split in self.splits.items() if split is not None}
        if self.skipped_files:
            log.warning("skipped %d unreadable images (skip_corrupt=true), e.g. %s", len(self.skipped_files), self.skipped_files[0])
        if label_fraction < 1:
            train = self.samples["train"]
            self.samples["train"] = [train[i] for i in stratified_subset([label for _, label in train], label_fraction, split_seed)]
        self.datasets: dict[str, ImageFiles] = {}

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
        class_to_idx = {name: i for i, name in enumerate(self.classes)}
        samples = make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if not samples:
            raise MissingPathError(
                f"data.{stage}_split: no images in {split_dir} (looked for {', '.join(IMG_EXTENSIONS)} in its class folders)"
            )
        good = []
        for path, label in samples:
            reason = unreadable_reason(path, self.image_size, decode=self.skip_corrupt)
            if reason is None:
                good.append((path, label))
            elif self.skip_corrupt:
                self.skipped_files.append(path)
            else:
                raise CorruptImageError(f"{path}: cannot read image ({reason}); fix or remove it, or set data.skip_corrupt=true")
        if not good:
            raise MissingPathError(f"data.{stage}_split: none of the {len(samples)} images in {split_dir} is readable")
        return good

    def setup(self, stage: str | None = None) -> None:
        stage = getattr(stage, "value", stage) or "fit"  # Lightning passes a TrainerFn enum
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["val"]}
        for split in wanted.get(stage, ["train", "val"]):
            if split not in self.samples:
                raise ConfigError(f"data.{split}_split is not set; `ptft {stage}` needs it")
            preset = self.train_augment if split == "train" else "none"
            self.datasets[split] = ImageFiles(self.samples[split], self.image_size, augmentation(preset, self.image_size))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(self.datasets[split]) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=own_generator(),  # starting an iterator draws nothing from the training's random stream
        )

    def train_dataloader(self) -> DataLoader:
        # Resumes mid-epoch with the same order and augmentations (ptft/data/resumable.py).
        return resumable_loader(self.datasets["train"], self.batch_size, self.num_workers, self.trainer)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def feature_dataloader(self, split: str, sampler: Sampler | None = None) -> DataLoader:
        """Unshuffled, unaugmented images of ``split`` (for kNN evaluation and feature extraction)."""
        if split not in self.samples:
            raise ConfigError(f"data.{split}_split is not set; feature extraction needs it")
        dataset = ImageFiles(self.samples[split], self.image_size, augmentation("none", self.image_size))
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          generator=own_generator())

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        images = images.float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)
        return images, labels
