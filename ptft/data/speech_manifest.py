"""Lists of utterances (audio file, duration, transcript) from the layouts speech data comes in:

* NeMo-style JSONL manifests: one object a line with ``audio_filepath`` (relative to the
  manifest's folder, or absolute), ``duration`` (seconds; read from the file's header when
  absent) and ``text`` (the transcript; other keys are ignored);
* the LibriSpeech layout ``<split>/<speaker>/<chapter>/*.flac`` with ``<speaker>-<chapter>.trans.txt``
  (lines ``<utterance id> <TRANSCRIPT>``);
* a plain folder of audio files (searched recursively; unlabelled).

Folders are walked with :func:`~ptft.data.folder_files.folder_files`: symlinks out of the folder
are never followed (an error, or skipped and counted with ``skip_corrupt``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ptft.data.audio import AUDIO_EXTENSIONS, audio_frames
from ptft.data.folder_files import folder_files
from ptft.data.text_files import read_text
from ptft.errors import ConfigError, CorruptAudioError, MissingPathError


@dataclass(frozen=True)
class Utterance:
    """One audio file with its duration in seconds (None: not known yet), its transcript (None:
    unlabelled), and where it was listed (``file:line``; None for a file found in a folder)."""

    path: str
    duration: float | None
    text: str | None
    source: str | None = None


def check_transcript(text: str, source: str) -> str:
    if not text.strip():
        raise ConfigError(f"{source}: empty transcript; remove the line, or set data.labelled=false to use audio only")
    return text


def read_manifest(path: Path, labelled: bool) -> list[Utterance]:
    """The utterances of a JSONL manifest; a line that is not a JSON object, lacks ``audio_filepath``,
    has a bad ``duration``, or (``labelled``) lacks or has an empty ``text`` is an error naming the line."""
    utterances = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{source}: not a JSON object ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("audio_filepath"), str):
            raise ConfigError(f"{source}: needs the key 'audio_filepath' (the audio file, relative to {path.parent} or absolute)")
        duration = record.get("duration")
        if duration is not None and (not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0):
            raise ConfigError(f"{source}: 'duration' must be a number of seconds >= 0, got {duration!r}")
        text = None
        if labelled:
            if not isinstance(record.get("text"), str):
                raise ConfigError(f"{source}: needs the key 'text' (the transcript); set data.labelled=false to use audio only")
            text = check_transcript(record["text"], source)
        utterances.append(Utterance(str(path.parent / record["audio_filepath"]), duration, text, source))
    return utterances


def read_librispeech(transcript_files: list[str], audio_files: list[str], labelled: bool) -> list[Utterance]:
    """The utterances listed in the ``*.trans.txt`` files of a LibriSpeech split folder; an
    utterance whose ``.flac`` is a symlink not followed (not in ``audio_files``) is left out."""
    utterances = []
    listed = set(audio_files)
    for transcripts in map(Path, transcript_files):
        for number, line in enumerate(read_text(transcripts).splitlines(), 1):
            if not line.strip():
                continue
            source = f"{transcripts}:{number}"
            name, _, text = line.strip().partition(" ")
            text = check_transcript(text, source) if labelled else None
            path = str(transcripts.parent / f"{name}.flac")
            if path in listed or not os.path.islink(path):
                utterances.append(Utterance(path, None, text, source))
    return utterances


def read_utterances(root: Path, name: str, key: str, labelled: bool, skip_corrupt: bool = False) -> tuple[list[Utterance], list[str]]:
    """The utterances ``key`` names: ``root / name`` is a JSONL manifest, a LibriSpeech split
    folder, or (unlabelled) a folder of audio files (``name`` ``.``: ``root`` itself); and the
    symlinks of a folder that were not followed (``skip_corrupt``), as ``<link>: <why>`` lines."""
    target = root / name
    links: list[str] = []
    if target.is_file():
        utterances = read_manifest(target, labelled)
    elif target.is_dir():
        files, links = folder_files(target, AUDIO_EXTENSIONS + (".trans.txt",), skip_corrupt)
        transcripts = [path for path in files if path.endswith(".trans.txt")]
        audio = [path for path in files if not path.endswith(".trans.txt")]
        if transcripts:
            utterances = read_librispeech(transcripts, audio, labelled)
        elif labelled:
            raise ConfigError(f"{key}: {target} is a folder of audio without transcripts; give a JSONL manifest or a "
                              "LibriSpeech split folder, or set data.labelled=false to use audio only")
        else:
            utterances = [Utterance(path, None, None) for path in audio]
    elif not root.is_dir():
        raise MissingPathError(f"data.root: {root} is not a folder (set data.root or $PTFT_DATA)")
    else:
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        raise MissingPathError(f"{key}: {target} is neither a manifest nor a folder; in {root}: {', '.join(found[:20])}")
    if not utterances:
        raise ConfigError(f"{key}: {target} lists no utterances" + ("" if target.is_file() else f" (looked for {', '.join(AUDIO_EXTENSIONS)})"))
    return utterances, links


def check_audio(utterances: list[Utterance], skip_corrupt: bool) -> tuple[list[Utterance], list[str]]:
    """The utterances whose file exists and has samples (by its header), each with its duration
    (the header's when the list gave none), and the files skipped (``skip_corrupt``) as
    ``<file>: <why>`` lines; without ``skip_corrupt`` a bad file is an error naming it and the line that lists it."""
    good, skipped = [], []
    for utterance in utterances:
        try:
            frames, rate = audio_frames(utterance.path)
        except (MissingPathError, CorruptAudioError) as error:
            if skip_corrupt:
                skipped.append(str(error))
                continue
            where = f"{utterance.source}: " if utterance.source else ""
            raise type(error)(f"{where}{error}; fix or remove it, or set data.skip_corrupt=true to skip such files") from None
        good.append(utterance if utterance.duration is not None else replace(utterance, duration=frames / rate))
    return good, skipped
