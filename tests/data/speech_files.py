"""Tiny generated speech data for the speech tests: sine tones written with soundfile, manifests beside them."""

import json
from pathlib import Path

import numpy as np
import soundfile

WORDS = ["de kat", "een vis", "zee", "het water", "vier", "blauwe lucht", "ja", "nee dank je"]


def write_tone(path: Path, seconds: float, rate: int = 16000, channels: int = 1, pitch: float = 440.0) -> Path:
    """A sine tone (the second channel silent) as WAV / FLAC / OGG by ``path``'s extension."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.5 * np.sin(2 * np.pi * pitch * t)
    samples = np.stack([tone] + [np.zeros_like(tone)] * (channels - 1), axis=1) if channels > 1 else tone
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate)
    return path


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make_speech_data(root: Path, counts=(("train", 24), ("dev", 6), ("test", 5))) -> Path:
    """``root/{train,dev,test}.jsonl`` over short tones of 0.2-1.3 s in mixed formats and rates."""
    formats = [("wav", 16000, 1), ("flac", 8000, 1), ("ogg", 22050, 2), ("wav", 11025, 2)]
    for split, count in counts:
        rows = []
        for i in range(count):
            ext, rate, channels = formats[i % len(formats)]
            seconds = 0.2 + (i * 7 % 12) / 10
            write_tone(root / "audio" / split / f"{i}.{ext}", seconds, rate, channels, pitch=200 + 40 * i)
            rows.append({"audio_filepath": f"audio/{split}/{i}.{ext}", "duration": seconds, "text": WORDS[i % len(WORDS)].capitalize() + "."})
        write_manifest(root / f"{split}.jsonl", rows)
    return root


TONES = {"a": 400.0, "b": 900.0, "c": 1800.0, "d": 3200.0}  # one pitch per character; a space is silence


def tone_words(text: str, rate: int = 16000, char_seconds: float = 0.12, gap_seconds: float = 0.04) -> np.ndarray:
    """Speech-like audio whose transcript is ``text``: each character a tone of its own pitch, a space silence."""
    pieces = [np.zeros(int(0.1 * rate))]
    for char in text:
        t = np.arange(int(char_seconds * rate)) / rate
        pieces.append(0.5 * np.sin(2 * np.pi * TONES[char] * t) if char != " " else np.zeros_like(t))
        pieces.append(np.zeros(int(gap_seconds * rate)))
    return np.concatenate(pieces).astype(np.float32)


def make_tone_words(root: Path, counts=(("train", 48), ("dev", 8), ("test", 8)), seed: int = 0) -> Path:
    """``root/{train,dev,test}.jsonl`` of 2-5 tone "characters" (words of ``abcd`` split by spaces) with their transcripts."""
    generator = np.random.default_rng(seed)
    for split, count in counts:
        rows = []
        for i in range(count):
            chars = "".join(generator.choice(list(TONES), size=int(generator.integers(2, 6))))
            text = chars[:2] + " " + chars[2:] if len(chars) > 3 else chars
            path = root / "audio" / split / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            samples = tone_words(text)
            soundfile.write(path, samples, 16000)
            rows.append({"audio_filepath": f"audio/{split}/{i}.wav", "duration": len(samples) / 16000, "text": text})
        write_manifest(root / f"{split}.jsonl", rows)
    return root
