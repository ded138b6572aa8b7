"""Text through the `ptft` command: MLM -> export -> SST-style fine-tuning, CLM -> generate,
2-process DDP, bf16, bad input; real WikiText-2 / SST-2 runs when ../shared/data is there."""

import csv
import json
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import make_text_data
from helpers import CONFIGS, checkpoint_from, lm_args, run_ptft, tiny_text_model
from ptft.handoff import load_checkpoint
from ptft.tasks.language_model import load_causal_lm


@pytest.fixture(scope="module")
def text_root(tmp_path_factory):
    return make_text_data(tmp_path_factory.mktemp("text"))


def metric_column(log_dir: Path, name: str) -> list[float]:
    rows = list(csv.DictReader(next(log_dir.glob("**/metrics.csv")).open()))
    return [float(r[name]) for r in rows if r.get(name)]


def csv_logger(tmp_path):
    return ["--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path / 'logs'}"]


def finetune_args(text_root, *extra, config="sst2_from_mlm.yaml"):
    return ["fit", "-c", str(CONFIGS / "finetune" / config), "-c", str(CONFIGS / "trainer/cpu.yaml"),
            f"--data.root={text_root / 'sst2'}", "--data.max_length=32", "--data.batch_size=16", "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false", *extra]


def test_mlm_pretraining_export_and_fine_tuning_with_the_same_tokenizer(text_root, tmp_path):
    result = run_ptft(*lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache"), cwd=tmp_path)
    checkpoint = load_checkpoint(tmp_path / checkpoint_from(result))
    assert checkpoint["ptft"]["task"] == "ptft.tasks.language_model.MaskedLMPretraining" and "tokenizer" in checkpoint["ptft"]
    assert not any(k.startswith("lm_head") and k.endswith(".weight") and v.shape[0] == 512 for k, v in checkpoint["state_dict"].items())
    run_ptft("export", checkpoint_from(result), str(tmp_path / "export"), cwd=tmp_path)
    assert json.loads((tmp_path / "export/tokenizer.json").read_text()) == json.loads(checkpoint["ptft"]["tokenizer"])

    tuned = run_ptft(*finetune_args(text_root, f"--model.pretrained={tmp_path / 'export'}", *csv_logger(tmp_path)), cwd=tmp_path)
    tuned_checkpoint = load_checkpoint(tmp_path / checkpoint_from(tuned))
    assert tuned_checkpoint["ptft"]["labels"] == ["0", "1"] and tuned_checkpoint["ptft"]["tokenizer"] == checkpoint["ptft"]["tokenizer"]
    assert metric_column(tmp_path / "logs", "val/acc")

    other = tmp_path / "other_tokenizer.json"
    other.write_text(tuned_checkpoint["ptft"]["tokenizer"].replace('"<mask>"', '"<other_mask>"', 1))
    bad = run_ptft(*finetune_args(text_root, f"--model.pretrained={tmp_path / 'export'}", f"--data.tokenizer={other}"), cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "ptft: error: data.tokenizer" in bad.stderr and "is not the tokenizer" in bad.stderr


def test_fine_tuning_from_random_init_trains_its_own_tokenizer(text_root, tmp_path):
    run_ptft(*finetune_args(text_root, *tiny_text_model(), "--data.vocab_size=400", *csv_logger(tmp_path), config="sst2_scratch.yaml"),
             cwd=tmp_path)
    assert metric_column(tmp_path / "logs", "val/acc")


def test_causal_lm_then_generate_the_requested_number_of_tokens(text_root, tmp_path):
    result = run_ptft(*lm_args("clm_wikitext2.yaml", text_root, tmp_path / "cache"), cwd=tmp_path)
    checkpoint = str(tmp_path / checkpoint_from(result))
    model = load_causal_lm(checkpoint)
    assert model.trained_length == model.context_length == 32  # data.block_size: generation reads only trained positions
    prompt = model.tokenizer.encode_batch([" the cat"])[0]
    assert len(model.generate(prompt, 7, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0))) == 7
    greedy = model.generate(prompt, 5, temperature=0)
    assert model.generate(prompt, 5, temperature=1.0, top_k=1) == greedy  # top-1 sampling is greedy
    out = run_ptft("generate", checkpoint, "--prompt", " the cat", "--max_new_tokens", "5", "--temperature", "0", cwd=tmp_path)
    assert out.stdout == " the cat" + model.tokenizer.decode(greedy) + "\n"
    lines = " the cat\n the dog"  # a newline is the end-of-text token, as in training; printed back as given
    out = run_ptft("generate", checkpoint, "--prompt", lines, "--max_new_tokens", "5", "--temperature", "0", cwd=tmp_path)
    assert out.stdout == lines + model.tokenizer.decode(model.generate(model.encode_prompt(lines), 5, temperature=0)) + "\n"
    mlm_like = run_ptft("generate", str(tmp_path / "missing.ckpt"), cwd=tmp_path, check=False)
    assert mlm_like.returncode == 2 and "ptft generate: error: checkpoint" in mlm_like.stderr


def test_a_bad_language_model_config_gives_one_line(text_root, tmp_path):
    # (the tokenizer/backbone checks behind the other one-line errors: tests/tasks/test_language_model.py)
    result = run_ptft(*lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache"), "--model.backbone.init_args.causal=true",
                      cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ptft: error: MaskedLMPretraining needs a bidirectional backbone")


@pytest.mark.parametrize("config", ["mlm_wikitext2.yaml", "clm_wikitext2.yaml"])
def test_ddp_language_model_ranks_agree_on_disjoint_shards(text_root, tmp_path, config):
    out = tmp_path / "record"
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(out)}})
    run_ptft(*lm_args(config, text_root, tmp_path / "cache", steps=4), "-c", str(CONFIGS / "trainer/ddp.yaml"),
             "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.callbacks+={recorder}", *csv_logger(tmp_path),
             cwd=tmp_path, timeout=400)
    records = sorted((json.loads(p.read_text()) for p in out.glob("rank*.json")), key=lambda r: r["rank"])
    assert [r["world_size"] for r in records] == [2, 2] and records[0]["weights"] == records[1]["weights"]
    first, second = (r["indices"] for r in records)
    assert len(first) == len(second) > 0 and records[0]["steps"] == records[1]["steps"] == 4
    assert len(set(first) & set(second)) <= 1  # disjoint shards (DistributedSampler repeats one block of an odd count)


