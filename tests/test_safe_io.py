"""Atomic checkpoints and exports, a full disk in one line; checkpoints that would run code when unpickled are refused."""

import errno
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

import ptft.handoff
from conftest import REPO, make_image_tree, small_encoder
from helpers import CONFIGS
from ptft.cli import main
from ptft.data import ImageFolderDataModule
from ptft.errors import ConfigError, WriteFailedError
from ptft.handoff import export_backbone, load_backbone, read_backbone
from ptft.reliability import AtomicCheckpointIO, atomic_torch_save
from ptft.temp_files import remove_stale_temp_files
from ptft.tasks import AutoencoderPretraining, Classification


def autoencoder_checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = AutoencoderPretraining(small_encoder())
    torch.save({"state_dict": model.state_dict(), "ptft": {"backbone": model.backbone.spec()}}, path)
    return path


KILLED_MID_SAVE = """
import os, signal, sys, torch
import ptft.reliability as reliability
from ptft.reliability import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, sys.argv[1])
def dying_save(obj, f):
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
reliability.torch.save = dying_save
io.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, sys.argv[1])
"""


def test_a_process_killed_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "ckpt" / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr
    saved = AtomicCheckpointIO().load_checkpoint(path)
    assert saved["step"] == 1 and torch.equal(saved["w"], torch.ones(1000))
    assert all(p.name.startswith(".last.ckpt.tmp-") for p in path.parent.iterdir() if p.name != "last.ckpt")  # at most a hidden temp file
    left = [p for p in path.parent.iterdir() if p.name != "last.ckpt"]
    assert remove_stale_temp_files(path.parent) == left and os.listdir(path.parent) == ["last.ckpt"]  # the killed process's


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_next_run_removes_temp_files_of_killed_processes_and_no_others(image_tree, tmp_path, caplog):
    earlier = tmp_path / "logs" / "lightning_logs" / "version_0" / "checkpoints"  # an earlier run's folder, as a kill left it
    earlier.mkdir(parents=True)
    host, dead = socket.gethostname(), dead_pid()
    stale = earlier / f".latest-step=4.ckpt.tmp-{host}-{dead}"
    stale.write_bytes(b"x" * 2_000_000)
    kept = [earlier / f".last.ckpt.tmp-{host}-{os.getpid()}", earlier / f".last.ckpt.tmp-otherhost-{dead}", earlier / f"notes.tmp-{host}-{dead}"]
    for path in kept:  # a live process's, another host's (a shared file system), not a ptft temp file
        path.write_bytes(b"x")
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_steps=1, logger=pl.loggers.CSVLogger(tmp_path / "logs"), enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0)
    with caplog.at_level(logging.WARNING, logger="ptft"):
        trainer.fit(AutoencoderPretraining(small_encoder(), num_grid_images=0), datamodule=dm)
    assert not stale.exists() and all(path.exists() for path in kept)
    assert f"ptft: removed {stale} (2.0 MB), left by process {dead}, which was killed while writing it" in caplog.messages


def test_an_export_removes_temp_files_of_a_killed_export(tmp_path, caplog):
    out = export_backbone(autoencoder_checkpoint(tmp_path / "a.ckpt"), tmp_path / "export")
    stale = out / f".backbone.safetensors.tmp-{socket.gethostname()}-{dead_pid()}"
    stale.write_bytes(b"half an export")
    with caplog.at_level(logging.WARNING, logger="ptft"):
        export_backbone(tmp_path / "a.ckpt", out, overwrite=True)
    assert sorted(os.listdir(out)) == ["backbone.json", "backbone.safetensors"]
    assert any(f"ptft: removed {stale}" in message for message in caplog.messages)


def test_exports_and_checkpoints_get_the_permissions_of_a_normally_created_file(tmp_path):
    before = os.umask(0o002)  # a team sharing the folder: group-writable, as any file the user creates
    try:
        out = export_backbone(autoencoder_checkpoint(tmp_path / "a.ckpt"), tmp_path / "export")
        atomic_torch_save({"step": 1}, tmp_path / "last.ckpt")
    finally:
        os.umask(before)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in [*out.iterdir(), tmp_path / "last.ckpt"]}
    assert modes == {"backbone.safetensors": "0o664", "backbone.json": "0o664", "last.ckpt": "0o664"}  # not 0o600


