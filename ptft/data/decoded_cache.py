"""A decoded-image cache: the images of a split decoded once (shorter side a little above the
target size) into one flat uint8 memmap, reused by every later epoch, run and DDP rank.

Layout: ``<cache root>/<split>-<side>px-<key>/`` holding ``pixels.u8`` (the HWC images one after
another), ``index.npy`` (``(N, 3)`` int64: offset, height, width) and ``meta.json``. ``key`` hashes
the data root, the decode side, a format version and every file's path, label, size and mtime, so
a changed, added or removed file gives a new cache instead of stale pixels. A cache is built in a
temporary folder and renamed into place, so a killed build never leaves a half cache (and two
processes building the same cache at once are harmless: the second rename is dropped).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ptft.data.decoding import DECODE_ERRORS, decode_error, load_rgb, resize_shorter_side
from ptft.errors import CorruptImageError

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def default_cache_root(data_root: Path) -> Path:
    """``<data root>/.ptft_cache`` when the data folder is writable, else ``$XDG_CACHE_HOME/ptft``
    (``~/.cache/ptft``). A folder without write permission bits counts as read-only even for root,
    who could write into it: a data set shared read-only stays untouched."""
    if os.access(data_root, os.W_OK) and data_root.stat().st_mode & 0o222:
        return data_root / ".ptft_cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ptft"


def cache_key(data_root: Path, samples: list[tuple[str, int]], side: int | str) -> str:
    """A hash of ``side`` (what the decoded data depends on besides the files) and every file's path, label, size and mtime."""
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, str(data_root.resolve()), side]).encode())
    for path, label in samples:
        stat = os.stat(path)
        digest.update(f"\0{os.path.relpath(path, data_root)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


class _Decode(Dataset):
    def __init__(self, samples: list[tuple[str, int]], side: int) -> None:
        self.samples, self.side = samples, side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.samples[index][0]
        try:
            return resize_shorter_side(load_rgb(path, self.side), self.side)
        except CorruptImageError:
            raise
        except DECODE_ERRORS as error:
            raise decode_error(path, error) from None


def _as_array(item):
    return item if isinstance(item, np.ndarray) else np.asarray(item)


@contextmanager
def building(folder: Path) -> Iterator[Path]:
    """A temporary folder beside ``folder`` to build a cache in, renamed to ``folder`` when the block
    ends without error: a killed build leaves no half cache, and when another process finished the
    same cache first, this copy is dropped. A built cache holds ``index.npy``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield temp
        try:
            os.rename(temp, folder)
        except OSError:  # another process finished the same cache first
            if not (folder / "index.npy").exists():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def build(folder: Path, samples: list[tuple[str, int]], side: int, num_workers: int) -> None:
    """Decode ``samples`` into the cache ``folder`` (nothing to do if it exists)."""
    if (folder / "index.npy").exists():
        return
    with building(folder) as temp:
        index = np.zeros((len(samples), 3), dtype=np.int64)
        offset = 0
        loader = DataLoader(_Decode(samples, side), batch_size=None, num_workers=num_workers, collate_fn=_as_array)
        with open(temp / "pixels.u8", "wb") as out:
            for i, pixels in enumerate(loader):
                out.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
                index[i] = (offset, pixels.shape[0], pixels.shape[1])
                offset += pixels.size
        np.save(temp / "index.npy", index)
        (temp / "meta.json").write_text(json.dumps({"images": len(samples), "side": side, "bytes": offset,
                                                    "first": samples[0][0], "format": FORMAT_VERSION}) + "\n")
    log.info("ptft: decoded %d images (%.1f MB) into %s", len(samples), offset / 1e6, folder)


class CachedImages(Dataset):
    """(uint8 image, label) pairs read from a built cache; ``transform`` maps a uint8 HWC array
    to the output tensor. The memmap opens lazily in each worker (read-only, shared page cache)."""

    def __init__(self, folder: Path, labels: list[int], transform) -> None:
        self.folder = folder
        self.index = np.load(folder / "index.npy")
        if len(self.index) != len(labels):
            raise RuntimeError(f"{folder}: holds {len(self.index)} images, expected {len(labels)}")
        self.labels = labels
        self.transform = transform
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self):
        return {**self.__dict__, "_pixels": None}  # never pickle the mapping into workers

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._pixels is None:  # a plain-array view: slicing the np.memmap subclass costs ~3 us more per image
            self._pixels = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r").view(np.ndarray)
        offset, height, width = self.index[index]
        pixels = self._pixels[offset:offset + height * width * 3].reshape(height, width, 3)
        return self.transform(pixels), self.labels[index]
