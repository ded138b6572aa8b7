"""StageProgress: plain-text progress lines with the elapsed time and an ETA from the measured step rate."""

import io
import itertools
import math

import pytorch_lightning as pl
import torch

from conftest import small_encoder
from ptft.callbacks import StageProgress
from ptft.callbacks.progress import format_duration, progress_line
from ptft.data import ImageFolderDataModule
from ptft.tasks import AutoencoderPretraining


def test_format_duration():
    assert [format_duration(s) for s in (0, 0.4, 45, 59.6, 60, 185, 3599, 3600, 7620, -3)] == \
        ["0s", "0s", "45s", "1m00s", "1m00s", "3m05s", "59m59s", "1h00m", "2h07m", "0s"]


def test_progress_line_and_eta_arithmetic():
    # 120 of 1000 steps in 65 s: 880 steps left at 65/120 s per step = 476.7 s
    assert progress_line("pretrain", 120, 1000, 65.0) == "stage pretrain: step 120/1000 (12%), elapsed 1m05s, ETA 7m57s"
    assert progress_line("pretrain", 0, 1000, 0.0) == "stage pretrain: step 0/1000 (0%), elapsed 0s, ETA ?"
    # a resumed run: the rate counts the steps done in this run only (100 in 50 s), 600 left
    assert progress_line("probe", 400, 1000, 50.0, start_step=300) == "stage probe: step 400/1000 (40%), elapsed 50s, ETA 5m00s"
    assert progress_line("x", 999, 1000, 999.0).endswith("(99%), elapsed 16m39s, ETA 1s")  # floored percent, never 100% early
    assert progress_line("x", 1000, 1000, 330.0) == "stage x: step 1000/1000 (100%), elapsed 5m30s, done"
    assert progress_line("x", 40, 1000, 30.0, finished=True) == "stage x: step 40/1000 (4%), elapsed 30s, done"  # stopped early
    assert progress_line("x", 7, math.inf, 12.0) == "stage x: step 7, elapsed 12s"  # no known total: no ETA


def test_stage_progress_prints_at_start_every_interval_and_end(image_tree):
    ticks = itertools.count(0, 4)  # each clock reading is 4 s later
    out = io.StringIO()
    progress = StageProgress("pretrain", every_n_seconds=10, stream=out, clock=lambda: float(next(ticks)))
    pl.seed_everything(0)
    data = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=4, num_workers=0)
    model = AutoencoderPretraining(small_encoder(), optimizer=lambda params: torch.optim.SGD(params, lr=0.01))
    trainer = pl.Trainer(max_steps=6, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[progress])
    trainer.fit(model, datamodule=data)
    # readings: start 0 s; after steps 1-5 4, 8, ..., 20 s (a line at 12 s, 10 s after the last); end 24 s
    assert out.getvalue().splitlines() == [
        "stage pretrain: step 0/6 (0%), elapsed 0s, ETA ?",
        "stage pretrain: step 3/6 (50%), elapsed 12s, ETA 12s",
        "stage pretrain: step 6/6 (100%), elapsed 24s, done",
    ]