def test_a_failed_save_keeps_the_previous_checkpoint_and_removes_its_temp_file(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("ptft.reliability.torch.save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2}, path)
    assert io.load_checkpoint(path) == {"step": 1} and os.listdir(tmp_path) == ["last.ckpt"]


FULL_DISK = {  # what a full disk raises: the OS from a write or fsync, torch.save's zip writer on a short write
    "ENOSPC": (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), r"the disk is full \(No space left on device\)"),
    "torch": (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1216 vs 1114"),
              r"the write failed, most likely a full disk \(\[enforce fail at inline_container\.cc:672\] \. unexpected pos 1216 vs 1114\)"),
}


def full_disk_after(monkeypatch, saves: int, error: BaseException) -> None:
    """torch.save writes ``saves`` files, then writes part of the next one and raises ``error``."""
    real, done = torch.save, []

    def save(obj, f):
        if len(done) >= saves:
            f.write(b"partial")
            raise error
        done.append(1)
        real(obj, f)

    monkeypatch.setattr("ptft.reliability.torch.save", save)


@pytest.mark.parametrize("kind", sorted(FULL_DISK))
def test_a_full_disk_is_one_message_naming_the_file_and_the_checkpoint_kept(tmp_path, monkeypatch, kind):
    error, why = FULL_DISK[kind]
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    full_disk_after(monkeypatch, 0, error)
    with pytest.raises(WriteFailedError, match=f"^could not write {re.escape(str(path))}: {why}; the previous {re.escape(str(path))} is intact; "
                                               "the partial new file was removed$") as info:
        atomic_torch_save({"step": 2}, path)
    assert isinstance(info.value, OSError) and info.value.__cause__ is error
    with pytest.raises(WriteFailedError, match=f"^could not write {re.escape(str(tmp_path / 'new.ckpt'))}: {why}; there was no earlier file at that path"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, tmp_path / "new.ckpt")
    assert AtomicCheckpointIO().load_checkpoint(path) == {"step": 1} and os.listdir(tmp_path) == ["last.ckpt"]


@pytest.mark.parametrize("kind", sorted(FULL_DISK))
def test_a_full_disk_during_fit_stops_it_and_keeps_the_last_checkpoint(image_tree, tmp_path, monkeypatch, kind):
    error, why = FULL_DISK[kind]
    folder = tmp_path / "ckpt"
    last = folder / "last.ckpt"
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    checkpoint = ModelCheckpoint(dirpath=folder, save_top_k=0, save_last=True, every_n_train_steps=1)
    trainer = pl.Trainer(max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, callbacks=[checkpoint], default_root_dir=tmp_path)
    full_disk_after(monkeypatch, 1, error)  # step 1's last.ckpt is written, step 2's is not
    with pytest.raises(WriteFailedError, match=f"^could not write {re.escape(str(last))}: {why}; the previous {re.escape(str(last))} is intact"):
        trainer.fit(AutoencoderPretraining(small_encoder(), num_grid_images=0), datamodule=dm)
    assert os.listdir(folder) == ["last.ckpt"] and AtomicCheckpointIO().load_checkpoint(last)["global_step"] == 1


def test_ptft_fit_on_a_full_disk_prints_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    full_disk_after(monkeypatch, 0, FULL_DISK["ENOSPC"][0])
    code, err = run_main(["fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), f"--data.root={tree}",
                          "--data.image_size=16", "--data.num_workers=0", "--trainer.logger=false", "--trainer.max_steps=1",
                          "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false", "--model.num_grid_images=0",
                          f"--trainer.default_root_dir={tmp_path / 'root'}"], capsys)
    assert re.fullmatch(r"ptft: error: could not write \S+\.ckpt: the disk is full \(No space left on device\); "
                        r"there was no earlier file at that path; the partial new file was removed", err.strip()), err
    assert not [p.name for p in tmp_path.rglob("*") if p.suffix == ".ckpt" or ".tmp-" in p.name]  # no checkpoint, no temp file


def test_tasks_use_the_atomic_checkpoint_io_by_default(image_tree, tmp_path):
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path, limit_val_batches=0)
    trainer.fit(AutoencoderPretraining(small_encoder(), num_grid_images=0), datamodule=dm)
    assert type(trainer.strategy.checkpoint_io) is AtomicCheckpointIO
    assert trainer.checkpoint_callback.best_model_path and torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)


