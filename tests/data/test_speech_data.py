"""SpeechDataModule: batches, features on the device, filtering, subsets, the vocabulary and the cache."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from ptft.backbones.base import SequenceFeatures
from ptft.data.speech import SpeechDataModule
from ptft.data.tokenizer import train_tokenizer
from ptft.errors import ConfigError, CorruptAudioError, MissingPathError
from speech_files import make_speech_data, write_manifest, write_tone


@pytest.fixture
def speech_data(tmp_path: Path) -> Path:
    return make_speech_data(tmp_path / "speech")


def speech(root: Path, **options) -> SpeechDataModule:
    return SpeechDataModule(root=str(root), **{"batch_size": 4, "num_workers": 0, **options})


def test_batches_and_log_mel_features_after_transfer(speech_data: Path):
    data = speech(speech_data)
    assert data.spec.input_kind == "audio" and data.spec.audio.sample_rate == 16000 and data.spec.audio.n_mels == 80
    assert data.spec.tokenizer is data.tokenizer and data.tokenizer.pad_id == 0
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch.inputs.dtype == torch.float32 and batch.inputs.shape == (4, int(batch.input_lengths.max()))
    assert batch.targets.shape == (4, int(batch.target_lengths.max()))
    texts = {data.tokenizer.decode(row[:n].tolist()) for row, n in zip(batch.targets, batch.target_lengths)}
    assert texts <= {"de kat", "een vis", "zee", "het water", "vier", "blauwe lucht", "ja", "nee dank je"}
    assert (batch.targets[batch.target_lengths.argmin(), batch.target_lengths.min():] == 0).all()  # padded with pad = blank

    moved = data.on_after_batch_transfer(batch, 0)
    assert isinstance(moved.inputs, SequenceFeatures) and moved.inputs.states.shape[::2] == (4, 80)
    assert torch.equal(moved.input_lengths, batch.input_lengths // 160 + 1) and moved.inputs.states.shape[1] == int(moved.input_lengths.max())
    assert torch.equal(moved.inputs.mask.sum(1), moved.input_lengths) and moved.targets is batch.targets

    data.trainer = SimpleNamespace(training=False)
    assert torch.equal(data.on_after_batch_transfer(batch, 0).inputs.states, moved.inputs.states)
    data.trainer = SimpleNamespace(training=True)  # SpecAugment while training only
    masked = data.on_after_batch_transfer(batch, 0).inputs.states
    assert (masked == 0).sum() > (moved.inputs.states == 0).sum()

    val = [b.input_lengths for b in data.val_dataloader()]
    lengths = torch.cat(val)
    assert len(lengths) == 6 and torch.equal(lengths, lengths.sort().values)  # every utterance once, by duration


def test_training_batches_are_equal_in_number_on_every_rank(speech_data: Path):
    data = speech(speech_data, batch_size=5)
    data.setup("fit")
    counts = []
    for rank in range(2):
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank, training=True, current_epoch=0)
        counts.append([len(batch.input_lengths) for batch in data.train_dataloader()])
    assert counts[0] == counts[1] == [5, 5, 5]  # 24 utterances -> 30 = 2 ranks x 3 batches x 5


def test_unlabelled_audio_folders(speech_data: Path):
    data = speech(speech_data, train_manifest="audio/train", val_manifest="audio/dev", test_manifest=None, labelled=False,
                  tokenizer="ignored.json")
    assert data.spec.tokenizer is None and len(data.utterances["train"]) == 24
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch.targets is None and batch.target_lengths is None and batch.inputs.shape[0] == 4
    with pytest.raises(ConfigError, match="data.test_manifest is not set; `ptft test` needs it"):
        data.setup("test")


def test_bad_audio_stops_early_naming_the_line_or_is_skipped_and_counted(speech_data: Path):
    (speech_data / "audio" / "broken.wav").write_text("not audio")
    soundfile.write(speech_data / "audio" / "empty.wav", np.zeros(0), 16000)
    rows = [json.loads(line) for line in (speech_data / "train.jsonl").read_text().splitlines()]
    rows += [{"audio_filepath": f"audio/{name}", "duration": 1.0, "text": "x"} for name in ("gone.wav", "broken.wav", "empty.wav")]
    write_manifest(speech_data / "train.jsonl", rows)
    with pytest.raises(MissingPathError, match=r"train.jsonl:25: .*gone.wav: audio file does not exist"):
        speech(speech_data)
    write_manifest(speech_data / "train.jsonl", rows[:24] + rows[25:])
    with pytest.raises(CorruptAudioError, match=r"train.jsonl:25: .*broken.wav: cannot read audio"):
        speech(speech_data)
    write_manifest(speech_data / "train.jsonl", rows[:24] + rows[26:])
    with pytest.raises(CorruptAudioError, match=r"train.jsonl:25: .*empty.wav: zero-length audio"):
        speech(speech_data)
    write_manifest(speech_data / "train.jsonl", rows)
    with pytest.warns(UserWarning, match="skipped 3 missing, unreadable or zero-length"):
        data = speech(speech_data, skip_corrupt=True)
    assert len(data.utterances["train"]) == 24 and [Path(line.split(": ")[0]).name for line in data.skipped_files] == ["gone.wav", "broken.wav", "empty.wav"]


def test_duration_limits_drop_and_count_training_utterances(speech_data: Path):
    data = speech(speech_data, max_duration=1.0, min_duration=0.25)
    durations = [u.duration for u in data.utterances["train"]]
    assert data.dropped == 24 - len(durations) > 0 and all(0.25 <= d <= 1.0 for d in durations)
    assert len(data.utterances["val"]) == 6  # evaluation splits keep every utterance
    with pytest.raises(ConfigError, match="none of the 24 training utterances lasts between"):
        speech(speech_data, max_duration=0.1, min_duration=0.05)


def test_label_fraction_is_a_deterministic_seeded_subset(speech_data: Path):
    def paths(**options):
        return [u.path for u in speech(speech_data, label_fraction=0.25, **options).utterances["train"]]

    assert len(paths()) == 6 and paths() == paths() and paths(split_seed=1) != paths()


def test_vocabulary_from_a_tokenizer_file_and_unknown_characters_counted(speech_data: Path, tmp_path: Path):
    small = tmp_path / "small.json"
    train_tokenizer(["de kat"], kind="char", vocab_size=64, min_frequency=1).save(small)
    with pytest.warns(UserWarning, match=r"characters of data.val_manifest are not in the vocabulary and are encoded as <unk>"):
        data = speech(speech_data, tokenizer=str(small))
        data.setup("validate")
    assert data.tokenizer.vocab_size == 6 + len(set("de kat")) and data.unknown_characters["val"]["v"] > 0
    wordpiece = tmp_path / "wordpiece.json"
    train_tokenizer(["de kat zee"] * 3, kind="wordpiece", vocab_size=40, min_frequency=1).save(wordpiece)
    with pytest.raises(ConfigError, match="data.tokenizer: the tokenizer is not a character vocabulary"):
        speech(speech_data, tokenizer=str(wordpiece))


def test_decoded_cache_matches_the_files_and_is_rebuilt_when_a_file_changes(speech_data: Path, tmp_path: Path):
    cached = speech(speech_data, cache=True, cache_dir=str(tmp_path / "cache"))
    cached.setup("validate")
    direct = speech(speech_data)
    direct.setup("validate")
    first = cached.datasets["val"][0][0]
    assert torch.allclose(first, direct.datasets["val"][0][0], atol=1e-4)
    folder = cached._cache_folder("val")
    changed = Path(cached.utterances["val"][0].path)
    info = soundfile.info(changed)
    write_tone(changed, info.duration, info.samplerate, info.channels, pitch=1234.0)
    os.utime(changed, ns=(1, 1))  # a different mtime even on coarse file systems
    again = speech(speech_data, cache=True, cache_dir=str(tmp_path / "cache"))
    again.setup("validate")
    assert again._cache_folder("val") != folder and len(list((tmp_path / "cache").iterdir())) == 2
    assert not torch.allclose(again.datasets["val"][0][0], first, atol=1e-2)


def test_real_dutch_speech(fillets: Path, tmp_path: Path):
    """A few dozen fillets-nl clips (OGG, 22.05 kHz, cased Dutch with punctuation) through to features."""
    for split, count in (("train", 32), ("dev", 8)):
        lines = (fillets / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:count]
        rows = [{**row, "audio_filepath": str(fillets / row["audio_filepath"])} for row in map(json.loads, lines)]
        write_manifest(tmp_path / f"{split}.jsonl", rows)
    data = speech(tmp_path, test_manifest=None, batch_size=8)
    data.setup("fit")
    characters = {c for c in data.tokenizer.tokenizer.get_vocab() if len(c) == 1}
    assert characters == set("".join(u.text for u in data.utterances["train"]))
    assert all(c.islower() or c.isdigit() or c in " '" for c in characters) and len(characters) > 20  # cased, punctuated in the manifest
    batches = list(data.train_dataloader())
    assert len(batches) == 4 and all(abs(b.input_lengths.max() / b.input_lengths.min() - 1) < 1 for b in batches)
    batch = data.on_after_batch_transfer(batches[0], 0)
    assert torch.isfinite(batch.inputs.states).all() and batch.inputs.states.shape[2] == 80
    utterance = next(u for u in data.utterances["train"] if u.text == data.tokenizer.decode(batch.targets[0, :batch.target_lengths[0]].tolist()))
    assert abs(utterance.duration * 100 - float(batch.input_lengths[0])) < 3  # 10 ms frames
