"""A decoded-audio cache: a split's utterances decoded once (mono, resampled) into one flat 16-bit
PCM memmap, reused by every later epoch, run and DDP rank; resampling an OGG clip costs ~10 ms,
reading it from the cache microseconds.

Layout: ``<cache root>/<name>-<rate>Hz-<key>/`` holding ``samples.i16`` (the waveforms one after
another), ``index.npy`` (``(N, 2)`` int64: offset, length) and ``meta.json``. ``key`` hashes the
data root, the sample rate, and every file's path, size and mtime (as
:func:`ptft.data.decoded_cache.cache_key`), so a changed file or rate gives a new cache. Built
atomically like the image cache (:func:`ptft.data.decoded_cache.building`). 16-bit samples take
half the disk of float32, and their rounding is below that of the 16-bit recordings themselves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ptft.data.audio import AudioFiles
from ptft.data.decoded_cache import building, cache_key

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def audio_cache_folder(cache_root: Path, data_root: Path, name: str, paths: list[str], sample_rate: int) -> Path:
    """Where the cache of ``paths`` (in this order) at ``sample_rate`` lives."""
    key = cache_key(data_root, [(path, 0) for path in paths], f"audio-{sample_rate}Hz-v{FORMAT_VERSION}")  # no labels
    return cache_root / f"{name}-{sample_rate}Hz-{key}"


def build_audio_cache(folder: Path, paths: list[str], sample_rate: int, num_workers: int) -> None:
    """Decode ``paths`` into the cache ``folder`` (nothing to do if it exists)."""
    if (folder / "index.npy").exists():
        return
    with building(folder) as temp:
        index = np.zeros((len(paths), 2), dtype=np.int64)
        offset = 0
        loader = DataLoader(AudioFiles(paths, sample_rate), batch_size=None, num_workers=num_workers)
        with open(temp / "samples.i16", "wb") as out:
            for i, waveform in enumerate(loader):
                out.write((waveform.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes())
                index[i] = (offset, len(waveform))
                offset += len(waveform)
        np.save(temp / "index.npy", index)
        (temp / "meta.json").write_text(json.dumps({"utterances": len(paths), "sample_rate": sample_rate, "samples": offset,
                                                    "first": paths[0], "format": FORMAT_VERSION}) + "\n")
    log.info("ptft: decoded %d utterances (%.1f min) into %s", len(paths), offset / sample_rate / 60, folder)


class CachedAudio(Dataset):
    """Float32 waveforms read from a built cache; the memmap opens lazily in each worker."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index = np.load(folder / "index.npy")
        self._samples: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):
        return {**self.__dict__, "_samples": None}  # never pickle the mapping into workers

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._samples is None:
            self._samples = np.memmap(self.folder / "samples.i16", dtype=np.int16, mode="r").view(np.ndarray)
        offset, length = self.index[index]
        return torch.from_numpy(self._samples[offset:offset + length].astype(np.float32) / 32767)
