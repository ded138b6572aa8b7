"""TrialReport: a run's finite metrics and checkpoint as JSON, written atomically by rank zero, also when fit fails."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.demos.boring_classes import BoringModel

from ptft.callbacks import TrialReport


def trainer_stub(rank_zero: bool = True, last: str = "", best: str = "") -> SimpleNamespace:
    metrics = {"val/loss": torch.tensor(0.25), "val/acc": 0.5, "grid": torch.zeros(2), "val/ppl": torch.tensor(float("inf")),
               "note": "text"}
    return SimpleNamespace(is_global_zero=rank_zero, callback_metrics=metrics,
                           checkpoint_callback=SimpleNamespace(last_model_path=last, best_model_path=best))


def test_finite_scalar_metrics_and_the_last_else_best_checkpoint(tmp_path):
    path = tmp_path / "trial" / "report.json"
    TrialReport(str(path)).on_fit_end(trainer_stub(last="runs/last.ckpt", best="runs/best.ckpt"), None)
    assert json.loads(path.read_text()) == {"metrics": {"val/acc": 0.5, "val/loss": 0.25}, "checkpoint": "runs/last.ckpt", "error": None}
    TrialReport(str(path)).on_fit_end(trainer_stub(best="runs/best.ckpt"), None)
    assert json.loads(path.read_text())["checkpoint"] == "runs/best.ckpt"
    TrialReport(str(path)).on_fit_end(SimpleNamespace(**{**vars(trainer_stub()), "checkpoint_callback": None}), None)
    assert json.loads(path.read_text())["checkpoint"] is None


def test_only_rank_zero_writes(tmp_path):
    TrialReport(str(tmp_path / "report.json")).on_fit_end(trainer_stub(rank_zero=False), None)
    assert not (tmp_path / "report.json").exists()


def test_the_report_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    TrialReport(str(path)).on_fit_end(trainer_stub(last="old.ckpt"), None)
    moves = []
    monkeypatch.setattr("ptft.reliability.os.replace", lambda src, dst: moves.append((Path(src), Path(dst))) or os.rename(src, dst))
    TrialReport(str(path)).on_fit_end(trainer_stub(last="new.ckpt"), None)
    assert [(src.parent, dst) for src, dst in moves] == [(tmp_path, path)]  # a temporary file in the same folder, renamed
    monkeypatch.setattr("ptft.callbacks.trial_report.json.dumps", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        TrialReport(str(path)).on_fit_end(trainer_stub(last="newer.ckpt"), None)
    assert json.loads(path.read_text())["checkpoint"] == "new.ckpt" and os.listdir(tmp_path) == ["report.json"]


class TinyModel(BoringModel):
    """Logs ``val/loss``; raises in training step ``fail_at``."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            raise FloatingPointError(f"train/loss is nan\nat step {self.global_step}")
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val/loss", out["x"])
        return out


@pytest.mark.parametrize("fail_at, error", [(None, None), (3, "FloatingPointError: train/loss is nan at step 3")])
def test_a_real_fit_reports_its_metric_checkpoint_and_error(tmp_path, fail_at, error):
    """Validation at steps 2 and 4; a failure at step 3 still reports step 2's metric and checkpoint."""
    path = tmp_path / "report.json"
    trainer = pl.Trainer(default_root_dir=tmp_path, max_steps=4, limit_val_batches=1, val_check_interval=2, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[ModelCheckpoint(save_last=True), TrialReport(str(path))])
    with pytest.raises(FloatingPointError) if error else contextlib.nullcontext():
        trainer.fit(TinyModel(fail_at))
    report = json.loads(path.read_text())
    assert report["error"] == error and list(report["metrics"]) == ["val/loss"]
    assert report["checkpoint"] == str(tmp_path / "checkpoints" / "last.ckpt") and Path(report["checkpoint"]).is_file()
