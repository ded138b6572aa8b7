"""Extending ptft without editing it (docs/extending.md): a pretraining objective, a backbone and a
DataModule, each one file in tests/extensions/, used by class_path through the `ptft` command."""

import csv
import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import TESTS
from helpers import CONFIGS, checkpoint_from, run_ptft
from ptft.cli import main as ptft

ROTATION = TESTS / "extensions" / "rotation.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def oriented_images(rng: np.random.Generator, label: int, count: int, size: int = 20) -> np.ndarray:
    """``(count, size, size, 3)`` uint8 images: a colour per label (for the probe) that darkens
    from top to bottom (so a rotation shows), plus noise."""
    base = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 23 + 160) % 256]) * 0.6 + 100
    ramp = np.linspace(1.0, 0.2, size)[:, None, None]
    return np.clip(base * ramp + rng.normal(0, 12, (count, size, size, 3)), 0, 255).astype(np.uint8)


def make_oriented_tree(root: Path, classes=("cat", "dog", "owl"), per_class=8) -> Path:
    """``root/{train,val}/<class>/<i>.png`` of :func:`oriented_images`."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i, pixels in enumerate(oriented_images(rng, label, per_class)):
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def make_npz_splits(folder: Path, per_class: int = 6) -> list[str]:
    """``folder/{train,val}.npz`` for ArrayImagesDataModule (2 classes, 16 px) and the ``--data`` arguments that read them."""
    rng = np.random.default_rng(1)
    labels = np.arange(2 * per_class) % 2
    for split in ("train", "val"):
        np.savez(folder / f"{split}.npz", images=np.concatenate([oriented_images(rng, label, 1, 16) for label in labels]), labels=labels)
    return ["--data=extensions.array_images.ArrayImagesDataModule", f"--data.train_file={folder / 'train.npz'}",
            f"--data.val_file={folder / 'val.npz'}", "--data.label_names=[light,dark]", "--data.batch_size=4"]


def logged(metrics_csv: Path, key: str) -> list[float]:
    with metrics_csv.open() as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def test_new_objective_backbone_and_datamodule_pretrain_export_probe(tmp_path, monkeypatch):
    tree = make_oriented_tree(tmp_path / "images")
    runs = tmp_path / "runs"
    # The YAML names the objective by class_path (tests/ is on the subprocess's PYTHONPATH); the
    # backbone is swapped for the one-file TinyConvNet on the command line, as any ptft one would be.
    result = run_ptft("fit", "-c", str(ROTATION), f"--data.root={tree}", f"--trainer.logger.init_args.save_dir={runs}",
                      "--model.backbone=extensions.tiny_convnet.TinyConvNet", "--model.backbone.init_args.width=8", *QUIET,
                      cwd=tmp_path)
    metrics = next(runs.glob("lightning_logs/version_*/metrics.csv"))
    losses, accuracy = logged(metrics, "train/loss"), logged(metrics, "val/acc")
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, losses
    assert accuracy[-1] > 0.5, accuracy  # chance: 0.25

    # A backbone spec outside ptft.backbones is only imported from a module the user trusts.
    monkeypatch.setenv("PTFT_TRUSTED_MODULES", "extensions.tiny_convnet")  # also for the probe's subprocess
    export = tmp_path / "export"
    ptft(["export", str(tmp_path / checkpoint_from(result)), str(export)])  # in this process: tests/ is on sys.path here too
    manifest = json.loads((export / "backbone.json").read_text())
    assert manifest["task"] == "extensions.rotation.RotationPretraining"
    assert manifest["modules"] == {"backbone": {"class_path": "extensions.tiny_convnet.TinyConvNet",
                                                "init_args": {"in_channels": 3, "width": 8, "dropout": 0.0}}}  # no rotation head

    # The stock linear-probe config rebuilds the backbone from the export's class_path and loads it
    # strictly; the one-file ArrayImagesDataModule gives it its classes (DataSpec) and batches.
    probe = run_ptft("fit", "-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), f"--model.pretrained={export}",
                     *make_npz_splits(tmp_path), "--trainer.max_epochs=1", "--trainer.logger=false", *QUIET, cwd=tmp_path)
    checkpoint = torch.load(tmp_path / checkpoint_from(probe), weights_only=True)
    assert checkpoint["ptft"]["labels"] == ["light", "dark"] and checkpoint["state_dict"]["head.1.weight"].shape == (2, 16)
    exported = load_file(export / "backbone.safetensors")
    probed = {k.removeprefix("backbone."): v for k, v in checkpoint["state_dict"].items() if k.startswith("backbone.")}
    assert probed.keys() == exported.keys()
    assert all(torch.equal(probed[k], exported[k]) for k in exported)  # frozen, BatchNorm statistics included


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # ptft runs in this process, under pytest's argv
def test_new_datamodule_rejects_a_bad_file_in_one_line_before_writing(tmp_path, capsys):
    data = make_npz_splits(tmp_path)
    np.savez(tmp_path / "gray.npz", images=np.zeros((4, 16, 16), np.uint8), labels=np.zeros(4, np.int64))
    with pytest.raises(SystemExit) as stop:  # in this process: it stops before a trainer is built
        ptft(["fit", "-c", str(ROTATION), *data, f"--data.val_file={tmp_path / 'gray.npz'}",
              f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    message = capsys.readouterr().err
    assert stop.value.code == 2 and message.startswith("ptft: error: data.val_file: ") and "gray.npz: 'images' must be uint8 (N, H, H, 3)" in message
    assert message.count("\n") == 1 and not (tmp_path / "runs").exists()


class NoSpecData(pl.LightningDataModule):
    """A DataModule that forgot its ``spec``."""

    def train_dataloader(self):
        return []


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_a_datamodule_without_a_spec_is_refused_before_writing(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        ptft(["fit", "-c", str(ROTATION), f"--data={__name__}.NoSpecData", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    assert stop.value.code == 2 and "ptft: error: data: NoSpecData has no spec" in capsys.readouterr().err and not (tmp_path / "runs").exists()
