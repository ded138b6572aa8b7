"""A new data format in one file, outside ``ptft/``: labelled images in NumPy ``.npz`` files,
one per split, holding ``images`` (uint8, ``(N, H, H, 3)``) and ``labels`` (ints, ``(N,)``)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ptft.data.decoding import collate_images, images_to_float
from ptft.data.loaders import evaluation_loader
from ptft.data.paths import resolve_data_path
from ptft.data.resumable import resumable_loader
from ptft.data.spec import DataSpec
from ptft.errors import ConfigError, MissingPathError


def read_split(path: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of one ``.npz``; bad files stop the run with one line naming ``key`` and the file."""
    file = resolve_data_path(path)
    if not file.is_file():
        raise MissingPathError(f"data.{key}: {file} does not exist (a relative path is looked up in $PTFT_DATA)")
    try:
        with np.load(file) as arrays:
            images, labels = arrays["images"], arrays["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ConfigError(f"data.{key}: {file} is not an .npz file with 'images' and 'labels' ({error})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
        raise ConfigError(f"data.{key}: {file}: 'images' must be uint8 (N, H, H, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu" or (len(labels) and labels.min() < 0):
        raise ConfigError(f"data.{key}: {file}: 'labels' must be {len(images)} ints >= 0, got {labels.dtype} {labels.shape}")
    return images, labels


class ArrayImages(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.images[index]).permute(2, 0, 1), int(self.labels[index])  # uint8 (3, H, W)


class ArrayImagesDataModule(pl.LightningDataModule):
    """Square RGB images and their labels from one ``.npz`` file per split.

    Args:
        train_file, val_file: ``.npz`` files with ``images`` and ``labels``; a relative path is
            looked up in ``$PTFT_DATA`` when it is not in the working directory.
        label_names: class names in label order (default: ``"0"``, ``"1"``, ... up to the largest train label).
        batch_size: per-device batch size.
        num_workers: DataLoader worker processes.
    """

    def __init__(self, train_file: str, val_file: str, label_names: list[str] | None = None, batch_size: int = 64,
                 num_workers: int = 0) -> None:
        super().__init__()
        self.splits = {"train": read_split(train_file, "train_file"), "val": read_split(val_file, "val_file")}
        size = self.splits["train"][0].shape[1]
        names = label_names or [str(i) for i in range(int(self.splits["train"][1].max()) + 1)]
        for key, (images, labels) in self.splits.items():
            if images.shape[1] != size or (len(labels) and labels.max() >= len(names)):
                raise ConfigError(f"data.{key}_file: images must be {size} px and labels < {len(names)} (data.label_names)")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.spec = DataSpec("image", num_classes=len(names), label_names=list(names), image_size=size)

    def train_dataloader(self) -> DataLoader:
        # Resumes mid-epoch with the same batches (ptft/data/resumable.py).
        return resumable_loader(ArrayImages(*self.splits["train"]), self.batch_size, self.num_workers, self.trainer,
                                collate_fn=collate_images)

    def val_dataloader(self) -> DataLoader:
        return evaluation_loader(ArrayImages(*self.splits["val"]), self.batch_size, self.num_workers, collate_images)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch  # uint8 until here, on the device: float [-1, 1], channels_last (as ptft's DataModules)
        return images_to_float(images), labels
