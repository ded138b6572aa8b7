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


def test_a_warmup_longer_than_max_steps_fails_before_the_tokenizer_is_trained_and_leaves_no_run_folder(text_root, tmp_path):
    cache = tmp_path / "cache"
    args = lm_args("mlm_wikitext2.yaml", text_root, cache, steps=10)  # the config's W&B logger (offline), save_dir runs/...
    result = run_ptft(*args, "-c", warmup_100(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [
        "ptft: error: lr_scheduler.init_args: need 0 <= warmup < total steps, got 100 and 10 "
        "(the run's length: trainer.max_steps, or max_epochs x batches per epoch); shorten the warmup or lengthen the schedule"]
    assert files_under(cache) == []  # no tokenizer trained, no file tokenized
    assert not (tmp_path / "runs").exists()  # no W&B run, no config.yaml
