"""Seq2seq through the `ptft` command: BART pretraining -> export -> translation fine-tuning ->
`ptft generate`, BERT2BERT from an MLM, 2-process DDP with metrics over the whole split, bf16,
bad input; a real-data run on a slice of Multi30k when ../shared/data is there."""

import csv
import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import make_parallel_data, make_text_data
from helpers import CONFIGS, checkpoint_from, lm_args, run_ptft, tiny_seq2seq_model, tiny_text_model
from ptft.data.text_files import split_lines
from ptft.handoff import load_checkpoint, read_pretrained
from ptft.seq2seq_generation import GenerationSettings
from ptft.tasks.seq2seq import scores, text_metrics
from ptft.text_to_text import TextToText


@pytest.fixture(scope="module")
def text_root(tmp_path_factory):
    return make_text_data(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def mt_root(tmp_path_factory):
    return make_parallel_data(tmp_path_factory.mktemp("multi30k"))


def logged(tmp_path: Path, name: str) -> list[float]:
    rows = list(csv.DictReader(next((tmp_path / "logs").glob("**/metrics.csv")).open()))
    return [float(r[name]) for r in rows if r.get(name)]


def translation_args(mt_root, tmp_path, *extra):
    return ["fit", "-c", str(CONFIGS / "finetune/multi30k_en_de.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"), *tiny_seq2seq_model(),
            f"--data.root={mt_root}", "--data.max_source_length=32", "--data.max_target_length=32", "--data.batch_size=16",
            "--data.vocab_size=512", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--model.generate_val_batches=1",
            "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path / 'logs'}", *extra]


def test_bart_pretraining_export_fine_tuning_and_generate(text_root, mt_root, tmp_path):
    bart = run_ptft(*lm_args("bart_wikitext2.yaml", text_root, tmp_path / "cache", model=tiny_seq2seq_model()), cwd=tmp_path)
    checkpoint = load_checkpoint(tmp_path / checkpoint_from(bart))
    assert checkpoint["ptft"]["task"] == "ptft.tasks.denoising_seq2seq.DenoisingSeq2SeqPretraining"
    run_ptft("export", checkpoint_from(bart), str(tmp_path / "bart"), cwd=tmp_path)
    assert {key.split(".")[0] for key in load_file(tmp_path / "bart/backbone.safetensors")} == {"encoder", "decoder"}

    tuned = run_ptft(*translation_args(mt_root, tmp_path, f"--model.pretrained={tmp_path / 'bart'}"), cwd=tmp_path)
    tuned_checkpoint = tmp_path / checkpoint_from(tuned)
    assert load_checkpoint(tuned_checkpoint)["ptft"]["tokenizer"] == checkpoint["ptft"]["tokenizer"]  # BART's, not one trained here
    assert len(logged(tmp_path, "val/bleu")) == 1 and len(logged(tmp_path, "val/chrf")) == 1

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("the cat sees the moon\na small bird likes an apple\n\n")
    out = tmp_path / "outputs.txt"
    result = run_ptft("generate", str(tuned_checkpoint), "--input_file", str(inputs), "--out", str(out), "--beam_size", "2", cwd=tmp_path)
    expected = TextToText(read_pretrained(tuned_checkpoint))(split_lines(inputs.read_text()), GenerationSettings(32, beam_size=2))
    assert out.read_text() == "".join(f"{line}\n" for line in expected) and result.stdout == "\n".join(expected) + "\n" and len(expected) == 3
    again = run_ptft("generate", str(tuned_checkpoint), "--input_file", str(inputs), "--out", str(out), "--beam_size", "1", cwd=tmp_path, check=False)
    assert again.returncode == 2 and f"{out} exists; pass --overwrite" in again.stderr and out.read_text() == "".join(f"{e}\n" for e in expected)
    missing = run_ptft("generate", str(tuned_checkpoint), "--input_file", str(tmp_path / "nope.txt"), cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "ptft generate: error: --input_file:" in missing.stderr and "nope.txt does not exist" in missing.stderr
    prompt = run_ptft("generate", str(tuned_checkpoint), "--prompt", "the cat", cwd=tmp_path, check=False)
    assert prompt.returncode == 2 and "--prompt is for causal LMs" in prompt.stderr
    run_ptft("export", str(tuned_checkpoint), str(tmp_path / "tuned"), cwd=tmp_path)
    one = run_ptft("generate", str(tmp_path / "tuned"), "--input", "the cat sees the moon", "--beam_size", "2", cwd=tmp_path)
    assert one.stdout == expected[0] + "\n"  # the export generates as the checkpoint does


def test_bert2bert_from_a_masked_lm_checkpoint_reports_copied_and_new_weights(text_root, mt_root, tmp_path):
    mlm = run_ptft(*lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache", model=tiny_text_model()), cwd=tmp_path)
    tuned = run_ptft(*translation_args(mt_root, tmp_path, f"--model.pretrained={tmp_path / checkpoint_from(mlm)}"), cwd=tmp_path)
    report = tuned.stdout + tuned.stderr
    assert "BERT2BERT warm start from" in report and "tensors copied" in report
    assert "copied decoder.blocks.0.qkv.weight <- blocks.0.qkv.weight" in report and "new    decoder.blocks.0.cross_kv.weight" in report
    assert logged(tmp_path, "val/bleu")


def test_ddp_scores_the_whole_validation_split(mt_root, tmp_path):
    result = run_ptft(*translation_args(mt_root, tmp_path, "-c", str(CONFIGS / "trainer/ddp.yaml"), "--trainer.accelerator=cpu",
                                        "--trainer.devices=2", "--trainer.max_epochs=3", "--model.generate_val_batches=null",
                                        "--model.beam_size=1", "--trainer.num_sanity_val_steps=0"), cwd=tmp_path, timeout=400)
    model = TextToText(read_pretrained(tmp_path / checkpoint_from(result)))  # the weights validation scored
    sources = split_lines((mt_root / "val.en").read_text())
    metrics = text_metrics("translation")
    outputs = model(sources, GenerationSettings(31))
    for metric in metrics.values():
        metric.update(outputs, [[reference] for reference in split_lines((mt_root / "val.de").read_text())])
    whole = {key: float(value) for name, metric in metrics.items() for key, value in scores(name, metric.compute()).items()}
    assert whole["chrf"] > 0
    for key, value in whole.items():  # 16 validation pairs per rank, gathered
        assert logged(tmp_path, f"val/{key}")[-1] == pytest.approx(value, abs=1e-3), key


def test_bf16_mixed_fine_tuning(mt_root, tmp_path):
    run_ptft(*translation_args(mt_root, tmp_path, "-c", str(CONFIGS / "trainer/bf16.yaml"), "--trainer.limit_train_batches=4"), cwd=tmp_path)
    assert all(0 < loss < 20 for loss in logged(tmp_path, "val/loss")) and logged(tmp_path, "val/chrf")


def test_bad_parallel_data_stops_before_training_naming_the_files(mt_root, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train.en", "train.de", "val.en", "val.de"):
        (bad / name).write_text((mt_root / name).read_text())
    (bad / "val.de").write_text("\n".join(split_lines((mt_root / "val.de").read_text())[:-1]) + "\n")
    result = run_ptft(*translation_args(bad, tmp_path, "--data.test_file=null"), cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "val.en" in result.stderr and "val.de" in result.stderr and "32" in result.stderr and "31" in result.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.skipif(not (Path(os.environ.get("PTFT_DATA", "../shared/data")) / "multi30k").is_dir(),
                    reason="the real Multi30k is not in $PTFT_DATA (../shared/data)")
def test_real_multi30k_slice_trains_and_is_scored(tmp_path):
    real = Path(os.environ.get("PTFT_DATA", "../shared/data")) / "multi30k"
    for name in ("train.en", "train.de", "val.en", "val.de"):
        lines = split_lines((real / name).read_text(encoding="utf-8"))[: 160 if name.startswith("train") else 32]
        (tmp_path / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    run_ptft(*translation_args(tmp_path, tmp_path, "--data.test_file=null", "--data.vocab_size=1000", "--model.backbone.init_args.vocab_size=1000"),
             cwd=tmp_path)
    assert len(logged(tmp_path, "val/bleu")) == 1 and all(0 < loss < 8 for loss in logged(tmp_path, "val/loss"))
