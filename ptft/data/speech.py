"""Speech (audio with or without transcripts) as a LightningDataModule: waveforms on the host,
log-mel features on the device.

Utterances come from NeMo-style JSONL manifests, a LibriSpeech tree or a folder of audio
(:mod:`ptft.data.speech_manifest`). Batches are :class:`~ptft.data.speech_batch.SpeechBatch`:
padded float32 mono waveforms at ``sample_rate`` and, when labelled, padded character ids of the
normalised transcripts (:mod:`ptft.data.transcripts`; the vocabulary's pad id is the CTC blank).
``on_after_batch_transfer`` turns the waveforms into log-mel frames on the device (and applies
SpecAugment while training). Training batches hold utterances of similar duration
(:mod:`ptft.data.bucketing`) and resume mid-epoch exactly; evaluation splits are sorted by
duration and read once each.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from ptft.data import decoded_cache
from ptft.data.audio import AudioFiles
from ptft.data.audio_cache import CachedAudio, audio_cache_folder, build_audio_cache
from ptft.data.audio_features import LogMelFeatures, LogMelSettings, spec_augment
from ptft.data.bucketing import bucketed_loader
from ptft.data.images import stratified_subset
from ptft.data.loaders import evaluation_loader
from ptft.data.paths import resolve_data_path
from ptft.data.spec import DataSpec
from ptft.data.speech_batch import SpeechBatch
from ptft.data.speech_manifest import Utterance, check_audio, read_utterances
from ptft.data.tokenizer import TextTokenizer
from ptft.data.transcripts import TextNormaliser, build_vocabulary, check_vocabulary, encode_transcripts
from ptft.errors import ConfigError


class SpeechClips(Dataset):
    """(waveform, character ids or None) pairs: ``audio`` gives the waveforms (files or a cache)."""

    def __init__(self, audio: Dataset, targets: list[list[int]] | None) -> None:
        self.audio, self.targets = audio, targets

    def __len__(self) -> int:
        return len(self.audio)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[int] | None]:
        return self.audio[index], self.targets[index] if self.targets is not None else None


class SpeechCollate:
    """Right-pads waveforms with zeros and character ids with ``pad_id`` into a :class:`SpeechBatch`
    (picklable, for worker processes)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, clips: list[tuple[torch.Tensor, list[int] | None]]) -> SpeechBatch:
        lengths = torch.tensor([len(waveform) for waveform, _ in clips])
        waveforms = torch.zeros(len(clips), int(lengths.max()))
        for row, (waveform, _) in enumerate(clips):
            waveforms[row, :len(waveform)] = waveform
        if clips[0][1] is None:
            return SpeechBatch(waveforms, lengths)
        target_lengths = torch.tensor([len(ids) for _, ids in clips])
        targets = torch.full((len(clips), max(1, int(target_lengths.max()))), self.pad_id, dtype=torch.long)
        for row, (_, ids) in enumerate(clips):
            targets[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return SpeechBatch(waveforms, lengths, targets, target_lengths)


class SpeechDataModule(pl.LightningDataModule):
    """Speech recognition data (``labelled: true``: audio with transcripts) or audio for
    self-supervised pretraining (``labelled: false``: transcripts ignored). Every file is checked
    by its header when the DataModule is created, so a missing, unreadable or zero-length file
    stops the run before training with one line naming it and the manifest line listing it (or,
    with ``skip_corrupt``, is skipped and counted). What the model needs is in ``spec``: the
    character vocabulary (``tokenizer``; its pad id is the CTC blank) and the log-mel settings.

    Args:
        root: folder holding the manifests, a LibriSpeech root, or a folder of audio (a relative
            path is also looked up under ``$PTFT_DATA``).
        train_manifest: the training utterances, relative to ``root``: a JSONL manifest
            (``audio_filepath``, ``duration``, ``text``), a LibriSpeech split folder
            (``train-clean-100``) or a folder of audio files (``.`` for ``root`` itself; unlabelled only).
        val_manifest: the validation utterances, likewise (None: no validation split).
        test_manifest: the test utterances, likewise (None: no test split).
        labelled: read transcripts (a line without ``text`` is an error); false: audio only.
        label_fraction: seeded random fraction of the training utterances to use, in (0, 1]
            (label-efficiency experiments); the vocabulary is built from this subset.
        split_seed: seed of the ``label_fraction`` subset (independent of the training seed).
        sample_rate: rate every waveform is resampled to (Hz).
        n_mels: mel bands per frame (the speech backbone's ``n_mels``).
        spec_augment: mask bands and time spans of the training features (SpecAugment, on the device).
        freq_masks: frequency masks per utterance.
        freq_width: widest frequency mask, in mel bands.
        time_masks: time masks per utterance.
        time_width: longest time mask, in frames (and at most 5% of the utterance each).
        max_duration: longest training utterance in seconds; longer ones are dropped and counted
            (None: no limit). Evaluation splits keep every utterance, so their scores stay comparable.
        min_duration: shortest training utterance in seconds; shorter ones are dropped and counted.
        batch_size: utterances per batch (per device); training batches hold utterances of similar duration.
        num_workers: DataLoader worker processes.
        skip_corrupt: skip (and count) missing, unreadable and zero-length audio files, and symlinks that
            lead out of an audio folder, instead of stopping at the first one (``skipped_files``:
            ``<file>: <why>`` lines).
        lowercase: lower-case the transcripts.
        strip_punctuation: replace punctuation (except apostrophes) in transcripts by spaces.
        tokenizer: the character vocabulary: a ``tokenizer.json`` of kind char, or a ptft checkpoint /
            export folder whose tokenizer to use (the ``ptft`` CLI sets it to ``model.pretrained``);
            None, or a checkpoint of a model pretrained on audio only: built from the normalised
            training transcripts. Ignored when ``labelled`` is false.
        cache: decode every utterance once (mono, resampled) into a 16-bit memmap per split and read
            it from there: built by ``prepare_data`` (local rank 0), rebuilt when a file's path, size
            or mtime or ``sample_rate`` changes. Costs 2 bytes per sample (an hour at 16 kHz: 115 MB).
        cache_dir: folder for decoded caches; default ``<root>/.ptft_cache`` when ``root`` is
            writable, else ``$XDG_CACHE_HOME/ptft`` (``~/.cache/ptft``).
    """

    def __init__(
        self,
        root: str = "fillets-nl",
        train_manifest: str = "train.jsonl",
        val_manifest: str | None = "dev.jsonl",
        test_manifest: str | None = "test.jsonl",
        labelled: bool = True,
        label_fraction: float = 1.0,
        split_seed: int = 0,
        sample_rate: int = 16000,
        n_mels: int = 80,
        spec_augment: bool = True,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 40,
        max_duration: float | None = None,
        min_duration: float = 0.0,
        batch_size: int = 16,
        num_workers: int = 2,
        skip_corrupt: bool = False,
        lowercase: bool = True,
        strip_punctuation: bool = True,
        tokenizer: str | None = None,
        cache: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 < label_fraction <= 1:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {label_fraction}")
        if batch_size < 1 or num_workers < 0:
            raise ConfigError(f"data.batch_size must be >= 1 and data.num_workers >= 0, got {batch_size}, {num_workers}")
        if min(freq_masks, freq_width, time_masks, time_width) < 0:
            raise ConfigError("data.freq_masks, data.freq_width, data.time_masks and data.time_width must be >= 0")
        if max_duration is not None and max_duration <= min_duration:
            raise ConfigError(f"data.max_duration ({max_duration}) must be above data.min_duration ({min_duration})")
        self.root = resolve_data_path(root)
        self.names = {"train": train_manifest, "val": val_manifest, "test": test_manifest}
        self.labelled = labelled
        self.settings = LogMelSettings(sample_rate=sample_rate, n_mels=n_mels)
        self.spec_augment = spec_augment
        self.masks = {"freq_masks": freq_masks, "freq_width": freq_width, "time_masks": time_masks, "time_width": time_width}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.normalise = TextNormaliser(lowercase=lowercase, strip_punctuation=strip_punctuation)
        self.cache = cache
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else decoded_cache.default_cache_root(self.root)
        # Read and checked now, so that bad data fails before a trainer or logger writes anything.
        self.skipped_files: list[str] = []
        self.utterances = {split: self._read(split, skip_corrupt) for split, name in self.names.items() if name is not None}
        if self.skipped_files:
            rank_zero_warn(f"ptft: skipped {len(self.skipped_files)} missing, unreadable or zero-length audio files or symlinks "
                           f"out of their folder (data.skip_corrupt=true), e.g. {self.skipped_files[0]}")
        self.dropped = self._filter_training(min_duration, max_duration)
        if label_fraction < 1:  # one "class": a plain seeded subset, the same on every rank
            train = self.utterances["train"]
            self.utterances["train"] = [train[i] for i in stratified_subset([0] * len(train), label_fraction, split_seed)]
        for split in ("val", "test"):  # little padding; every utterance once
            if split in self.utterances:
                self.utterances[split] = sorted(self.utterances[split], key=lambda u: u.duration)
        self.spec = DataSpec("audio", tokenizer=self._vocabulary(tokenizer) if labelled else None, audio=self.settings)
        self.unknown_characters: dict[str, dict[str, int]] = {}
        self.datasets: dict[str, SpeechClips] = {}
        self._features: LogMelFeatures | None = None

    @property
    def tokenizer(self) -> TextTokenizer | None:
        return self.spec.tokenizer

    def _read(self, split: str, skip_corrupt: bool) -> list[Utterance]:
        key = f"data.{split}_manifest"
        utterances, links = read_utterances(self.root, self.names[split], key, self.labelled, skip_corrupt)
        utterances, skipped = check_audio(utterances, skip_corrupt)
        if not utterances:
            raise ConfigError(f"{key}: none of the {len(skipped)} audio files of {self.root / self.names[split]} is readable, e.g. {skipped[0]}")
        self.skipped_files += links + skipped
        if self.labelled:
            utterances = [Utterance(u.path, u.duration, self.normalise(u.text), u.source) for u in utterances]
        return utterances

    def _filter_training(self, min_duration: float, max_duration: float | None) -> int:
        """Drops training utterances outside ``[min_duration, max_duration]``; returns how many."""
        train = self.utterances["train"]
        kept = [u for u in train if u.duration >= min_duration and (max_duration is None or u.duration <= max_duration)]
        if not kept:
            raise ConfigError(f"data.train_manifest: none of the {len(train)} training utterances lasts between "
                              f"data.min_duration ({min_duration} s) and data.max_duration ({max_duration} s)")
        if len(kept) < len(train):
            rank_zero_info(f"ptft: dropped {len(train) - len(kept)} of {len(train)} training utterances shorter than "
                           f"data.min_duration ({min_duration} s) or longer than data.max_duration ({max_duration} s)")
        self.utterances["train"] = kept
        return len(train) - len(kept)

    def _vocabulary(self, source: str | None) -> TextTokenizer:
        if source is not None and Path(source).suffix == ".json":
            return check_vocabulary(TextTokenizer.from_file(source), "data.tokenizer")
        if source is not None:
            from ptft.handoff import read_tokenizer  # handoff imports the backbones; only a given checkpoint needs it

            text = read_tokenizer(source)
            if text is not None:
                return check_vocabulary(TextTokenizer.from_json(text, source), "data.tokenizer")
            rank_zero_info(f"ptft: {source} holds no vocabulary (pretrained on audio only); building one from the training transcripts")
        return build_vocabulary([u.text for u in self.utterances["train"]])

    def _cache_folder(self, split: str) -> Path:
        name = Path(self.names[split]).stem or self.root.name
        return audio_cache_folder(self.cache_root, self.root, name, [u.path for u in self.utterances[split]], self.settings.sample_rate)

    def _wanted(self, stage: str | None) -> list[str]:
        stage = getattr(stage, "value", stage) or "fit"  # Lightning passes a TrainerFn enum
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage, ["train", "val"])
        for split in wanted:
            if split not in self.utterances:
                raise ConfigError(f"data.{split}_manifest is not set; `ptft {stage}` needs it")
        return wanted

    def prepare_data(self) -> None:
        """Builds the decoded caches (``cache=true``) of every configured split; Lightning calls
        this on local rank 0 only, before ``setup`` on every rank."""
        if self.cache:
            for split, utterances in self.utterances.items():
                build_audio_cache(self._cache_folder(split), [u.path for u in utterances], self.settings.sample_rate, self.num_workers)

    def _dataset(self, split: str) -> SpeechClips:
        utterances = self.utterances[split]
        paths = [u.path for u in utterances]
        audio: Dataset = AudioFiles(paths, self.settings.sample_rate)
        if self.cache:
            folder = self._cache_folder(split)
            build_audio_cache(folder, paths, self.settings.sample_rate, self.num_workers)  # done already under a Trainer
            audio = CachedAudio(folder)
        if not self.labelled:
            return SpeechClips(audio, None)
        targets, unknown = encode_transcripts(self.tokenizer, [u.text for u in utterances])
        self.unknown_characters[split] = dict(unknown)
        if unknown:
            examples = ", ".join(f"{c!r} ({n}x)" for c, n in unknown.most_common(8))
            rank_zero_warn(f"ptft: {unknown.total()} characters of data.{split}_manifest are not in the vocabulary and are "
                           f"encoded as {self.tokenizer.unk_token}: {examples}")
        return SpeechClips(audio, targets)

    def setup(self, stage: str | None = None) -> None:
        for split in self._wanted(stage):
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def _collate(self) -> SpeechCollate:
        return SpeechCollate(self.tokenizer.pad_id if self.tokenizer is not None else 0)

    def train_dataloader(self) -> DataLoader:
        # Duration-bucketed, sharded per DDP rank, resumable mid-epoch (ptft/data/bucketing.py).
        durations = [u.duration for u in self.utterances["train"]]
        return bucketed_loader(self.datasets["train"], durations, self.batch_size, self.num_workers, self.trainer, self._collate())

    def val_dataloader(self) -> DataLoader:
        return evaluation_loader(self.datasets["val"], self.batch_size, self.num_workers, self._collate())

    def test_dataloader(self) -> DataLoader:
        return evaluation_loader(self.datasets["test"], self.batch_size, self.num_workers, self._collate())

    def on_after_batch_transfer(self, batch: SpeechBatch, dataloader_idx: int) -> SpeechBatch:
        """Waveforms -> log-mel :class:`SequenceFeatures` (SpecAugment while training), lengths in frames."""
        waveforms = batch.inputs
        if self._features is None or next(self._features.buffers()).device != waveforms.device:
            self._features = LogMelFeatures(self.settings).to(waveforms.device)
        features = self._features(waveforms, batch.input_lengths)
        if self.spec_augment and self.trainer is not None and self.trainer.training:
            features = spec_augment(features, **self.masks)
        return batch._replace(inputs=features, input_lengths=features.mask.sum(1))
