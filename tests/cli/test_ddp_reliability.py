"""2-process DDP (gloo): a NaN on one rank is handled on every rank; one rank failing stops them all."""

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import make_image_tree
from helpers import CONFIGS, PTFT, ptft_env, run_ptft


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


SIGTERM_REPEATS = int(os.environ.get("PTFT_SIGTERM_REPEATS", "2"))  # runs per target; 10 for the full stress
SIGTERM_STEPS = 30


def start_sigterm_run(tmp_path, *extra: str) -> subprocess.Popen:
    """A 2-process ``ptft fit`` of 30 jittered steps, with a step checkpoint (and last.ckpt) every
    5 steps and 2 validation batches every 3 epochs (9 steps), in its own process group."""
    tree = tmp_path.parent / "tree"
    if not tree.exists():
        make_image_tree(tree, per_class=8)  # 3 batches of 4 per rank and epoch
    callbacks = [
        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
         "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True, "every_n_train_steps": 5}},
        {"class_path": "reliability_callbacks.Jitter", "init_args": {"seconds": 0.03, "mark": str(tmp_path / "mark")}},
        {"class_path": "reliability_callbacks.RaiseOnRank", "init_args": {"rank": -1, "pid_dir": str(tmp_path / "pids")}},  # pids only
    ]
    args = ["fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/ddp.yaml"),
            f"--data.root={tree}", "--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0",
            "--model.backbone.init_args.base_width=8", "--model.backbone.init_args.num_layers=2", "--model.decoder_width=8",
            "--trainer.accelerator=cpu", "--trainer.devices=2", f"--trainer.max_steps={SIGTERM_STEPS}",
            "--trainer.check_val_every_n_epoch=3", "--trainer.limit_val_batches=2", "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_progress_bar=false", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path / 'root'}",
            f"--trainer.callbacks={json.dumps(callbacks)}", *extra]
    return subprocess.Popen([PTFT, *args], cwd=tmp_path, env=ptft_env("disabled"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"ptft exited {process.returncode} before {what}:\n{process.stderr.read()[-3000:]}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.01)


def finish(process: subprocess.Popen, timeout: float, what: str) -> str:
    """Waits for ``process`` at most ``timeout`` seconds (then kills its process group and fails); its stderr."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        states = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:24,args", "-g", str(process.pid)], capture_output=True, text=True).stdout
        os.killpg(process.pid, signal.SIGKILL)
        stderr = process.communicate()[1]
        pytest.fail(f"ptft hung {timeout} s after {what}; its processes:\n{states}\n{stderr[-3000:]}")


def preempted_at(process: subprocess.Popen, stderr: str, folder) -> int:
    """Checks a preempted run: exit 143, its ranks gone, a loadable last.ckpt; its global step."""
    assert process.returncode == 143, stderr[-3000:]
    pids = [int(p.read_text()) for p in (folder / "pids").glob("rank*.pid")]
    assert len(pids) == 2
    deadline = time.time() + 10  # rank 1 may still be leaving Python
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    saved = torch.load(folder / "ckpt/last.ckpt", weights_only=True)
    assert 1 <= saved["global_step"] < SIGTERM_STEPS
    return saved["global_step"]


@pytest.mark.parametrize("target", ["rank 0", "rank 1", "process group"])
def test_sigterm_under_ddp_at_random_moments_saves_last_ckpt_and_exits_143(target, tmp_path):
    """SIGTERM to rank 0 (what a `kill` of the launched command does), to rank 1, or to the whole
    process group (as SLURM signals a job step: every rank gets it), at a random moment of a random
    step: forward, backward (DDP's all-reduce), optimizer step, a step checkpoint or validation
    (step 0: the start of training). PTFT_SIGTERM_REPEATS runs per target (2 by default); each
    must end within 45 s of the signal, and its last.ckpt resumes under DDP to the next step checkpoint,
    saved to last.ckpt (from a SIGTERM checkpoint before step 5, that one used to write last-v1.ckpt)."""
    rng = random.Random()
    for run in range(SIGTERM_REPEATS):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        workers = ["--data.num_workers=1"] if target == "process group" else []  # the group has the workers too
        process = start_sigterm_run(folder, *workers)
        pid_files = [folder / f"pids/rank{rank}.pid" for rank in (0, 1)]
        wait_for(lambda: all(p.exists() and p.read_text() for p in pid_files), process, "both ranks started")
        step = rng.randrange(SIGTERM_STEPS - 5)
        wait_for(lambda: step == 0 or (folder / "mark").exists() and int((folder / "mark").read_text() or 0) >= step, process, f"step {step}")
        delay = rng.uniform(0, 0.2)
        time.sleep(delay)
        moment = f"SIGTERM to {target} {delay:.2f} s after step {step}"
        if target == "process group":
            os.killpg(process.pid, signal.SIGTERM)
        else:
            os.kill(int(pid_files[int(target[-1])].read_text()), signal.SIGTERM)
        start = time.time()
        stderr = finish(process, 45, moment)
        saved = preempted_at(process, stderr, folder)
        print(f"{moment}: exit {process.returncode} after {time.time() - start:.1f} s, last.ckpt at step {saved}")
        until = (saved // 5 + 1) * 5  # the next step checkpoint: it must continue last.ckpt, not write last-v1.ckpt
        resumed = start_sigterm_run(folder, *workers, f"--ckpt_path={folder / 'ckpt/last.ckpt'}", f"--trainer.max_steps={until}")
        stderr = finish(resumed, 120, f"the resume of step {saved}")
        assert resumed.returncode == 0, stderr[-3000:]
        assert sorted(path.name for path in (folder / "ckpt").glob("last*")) == ["last.ckpt"]
        assert torch.load(folder / "ckpt/last.ckpt", weights_only=True)["global_step"] == until


def rank_1_started(pid: int) -> bool:
    """Whether process ``pid`` has started rank 1 (a child with LOCAL_RANK=1)."""
    def environment(child: str) -> list[bytes]:
        with contextlib.suppress(OSError):  # a short-lived child (e.g. a helper the launcher ran) may be gone already
            return Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        return []

    return any(b"LOCAL_RANK=1" in environment(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def test_sigterm_to_the_process_group_while_rank_1_starts_stops_after_the_first_step(tmp_path):
    """Rank 1 gets the signal while Python starts, before any handler: it was started with SIGTERM
    blocked (inherited from rank 0), so the signal waits for ptft's handler instead of killing it."""
    process = start_sigterm_run(tmp_path)
    wait_for(lambda: rank_1_started(process.pid), process, "rank 1 started")
    os.killpg(process.pid, signal.SIGTERM)
    stderr = finish(process, 60, "a SIGTERM while rank 1 starts")
    assert preempted_at(process, stderr, tmp_path) == 1
