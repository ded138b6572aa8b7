"""Reading speech audio: any format libsndfile reads (WAV, FLAC, OGG Vorbis, ...) through
``soundfile``, as float32 mono at the rate the model expects."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import soundfile
import torch
from torch.utils.data import Dataset

from ptft.errors import CorruptAudioError, MissingPathError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au")
T = TypeVar("T")


def _read(path: str, read: Callable[[str], T]) -> T:
    """``read(path)``, with a missing or undecodable file as an error naming it."""
    if not os.path.isfile(path):
        raise MissingPathError(f"{path}: audio file does not exist")
    try:
        return read(path)
    except (soundfile.SoundFileError, RuntimeError) as error:
        reason = str(error).removeprefix(f"Error opening {path!r}: ")
        raise CorruptAudioError(f"{path}: cannot read audio ({reason})") from None


def audio_frames(path: str) -> tuple[int, int]:
    """``(frames, sample rate)`` of an audio file from its header; a missing, unreadable or
    zero-length file is an error naming it."""
    info = _read(path, soundfile.info)
    if info.frames <= 0:
        raise CorruptAudioError(f"{path}: zero-length audio (no samples)")
    return info.frames, info.samplerate


def load_audio(path: str, sample_rate: int) -> torch.Tensor:
    """The samples of ``path`` as a float32 1-D tensor at ``sample_rate`` Hz: channels are averaged
    into mono and other rates resampled (``torchaudio.functional.resample``)."""
    samples, rate = _read(path, lambda p: soundfile.read(p, dtype="float32", always_2d=True))
    if samples.shape[0] == 0:
        raise CorruptAudioError(f"{path}: zero-length audio (no samples)")
    waveform = torch.from_numpy(samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0])
    if rate != sample_rate:
        import torchaudio  # imported on use: only speech needs it

        waveform = torchaudio.functional.resample(waveform, rate, sample_rate)
    return waveform.contiguous()


class AudioFiles(Dataset):
    """The waveforms of ``paths`` at ``sample_rate`` Hz (:func:`load_audio`)."""

    def __init__(self, paths: list[str], sample_rate: int) -> None:
        self.paths, self.sample_rate = paths, sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_audio(self.paths[index], self.sample_rate)
