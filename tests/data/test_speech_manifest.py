"""Speech inputs: audio decoding, utterance lists, transcripts and duration-bucketed batches."""

import random
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import Dataset

from ptft.data.audio import audio_frames, load_audio
from ptft.data.bucketing import BucketSampler, bucketed_loader
from ptft.data.resumable import SeededSamples
from ptft.data.speech_manifest import check_audio, read_utterances
from ptft.data.transcripts import TextNormaliser, build_vocabulary, encode_transcripts
from ptft.errors import ConfigError, CorruptAudioError, MissingPathError
from speech_files import write_manifest, write_tone


@pytest.mark.parametrize("ext, rate, channels", [("wav", 22050, 2), ("flac", 8000, 1), ("ogg", 16000, 2)])
def test_audio_is_float32_mono_at_the_target_rate(tmp_path: Path, ext: str, rate: int, channels: int):
    path = write_tone(tmp_path / f"tone.{ext}", 0.5, rate, channels)
    assert audio_frames(str(path)) == (rate // 2, rate)
    waveform = load_audio(str(path), 16000)
    assert waveform.dtype == torch.float32 and waveform.shape == (8000,)
    peak = 0.5 / channels  # the second channel is silent: mixed down, the tone halves
    assert abs(waveform[1000:7000].abs().max().item() - peak) < 0.05


def test_bad_audio_files_are_errors_naming_the_file(tmp_path: Path):
    (tmp_path / "text.wav").write_text("not audio")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    for name, error, words in [("missing.wav", MissingPathError, "does not exist"), ("text.wav", CorruptAudioError, "cannot read audio"),
                               ("empty.wav", CorruptAudioError, "zero-length")]:
        for read in (audio_frames, lambda p: load_audio(p, 16000)):
            with pytest.raises(error, match=f"{name}: .*{words}"):
                read(str(tmp_path / name))


def test_manifest_paths_relative_to_its_folder_or_absolute(tmp_path: Path):
    elsewhere = write_tone(tmp_path / "elsewhere" / "b.flac", 0.3, 8000)
    write_tone(tmp_path / "data" / "clips" / "a.wav", 0.25)
    write_manifest(tmp_path / "data" / "train.jsonl", [
        {"audio_filepath": "clips/a.wav", "duration": 0.25, "text": "Hallo!", "speaker": "m"},
        {"audio_filepath": str(elsewhere), "text": "daar"},  # no duration: from the header
    ])
    utterances, skipped = check_audio(read_utterances(tmp_path / "data", "train.jsonl", "data.train_manifest", True)[0], False)
    assert [Path(u.path) for u in utterances] == [tmp_path / "data" / "clips" / "a.wav", elsewhere]
    assert [u.duration for u in utterances] == [0.25, 0.3] and [u.text for u in utterances] == ["Hallo!", "daar"]
    assert utterances[0].source.endswith("train.jsonl:1") and skipped == []
    unlabelled, _ = read_utterances(tmp_path / "data", "train.jsonl", "data.train_manifest", False)
    assert [u.text for u in unlabelled] == [None, None]


@pytest.mark.parametrize("line, message", [
    ("{not json", r"train.jsonl:2: not a JSON object"),
    ('{"duration": 1.0, "text": "x"}', r"train.jsonl:2: needs the key 'audio_filepath'"),
    ('{"audio_filepath": "a.wav", "text": "  "}', r"train.jsonl:2: empty transcript"),
    ('{"audio_filepath": "a.wav"}', r"train.jsonl:2: needs the key 'text'"),
    ('{"audio_filepath": "a.wav", "duration": "long", "text": "x"}', r"train.jsonl:2: 'duration' must be"),
])
def test_bad_manifest_lines_are_errors_naming_file_and_line(tmp_path: Path, line: str, message: str):
    write_tone(tmp_path / "a.wav", 0.1)
    (tmp_path / "train.jsonl").write_text('{"audio_filepath": "a.wav", "text": "ok"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message):
        read_utterances(tmp_path, "train.jsonl", "data.train_manifest", True)


def test_missing_audio_names_the_manifest_line_or_is_skipped_and_counted(tmp_path: Path):
    write_tone(tmp_path / "a.wav", 0.1)
    write_manifest(tmp_path / "train.jsonl", [{"audio_filepath": "a.wav", "text": "x"}, {"audio_filepath": "gone.wav", "text": "y"}])
    utterances, _ = read_utterances(tmp_path, "train.jsonl", "data.train_manifest", True)
    with pytest.raises(MissingPathError, match=r"train.jsonl:2: .*gone.wav: audio file does not exist; .*data.skip_corrupt=true"):
        check_audio(utterances, skip_corrupt=False)
    good, skipped = check_audio(utterances, skip_corrupt=True)
    assert len(good) == 1 and skipped == [f"{tmp_path / 'gone.wav'}: audio file does not exist"]


def test_librispeech_layout(tmp_path: Path):
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "84" / "121123"
    for i in range(2):
        write_tone(chapter / f"84-121123-000{i}.flac", 0.2 + i / 10)
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n")
    utterances, _ = check_audio(read_utterances(tmp_path / "LibriSpeech", "dev-clean", "data.val_manifest", True)[0], False)
    assert [u.text for u in utterances] == ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"]
    assert [round(u.duration, 3) for u in utterances] == [0.2, 0.3] and utterances[1].path.endswith("84-121123-0001.flac")
    (chapter / "84-121123.trans.txt").write_text("84-121123-0000 GO\n84-121123-0001\n")
    with pytest.raises(ConfigError, match=r"84-121123.trans.txt:2: empty transcript"):
        read_utterances(tmp_path / "LibriSpeech", "dev-clean", "data.val_manifest", True)


def test_audio_folder_is_unlabelled(tmp_path: Path):
    write_tone(tmp_path / "clips" / "a.ogg", 0.2)
    write_tone(tmp_path / "clips" / "sub" / "b.wav", 0.1)
    (tmp_path / "clips" / "notes.txt").write_text("not audio")
    utterances, _ = read_utterances(tmp_path, "clips", "data.train_manifest", False)
    assert [Path(u.path).name for u in utterances] == ["a.ogg", "b.wav"] and utterances[0].text is None
    with pytest.raises(ConfigError, match="folder of audio without transcripts"):
        read_utterances(tmp_path, "clips", "data.train_manifest", True)
    with pytest.raises(MissingPathError, match=r"data.val_manifest: .*nothing.jsonl is neither a manifest nor a folder; in .*: clips"):
        read_utterances(tmp_path, "nothing.jsonl", "data.val_manifest", True)


def test_normaliser_vocabulary_and_unknown_characters():
    assert TextNormaliser()("  Dit is geen “glazen” oog,  maar ’t IS zo'n zee-egel! ") == "dit is geen glazen oog maar 't is zo'n zee egel"
    assert TextNormaliser(lowercase=False, strip_punctuation=False)("Ja,\tNee.") == "Ja, Nee."
    vocabulary = build_vocabulary(["de kat", "een vis"])
    assert vocabulary.pad_id == 0 and vocabulary.vocab_size == 6 + len(set("de kat een vis"))
    ids, unknown = encode_transcripts(vocabulary, ["de vis", "quiz é"])
    assert vocabulary.decode(ids[0]) == "de vis" and ids[1].count(vocabulary.unk_id) == 4
    assert unknown == {"q": 1, "u": 1, "z": 1, "é": 1}


class Durations(Dataset):
    def __init__(self, durations):
        self.durations = durations

    def __len__(self):
        return len(self.durations)

    def __getitem__(self, index):
        return index


def keys_of(sampler: BucketSampler) -> list[list[int]]:
    return [[key % len(sampler.durations) for key in batch] for batch in sampler]


def test_bucketing_covers_every_utterance_with_equal_batch_counts_and_little_padding():
    durations = [random.Random(i).uniform(1, 10) for i in range(203)]
    samples = SeededSamples(Durations(durations), seed=0)
    ranks = [BucketSampler(samples, durations, batch_size=8, pool_batches=5, num_replicas=2, rank=r, seed=3) for r in range(2)]
    for epoch in (0, 1):
        for sampler in ranks:
            sampler.set_epoch(epoch)
        batches = [keys_of(sampler) for sampler in ranks]
        assert len(batches[0]) == len(batches[1]) == len(ranks[0]) == 13  # 203 -> 208 = 2 ranks x 13 batches x 8
        assert all(len(batch) == 8 for rank in batches for batch in rank)
        seen = [key for rank in batches for batch in rank for key in batch]
        assert set(seen) == set(range(203)) and len(seen) == 208
    padding = sum(max(durations[k] for k in batch) * len(batch) - sum(durations[k] for k in batch) for batch in batches[0])
    shuffled = random.Random(0).sample(range(203), 104)
    random_padding = sum(max(durations[k] for k in shuffled[i:i + 8]) * 8 - sum(durations[k] for k in shuffled[i:i + 8]) for i in range(0, 104, 8))
    assert padding < random_padding / 4


def test_bucketed_loader_resumes_after_k_batches_with_the_same_batches():
    durations = [random.Random(i).uniform(1, 10) for i in range(50)]

    def loader(num_workers=0):
        return bucketed_loader(Durations(durations), durations, batch_size=4, num_workers=num_workers, collate_fn=torch.tensor)

    first = loader()
    first.sampler.set_epoch(2)
    whole = [batch.tolist() for batch in first]
    iterator = iter(first)
    for _ in range(5):
        next(iterator)
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 5, "batch_size": None}
    resumed = loader(num_workers=1)  # a worker's DataLoader calls iter(sampler) twice and drops the first
    resumed.load_state_dict(state)
    assert [batch.tolist() for batch in resumed] == whole[5:] and len(whole) == len(resumed) == 13


@pytest.mark.parametrize("layout", ["folder", "librispeech"])
def test_symlinks_out_of_an_audio_folder_are_refused_or_skipped_and_counted(tmp_path: Path, layout: str):
    split = tmp_path / "train" / "84"
    write_tone(split / "84-0.flac", 0.1)
    write_tone(tmp_path / "test" / "84-1.flac", 0.2)
    (split / "84-1.flac").symlink_to("../../test/84-1.flac")
    (split / "up").symlink_to("../..")
    if layout == "librispeech":
        (split / "84.trans.txt").write_text("84-0 HELLO\n84-1 TEST AUDIO\n")
    labelled = layout == "librispeech"
    with pytest.raises(ConfigError, match=r"train/84/84-1.flac: symlink to .*test/84-1.flac, outside its folder .*train; remove the link"):
        read_utterances(tmp_path, "train", "data.train_manifest", labelled)
    utterances, links = read_utterances(tmp_path, "train", "data.train_manifest", labelled, skip_corrupt=True)
    assert [Path(u.path).name for u in utterances] == ["84-0.flac"]
    assert [Path(line.split(": ")[0]).name for line in links] == ["84-1.flac", "up"]
