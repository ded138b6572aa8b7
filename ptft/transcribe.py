"""``ptft transcribe``: speech to text with a CTC fine-tuned checkpoint or its export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ptft.ctc_decoding import greedy_decode, transcript
from ptft.data.audio import load_audio
from ptft.data.audio_features import LogMelFeatures, LogMelSettings
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError
from ptft.handoff import load_module, read_pretrained
from ptft.temp_files import write_text_output


class Transcriber:
    """A CTC speech model read from a checkpoint or export of
    :class:`~ptft.tasks.ctc.CTCFineTuning`: backbone, CTC head, character vocabulary and the
    log-mel settings it was trained with, so audio of any rate and channel count is read as in training."""

    def __init__(self, source: str | os.PathLike, device: str = "cpu") -> None:
        pretrained = read_pretrained(source)
        if "ctc_head" not in pretrained.specs or pretrained.audio is None or pretrained.tokenizer is None:
            raise ConfigError(
                f"{source} is not a speech recognition model: it holds {', '.join(pretrained.specs)} from "
                f"{pretrained.task or 'an unknown task'}; give a checkpoint or export of ptft.tasks.CTCFineTuning"
            )
        self.device = torch.device(device)
        self.backbone = load_module(pretrained, "backbone").eval().to(self.device)
        self.head = load_module(pretrained, "ctc_head").eval().to(self.device)
        self.settings = LogMelSettings(**pretrained.audio)
        self.features = LogMelFeatures(self.settings).to(self.device)
        self.vocabulary = TextTokenizer.from_json(pretrained.tokenizer, str(source))

    @torch.no_grad()
    def __call__(self, waveforms: list[torch.Tensor]) -> list[str]:
        """Greedy transcripts of waveforms at ``settings.sample_rate`` (one batch, zero-padded)."""
        lengths = torch.tensor([len(w) for w in waveforms], device=self.device)
        batch = torch.nn.utils.rnn.pad_sequence(waveforms, batch_first=True).to(self.device)
        features = self.features(batch, lengths)
        log_probs = self.head(self.backbone.forward_features(features).states)
        ids = greedy_decode(log_probs, self.backbone.output_lengths(features.mask.sum(1)), self.vocabulary.pad_id)
        return [transcript(self.vocabulary, i) for i in ids]

    def transcribe_files(self, paths: list[str], batch_size: int = 8) -> tuple[list[str], float]:
        """Transcripts of audio files in the given order (batched by length), and their total duration in seconds."""
        waveforms = [load_audio(str(p), self.settings.sample_rate) for p in paths]
        order = sorted(range(len(paths)), key=lambda i: len(waveforms[i]))
        texts: list[str] = [""] * len(paths)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, text in zip(chunk, self([waveforms[i] for i in chunk])):
                texts[i] = text
        return texts, sum(len(w) for w in waveforms) / self.settings.sample_rate


def write_transcripts(out: Path, paths: list[str], texts: list[str], overwrite: bool) -> None:
    """A NeMo-style JSONL manifest (``audio_filepath``, ``text``), written atomically; an existing
    file is replaced only with ``overwrite``."""
    lines = [json.dumps({"audio_filepath": str(Path(path).resolve()), "text": text}, ensure_ascii=False) + "\n" for path, text in zip(paths, texts)]
    write_text_output(out, "".join(lines), overwrite)
