"""2-process DDP (gloo): a NaN on one rank is handled on every rank; one rank failing stops them all."""

import json
import os
import time

import pytest
import torch

from conftest import make_image_tree
from helpers import CONFIGS, run_ptft, sigterm_when_marked


def ddp_fit(tmp_path, *callbacks, extra=(), check=True, timeout=300):
    tree = tmp_path / "tree"
    if not tree.exists():
        make_image_tree(tree, per_class=8)  # 24 images: 12 per rank, 3 batches of 4 per epoch
    return run_ptft(
        "fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/ddp.yaml"),
        f"--data.root={tree}", "--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0",
        "--model.backbone.init_args.base_width=8", "--model.backbone.init_args.num_layers=2", "--model.decoder_width=8",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_steps=4", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path / 'root'}",
        f"--trainer.callbacks={json.dumps([{'class_path': 'pytorch_lightning.callbacks.ModelCheckpoint', 'init_args': {'dirpath': str(tmp_path / 'ckpt'), 'save_last': True}}, *callbacks])}",
        *extra, cwd=tmp_path, timeout=timeout, check=check,
    )


def test_a_nan_on_one_rank_is_skipped_on_every_rank(tmp_path):
    poison = {"class_path": "reliability_callbacks.PoisonBatch", "init_args": {"at": 1, "rank": 1}}
    recorder = {"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(tmp_path / "record")}}
    ddp_fit(tmp_path, poison, recorder, extra=["--model.on_nonfinite=skip"])
    records = [json.loads((tmp_path / f"record/rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0]["steps"] == records[1]["steps"] == 4
    assert records[0]["weights"] == records[1]["weights"]  # both ranks skipped the same step
    saved = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)
    assert saved["ptft"]["skipped_steps"] == 1


def test_a_nan_on_one_rank_stops_every_rank_naming_both_values(tmp_path):
    poison = {"class_path": "reliability_callbacks.PoisonBatch", "init_args": {"at": 1, "rank": 1}}
    result = ddp_fit(tmp_path, poison, check=False)
    assert result.returncode != 0
    assert "ptft: error: train/loss is not finite (" in result.stderr and ", nan) at step 1" in result.stderr


@pytest.mark.parametrize("rank", [1, 0])
def test_one_rank_raising_stops_every_rank_instead_of_hanging(rank, tmp_path):
    fail = {"class_path": "reliability_callbacks.RaiseOnRank", "init_args": {"rank": rank, "step": 2, "pid_dir": str(tmp_path / "pids")}}
    start = time.time()
    result = ddp_fit(tmp_path, fail, check=False, timeout=240)
    assert result.returncode != 0
    assert f"injected failure on rank {rank} at step 2" in result.stderr
    pids = [int(p.read_text()) for p in (tmp_path / "pids").glob("rank*.pid")]
    assert len(pids) == 2
    deadline = time.time() + 60
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(_alive(pid) for pid in pids), f"a rank still runs {time.time() - start:.0f} s after the start"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_under_ddp_saves_one_checkpoint_and_exits_143(tmp_path):
    tree = tmp_path / "tree"
    make_image_tree(tree, per_class=8)
    slow = {"class_path": "reliability_callbacks.SlowSteps", "init_args": {"seconds": 1.0, "mark": str(tmp_path / "mark"), "mark_at": 2}}
    pids = {"class_path": "reliability_callbacks.RaiseOnRank", "init_args": {"rank": -1, "pid_dir": str(tmp_path / "pids")}}  # pids only
    checkpoint = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}
    args = ["fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/ddp.yaml"),
            f"--data.root={tree}", "--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0",
            "--model.backbone.init_args.base_width=8", "--model.backbone.init_args.num_layers=2", "--model.decoder_width=8",
            "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_steps=100", "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path / 'root'}",
            f"--trainer.callbacks={json.dumps([checkpoint, slow, pids])}"]
    stopped = sigterm_when_marked(*args, cwd=tmp_path, mark=tmp_path / "mark")
    assert stopped.returncode == 143, stopped.stderr[-3000:]
    saved = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)
    assert 2 <= saved["global_step"] < 100
    pids = [int(p.read_text()) for p in (tmp_path / "pids").glob("rank*.pid")]
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)
