"""Speech through the `ptft` command on generated tone "words": pretrain -> export -> CTC fine-tune
-> transcribe, 2-process DDP with bf16-mixed, exact resume, and a real fillets-nl run."""

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torchaudio
import torch

from helpers import CONFIGS, checkpoint_from, run_ptft
from ptft.cli import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
from speech_files import make_tone_words, tone_words, write_manifest  # noqa: E402

TINY_ENCODER = ["--model.backbone.init_args.n_mels=20", "--model.backbone.init_args.width=32", "--model.backbone.init_args.heads=2",
                "--model.backbone.init_args.depth=1"]


def speech_fit(config: str, root: Path, logs: Path, *extra: str) -> list[str]:
    """``ptft fit`` of a shipped speech config on 20 mel bands, batch 8, with a tiny Conformer unless it fine-tunes a pretrained one."""
    encoder = [] if any(arg.startswith("--model.pretrained=") for arg in extra) else TINY_ENCODER
    return ["fit", "-c", str(CONFIGS / config), "-c", str(CONFIGS / "trainer/cpu.yaml"), *encoder, "--data.n_mels=20", "--data.batch_size=8",
            "--data.num_workers=0", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", f"--data.root={root}",
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={logs}", *extra]


def final_metrics(logs: Path) -> dict[str, float]:
    import csv

    rows = list(csv.DictReader(next(logs.glob("*/version_0/metrics.csv")).open()))
    return {k: float(v) for row in rows for k, v in row.items() if v}


@pytest.fixture(scope="module")
def tone_data(tmp_path_factory) -> Path:
    return make_tone_words(tmp_path_factory.mktemp("speech") / "tones")


def test_pretrain_export_fine_tune_and_transcribe(tone_data, tmp_path):
    pretrained = run_ptft(*speech_fit("pretrain/speech_bestrq_fillets.yaml", tone_data, tmp_path / "pre", "--trainer.max_epochs=1",
                                      "--model.codebook_size=64"), cwd=tmp_path)
    assert 1 < final_metrics(tmp_path / "pre")["val/code_perplexity"] < 64  # the tones use some of the 64 codes, unevenly
    encoder = tmp_path / "encoder"
    run_ptft("export", checkpoint_from(pretrained), str(encoder), cwd=tmp_path)
    assert json.loads((encoder / "backbone.json").read_text())["audio"] == {"sample_rate": 16000, "n_mels": 20, "window_ms": 25.0, "hop_ms": 10.0}
    assert not (encoder / "tokenizer.json").exists()  # pretraining never saw a transcript

    # the encoder's architecture comes from the export; the vocabulary from the transcripts
    fine_tuned = run_ptft(*speech_fit("finetune/fillets_ctc.yaml", tone_data, tmp_path / "ctc", f"--model.pretrained={encoder}",
                                      "--trainer.max_epochs=12", "--data.spec_augment=false", "--model.optimizer.init_args.lr=3e-3"),
                          cwd=tmp_path, timeout=400)
    metrics = final_metrics(tmp_path / "ctc")
    assert metrics["val/cer"] < 0.3, metrics  # the tones are learnable: CTC fine-tuning works end to end
    recognizer = tmp_path / "recognizer"
    run_ptft("export", checkpoint_from(fine_tuned), str(recognizer), cwd=tmp_path)
    assert {"ctc_head.safetensors", "tokenizer.json"} <= {p.name for p in recognizer.iterdir()}

    # any rate and channel count: the first test clip again as 22.05 kHz stereo OGG
    texts = [json.loads(line)["text"] for line in (tone_data / "test.jsonl").read_text().splitlines()]
    clips = [str(tone_data / f"audio/test/{i}.wav") for i in range(len(texts))]
    stereo = tmp_path / "stereo.ogg"
    wave = tone_words(texts[0], rate=22050)
    soundfile.write(stereo, np.stack([wave, wave], axis=1), 22050)
    out = tmp_path / "transcripts.jsonl"
    result = run_ptft("transcribe", str(recognizer), *clips, str(stereo), f"--out={out}", cwd=tmp_path)
    printed = result.stdout.splitlines()
    assert len(printed) == len(clips) + 1 and "real-time factor" in result.stderr
    assert sum(p == t for p, t in zip(printed, texts)) >= len(texts) // 2, (printed, texts)
    # the OGG (lossy, resampled, mixed down) reads as the WAV, within one character (a seed-dependent space or blank)
    assert torchaudio.functional.edit_distance(printed[-1], printed[0]) <= 1, printed
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == printed

    before = out.read_text()
    refused = run_ptft("transcribe", checkpoint_from(fine_tuned), clips[0], f"--out={out}", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "exists; pass --overwrite" in refused.stderr and out.read_text() == before
    not_asr = run_ptft("transcribe", str(encoder), clips[0], cwd=tmp_path, check=False)
    assert not_asr.returncode == 2 and "is not a speech recognition model" in not_asr.stderr


def test_ddp_with_bf16_mixed(tone_data, tmp_path):
    out = tmp_path / "ranks"
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(out)}})
    run_ptft(*speech_fit("finetune/fillets_ctc_scratch.yaml", tone_data, tmp_path / "logs", "-c", str(CONFIGS / "trainer/ddp.yaml"),
                         "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.precision=bf16-mixed", "--trainer.max_epochs=2",
                         f"--trainer.callbacks+={recorder}"), cwd=tmp_path, timeout=400)
    records = sorted((json.loads(p.read_text()) for p in out.glob("rank*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in records] == [0, 1] and records[0]["weights"] == records[1]["weights"]
    first, second = (set(r["indices"]) for r in records)
    assert not first & second and first | second == set(range(48))  # 24 clips per rank: 3 batches of 8
    assert records[0]["steps"] == records[1]["steps"] == 6
    assert records[0]["output_dtype"] == "torch.bfloat16"


@pytest.mark.parametrize("config", ["pretrain/speech_maskrecon_fillets.yaml", "finetune/fillets_ctc_scratch.yaml"])
def test_a_killed_run_resumes_with_identical_losses(config, tone_data, tmp_path, monkeypatch):
    # span masks and noise (pretraining), SpecAugment, dropout and the bucketed order (CTC) must all continue exactly
    monkeypatch.chdir(tmp_path)
    checkpoint = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"every_n_train_steps": 4, "save_last": True}}

    def args(name, *callbacks):
        record = {"class_path": "reliability_callbacks.RecordLosses", "init_args": {"path": str(tmp_path / f"{name}.jsonl")}}
        return speech_fit(config, tone_data, tmp_path / name, "--trainer.max_steps=9", "--trainer.log_every_n_steps=1", "--trainer.limit_val_batches=1",
                          "--data.num_workers=1", f"--trainer.callbacks={json.dumps([checkpoint, record, *callbacks])}")

    kill = {"class_path": "reliability_callbacks.KillAt", "init_args": {"step": 5}}
    killed = run_ptft(*args("run", kill), cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    before = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    run_cli(args("run") + ["--ckpt_path=last"])
    run_cli(args("reference"))
    reference = [json.loads(line) for line in (tmp_path / "reference.jsonl").read_text().splitlines()]
    resumed = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()][len(before):]
    assert before == reference[: len(before)] and resumed[0]["step"] == 5 and resumed[-1]["step"] == 9
    expected = [r for r in reference if r["step"] >= 5]
    assert [r["step"] for r in resumed] == [r["step"] for r in expected]
    for got, want in zip(resumed, expected):  # crosses the epoch boundary (6 batches per epoch) after the resume
        assert got["train/loss"] == pytest.approx(want["train/loss"], rel=1e-6, abs=1e-7), (got, want)


def test_real_dutch_speech_fine_tunes_and_scores(fillets, tmp_path):
    subset = tmp_path / "subset"
    subset.mkdir()
    for split, count in (("train", 24), ("dev", 8)):  # the shortest clips with speech, with absolute paths
        rows = [json.loads(line) for line in (fillets / f"{split}.jsonl").read_text().splitlines()]
        rows = sorted((r for r in rows if r["duration"] > 0.5), key=lambda r: r["duration"])[:count]
        write_manifest(subset / f"{split}.jsonl", [{**r, "audio_filepath": str(fillets / r["audio_filepath"])} for r in rows])
    run_ptft(*speech_fit("finetune/fillets_ctc_scratch.yaml", subset, tmp_path / "logs", "--trainer.max_epochs=1",
                         "--data.test_manifest=null", "--data.n_mels=80", "--model.backbone.init_args.n_mels=80",
                         "--trainer.log_every_n_steps=1"), cwd=tmp_path)
    metrics = final_metrics(tmp_path / "logs")
    assert np.isfinite(metrics["train/loss"]) and metrics["val/loss"] > 0 and 0 <= metrics["val/cer"] <= 1.5
    saved = torch.load(next((tmp_path / "logs").glob("*/version_0/checkpoints/last.ckpt")), weights_only=True)
    vocabulary = json.loads(saved["ptft"]["tokenizer"])["model"]["vocab"]
    assert {"a", "e", "n", " "} <= set(vocabulary) and "A" not in vocabulary  # Dutch, lower-cased