def test_bf16_mixed_causal_lm(text_root, tmp_path):
    out = tmp_path / "record"
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(out)}})
    run_ptft(*lm_args("clm_wikitext2.yaml", text_root, tmp_path / "cache", steps=3), "-c", str(CONFIGS / "trainer/bf16.yaml"),
             "--trainer.log_every_n_steps=1", f"--trainer.callbacks+={recorder}", *csv_logger(tmp_path), cwd=tmp_path)
    record = json.loads((out / "rank0.json").read_text())
    assert record["precision"] == "bf16-mixed"  # (the pooled features are float32: LayerNorm runs in float32 under autocast)
    losses = metric_column(tmp_path / "logs", "train/loss")
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)


def real_data(name: str) -> Path:
    root = Path(os.environ.get("PTFT_DATA", "")) / name
    if not os.environ.get("PTFT_DATA") or not root.is_dir():
        pytest.skip(f"real {name} not found: set PTFT_DATA to a folder holding {name}/")
    return root


def test_real_wikitext2_masked_lm_validation_perplexity_falls(tmp_path):
    root = real_data("wikitext-2")
    steps = 60
    run_ptft("fit", "-c", str(CONFIGS / "pretrain/mlm_wikitext2.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
             f"--data.root={root}", "--data.vocab_size=2048", "--model.backbone.init_args.vocab_size=2048",
             "--model.backbone.init_args.depth=1", "--model.backbone.init_args.width=64", "--model.backbone.init_args.heads=2",
             "--data.block_size=64", "--model.backbone.init_args.max_length=64", "--data.batch_size=16", f"--data.cache_dir={tmp_path / 'cache'}",
             f"--trainer.max_steps={steps}", "--trainer.val_check_interval=20", "--trainer.limit_val_batches=4",
             "--model.optimizer.init_args.lr=2e-3", "--trainer.enable_progress_bar=false", *csv_logger(tmp_path),
             cwd=tmp_path, timeout=600)
    perplexities = metric_column(tmp_path / "logs", "val/mlm_ppl")
    assert len(perplexities) == 3 and perplexities[-1] < perplexities[0] < 2048


def test_real_sst2_fine_tuning_beats_the_majority_class(tmp_path):
    root = real_data("sst2")
    labels = [line.rsplit("\t", 1)[1].strip() for line in (root / "test.tsv").read_text().splitlines()[1:]]
    majority = max(labels.count("0"), labels.count("1")) / len(labels)
    run_ptft("fit", "-c", str(CONFIGS / "finetune/sst2_scratch.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"), f"--data.root={root}",
             "--model.backbone.init_args.depth=1", "--model.backbone.init_args.width=64", "--model.backbone.init_args.heads=2",
             "--data.vocab_size=4096", "--model.backbone.init_args.vocab_size=4096", "--data.max_length=64",
             "--model.backbone.init_args.max_length=64", "--data.val_file=test.tsv", "--data.test_file=null",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=150", "--model.optimizer.init_args.lr=1e-3",
             "--trainer.enable_progress_bar=false", *csv_logger(tmp_path), cwd=tmp_path, timeout=600)
    accuracy = metric_column(tmp_path / "logs", "val/acc")[-1]
    assert accuracy > majority + 0.1, (accuracy, majority)
