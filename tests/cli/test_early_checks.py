"""Checks that can fail run before any work or output: a config error stops `ptft fit` with one line
before the data is prepared where it can, and a run that fails before training leaves no run folder."""

import math
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl

from conftest import make_text_data
from helpers import CONFIGS, lm_args, run_ptft
from ptft.cli import main
from ptft.schedules import known_run_length

WARMUP_100 = "model:\n  init_args:\n    lr_scheduler:\n      init_args:\n        warmup_steps: 100\n        warmup_fraction: null\n"


@pytest.fixture(scope="module")
def text_root(tmp_path_factory):
    return make_text_data(tmp_path_factory.mktemp("text"))


def warmup_100(folder: Path) -> str:
    path = folder / "warmup_100.yaml"
    path.write_text(WARMUP_100)
    return str(path)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ptft: error:")]


@pytest.mark.parametrize("max_steps, max_epochs, expected", [
    (10, None, 10), (10, -1, 10), (-1, -1, math.inf), (10, 2, None), (-1, None, None), (-1, 3, None),
])
def test_the_run_length_is_known_without_data_only_without_an_epoch_limit(max_steps, max_epochs, expected):
    trainer = pl.Trainer(max_steps=max_steps, max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    assert known_run_length(trainer) == expected


def test_a_warmup_longer_than_max_steps_fails_before_the_tokenizer_is_trained_and_leaves_no_run_folder(text_root, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    args = lm_args("mlm_wikitext2.yaml", text_root, cache, steps=10)  # the config's W&B logger (offline), save_dir runs/...
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "-c", warmup_100(tmp_path)])
    assert files_under(cache) == []  # no tokenizer trained, no file tokenized
    assert not (tmp_path / "runs").exists()  # no W&B run, no config.yaml
    assert exit_info.value.code == 2 and capsys.readouterr().err == (
        "ptft: error: lr_scheduler.init_args: need 0 <= warmup < total steps, got 100 and 10 "
        "(the run's length: trainer.max_steps, or max_epochs x batches per epoch); shorten the warmup or lengthen the schedule\n")


def test_a_schedule_that_needs_the_data_fails_before_training_and_leaves_no_run_folder_but_keeps_earlier_ones(text_root, tmp_path):
    runs = tmp_path / "runs" / "mlm_wikitext2"  # the config's W&B save_dir, holding an earlier run
    earlier = runs / "wandb" / "offline-run-20250101_000000-earlier"
    (earlier / "files").mkdir(parents=True)
    (runs / "wandb" / "latest-run").symlink_to(earlier.name)
    (runs / "ptft" / "earlier").mkdir(parents=True)
    (runs / "ptft" / "earlier" / "config.yaml").write_text("seed_everything: 0\n")
    before = files_under(tmp_path / "runs")
    args = lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache")
    result = run_ptft(*args, "-c", warmup_100(tmp_path), "--trainer.max_steps=-1", "--trainer.max_epochs=1", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert files_under(tmp_path / "runs") == before  # the new W&B run and its links are gone, the earlier run is kept
    assert os.readlink(runs / "wandb" / "latest-run") == earlier.name
    assert "wandb sync" not in result.stdout + result.stderr  # the removed W&B run is not offered for syncing
    assert error_lines(result.stderr) == [
        "ptft: error: lr_scheduler.init_args: need 0 <= warmup < total steps, got 100 and 26 "
        "(the run's length: trainer.max_steps, or max_epochs x batches per epoch); shorten the warmup or lengthen the schedule"]


def csv_run(text_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """A short MLM run on the tiny corpus, logging with a CSVLogger into ``tmp_path/csv``."""
    return [*lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache"), "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.save_dir={tmp_path / 'csv'}", *extra]


def image_backbone_on_text(text_root: Path, tmp_path: Path) -> list[str]:
    """The autoencoder's image backbone (DCGANEncoder) given WikiText data: refused before the data is prepared."""
    return ["fit", "-c", str(CONFIGS / "pretrain" / "autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
            "--data=ptft.data.WikiTextDataModule", f"--data.root={text_root / 'wikitext-2'}", "--data.train_file=wiki.valid.tokens",
            "--data.val_file=wiki.test.tokens", "--data.test_file=null", "--data.vocab_size=512", f"--data.cache_dir={tmp_path / 'cache'}",
            "--trainer.max_steps=5", "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path / 'csv'}"]


@pytest.mark.parametrize("args, message", [
    (lambda root, tmp: csv_run(root, tmp, "--model.backbone.init_args.vocab_size=100"),  # a DataSpec check that needs the tokenizer
     "the tokenizer has 352 tokens but the backbone's vocab_size is 100"),
    (image_backbone_on_text, "the data gives text inputs, but the backbone DCGANEncoder reads image inputs"),
], ids=["vocab_size_below_the_tokenizer", "image_backbone_on_text"])
def test_a_model_that_cannot_read_the_data_leaves_no_run_folder(text_root, tmp_path, args, message, capsys):
    earlier = tmp_path / "csv" / "lightning_logs" / "version_0"  # an earlier run in the same save_dir
    earlier.mkdir(parents=True)
    (earlier / "config.yaml").write_text("seed_everything: 0\n")
    with pytest.raises(SystemExit) as exit_info:
        main(args(text_root, tmp_path))
    last_line = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after the progress bars
    assert exit_info.value.code == 2 and last_line.startswith(f"ptft: error: {message}")
    assert files_under(tmp_path / "csv") == ["lightning_logs", "lightning_logs/version_0", "lightning_logs/version_0/config.yaml"]
    if "DCGAN" in message:
        assert files_under(tmp_path / "cache") == []  # refused before the data was prepared


def test_a_run_that_fails_before_training_in_a_new_folder_leaves_none_and_a_run_that_trains_keeps_its_folder(text_root, tmp_path):
    with pytest.raises(SystemExit):
        main(csv_run(text_root, tmp_path, "--model.backbone.init_args.vocab_size=100", "--trainer.logger.save_dir=" + str(tmp_path / "new" / "csv")))
    assert not (tmp_path / "new").exists()
    main(csv_run(text_root, tmp_path, "--trainer.max_steps=1", "--trainer.limit_val_batches=0"))
    assert (tmp_path / "csv" / "lightning_logs" / "version_0" / "config.yaml").is_file()


def test_a_run_without_a_logger_drops_the_configs_lr_monitor_and_trains(text_root, tmp_path, capsys):
    main([*lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache", steps=2), "--trainer.logger=false",
          f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.limit_val_batches=0"])
    out = capsys.readouterr().out
    assert "ptft: no logger (trainer.logger=false): the LearningRateMonitor of the config is dropped" in out
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_a_backbone_too_wide_to_build_is_one_line_naming_its_sizes_and_leaves_nothing(text_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the config's W&B logger writes under runs/
    with pytest.raises(SystemExit) as exit_info:
        main([*lm_args("mlm_wikitext2.yaml", text_root, tmp_path / "cache"), "--model.backbone.init_args.width=100000000"])  # a 205 GB embedding: were it tried, its allocation would fail at once
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error_lines(error) == [error.strip()]
    assert error.startswith("ptft: error: TextTransformer(") and "width=100000000" in error
    assert "cannot be built: its weights would take" in error and error.endswith("give positive sizes whose weights fit in memory\n")
    assert files_under(tmp_path) == []  # no run folder, no tokenizer