def test_a_failed_export_leaves_the_previous_export_intact(tmp_path, monkeypatch):
    first = export_backbone(autoencoder_checkpoint(tmp_path / "a.ckpt", seed=0), tmp_path / "export")
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def failing_fsync(fd):  # the new files are written under temporary names, none renamed yet
        raise OSError("disk full")

    monkeypatch.setattr(ptft.handoff.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        export_backbone(autoencoder_checkpoint(tmp_path / "b.ckpt", seed=1), tmp_path / "export", overwrite=True)
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before  # no temp files, nothing changed
    load_backbone(first)


def test_a_pair_of_files_from_different_exports_is_refused(tmp_path):
    a = export_backbone(autoencoder_checkpoint(tmp_path / "a.ckpt", seed=0), tmp_path / "a")
    b = export_backbone(autoencoder_checkpoint(tmp_path / "b.ckpt", seed=1), tmp_path / "b")
    (a / "backbone.safetensors").write_bytes((b / "backbone.safetensors").read_bytes())  # a crash between the two renames
    with pytest.raises(ConfigError, match="come from different exports"):
        read_backbone(a)


class CreatesAFile:
    """Unpickling this creates ``path``: what a malicious checkpoint could do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def evil(tmp_path):
    """A checkpoint that looks like a ptft one and creates ``marker`` when fully unpickled."""
    path, marker = tmp_path / "evil.ckpt", tmp_path / "pwned"
    model = AutoencoderPretraining(small_encoder())
    torch.save({"state_dict": model.state_dict(), "ptft": {"backbone": model.backbone.spec()}, "payload": CreatesAFile(marker)}, path)
    assert not marker.exists()
    return path, marker


@pytest.fixture(autouse=True)
def torch_would_allow_pickles(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # ptft passes weights_only=True explicitly, which wins


def run_main(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    code = exit_info.value.code
    return code, str(code) if isinstance(code, str) else capsys.readouterr().err


def test_ptft_export_refuses_a_pickle_that_runs_code(evil, tmp_path, capsys):
    path, marker = evil
    code, err = run_main(["export", str(path), str(tmp_path / "out")], capsys)
    assert code == 2 and f"{path}: refusing to load" in err and "weights_only=True" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_model_pretrained_refuses_a_pickle_that_runs_code(evil, tmp_path, capsys):
    path, marker = evil
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    code, err = run_main(["fit", "-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), f"--data.root={tree}",
                          f"--model.pretrained={path}", "--trainer.logger=false"], capsys)
    assert err.startswith(f"ptft: error: model.pretrained: {path}: refusing to load") and err.count("\n") == 1
    assert not marker.exists()
    with pytest.raises(ConfigError, match="refusing to load"):
        Classification(num_classes=3, pretrained=str(path))
    assert not marker.exists()


def test_ckpt_path_refuses_a_pickle_that_runs_code(evil, tmp_path, capsys, monkeypatch):
    path, marker = evil
    monkeypatch.chdir(tmp_path)
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    code, err = run_main(["fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), f"--data.root={tree}",
                          "--data.image_size=16", "--data.num_workers=0", "--trainer.logger=false", f"--ckpt_path={path}"], capsys)
    assert err.startswith(f"ptft: error: {path}: refusing to load") and err.count("\n") == 1
    assert not marker.exists()


def test_trainer_fit_ckpt_path_refuses_a_pickle_that_runs_code(evil, image_tree, tmp_path):
    path, marker = evil
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    with pytest.raises(ConfigError, match="refusing to load"):
        trainer.fit(AutoencoderPretraining(small_encoder()), datamodule=dm, ckpt_path=path)
    assert not marker.exists()


def test_a_zero_byte_checkpoint_is_one_line_naming_it_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "zero.ckpt"
    path.write_bytes(b"")
    code, err = run_main(["export", str(path), str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith(f"ptft export: error: {path}: not a readable checkpoint") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    code, err = run_main(["fit", "-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), f"--data.root={tree}",
                          f"--model.pretrained={path}", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
                          f"--trainer.default_root_dir={tmp_path / 'root'}"], capsys)
    assert err.startswith(f"ptft: error: model.pretrained: {path}: not a readable checkpoint") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "root").exists()
