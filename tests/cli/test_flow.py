"""pretrain -> export -> fine-tune through the `ptft` command, as the README shows it."""

import json
import re

import pytest
import yaml

from conftest import make_image_tree
from helpers import CONFIGS, checkpoint_from, run_ptft

TINY = ["--data.image_size=32", "--data.batch_size=8", "--data.num_workers=0", "--trainer.enable_progress_bar=false"]


@pytest.fixture
def cifar_style_tree(tmp_path):
    return make_image_tree(tmp_path / "cifar", splits=("train", "test"), per_class=6)


def test_pretrain_export_finetune_on_another_tree(tmp_path, cifar_style_tree):
    data = [f"--data.root={cifar_style_tree}", "--data.val_split=test", *TINY]
    runs = tmp_path / "runs"
    pretrain = ["fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), *data, "--trainer.max_steps=3",
                f"--trainer.logger.init_args.save_dir={runs}"]
    first = run_ptft(*pretrain, cwd=tmp_path)
    second = run_ptft(*pretrain, cwd=tmp_path)  # a second run in the same folder must not crash
    configs = sorted(runs.glob("ptft/*/config.yaml"))  # each W&B run's config next to its checkpoints
    assert len(configs) == 2 and len(list(runs.glob("wandb/offline-run-*"))) == 2
    assert all((c.parent / "checkpoints" / "last.ckpt").is_file() for c in configs)
    assert yaml.safe_load(configs[0].read_text())["data"]["init_args"]["val_split"] == "test"
    checkpoint = checkpoint_from(second)
    assert checkpoint != checkpoint_from(first) and checkpoint.endswith("last.ckpt")

    run_ptft("export", checkpoint, str(tmp_path / "export"), cwd=tmp_path)
    assert json.loads((tmp_path / "export/backbone.json").read_text())["modules"]["backbone"]["class_path"] == "ptft.backbones.dcgan.DCGANEncoder"

    for config in ("finetune/imagenette_linear_probe.yaml", "finetune/imagenette_full.yaml"):
        result = run_ptft("fit", "-c", str(CONFIGS / config), *data, f"--model.pretrained={tmp_path / 'export'}",
                          "--trainer.max_epochs=1", f"--trainer.logger.init_args.save_dir={tmp_path / 'ft'}", cwd=tmp_path)
        assert checkpoint_from(result).endswith("last.ckpt")
    result = run_ptft("validate", "-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *data,
                      f"--model.pretrained={tmp_path / 'export'}", "--trainer.logger=false", cwd=tmp_path)
    assert "val/acc" in result.stdout


def test_csv_and_tensorboard_loggers_with_repeated_runs(tmp_path, cifar_style_tree):
    for logger in ("CSVLogger", "TensorBoardLogger"):
        for _ in range(2):
            run_ptft("fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), f"--data.root={cifar_style_tree}",
                     "--data.val_split=test", *TINY, "--trainer.max_steps=2",
                     f"--trainer.logger=pytorch_lightning.loggers.{logger}", f"--trainer.logger.save_dir={tmp_path / logger}",
                     cwd=tmp_path)
        assert len(list((tmp_path / logger).glob("lightning_logs/version_*/config.yaml"))) == 2
    assert list((tmp_path / "CSVLogger").glob("lightning_logs/version_*/images/val_reconstructions_step2.png"))
    assert list((tmp_path / "TensorBoardLogger").glob("lightning_logs/version_*/events.out.tfevents.*"))


def _empty_split(tree):
    for image in (tree / "test").rglob("*.jpg"):
        image.unlink()


def _corrupt_image(tree):
    (tree / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")


def _mismatched_export(tree):
    from ptft.backbones import ResNet

    export = tree.parent / "resnet_export"
    export.mkdir()
    (export / "backbone.json").write_text(json.dumps(ResNet().spec()))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ResNet().state_dict().items()}, export / "backbone.safetensors")
    return ["--model.backbone=ptft.backbones.DCGANEncoder", f"--model.pretrained={export}"]


@pytest.mark.parametrize("config, breakage, message", [
    ("pretrain/autoencoder_imagenette.yaml", lambda tree: [f"--data.root={tree / 'nope'}"], "data.root: .*nope is not a folder"),
    ("pretrain/autoencoder_imagenette.yaml", lambda tree: _empty_split(tree), "data.val_split: no images in .*test"),
    ("pretrain/autoencoder_imagenette.yaml", lambda tree: _corrupt_image(tree), "broken.jpg: cannot read image"),
    ("pretrain/autoencoder_imagenette.yaml", lambda tree: ["--data.image_size=30"], "data.image_size=30 is not a multiple"),
    ("finetune/imagenette_linear_probe.yaml", lambda tree: [f"--model.pretrained={tree / 'missing'}"],
     "model.pretrained: .*missing does not exist"),
    ("finetune/imagenette_linear_probe.yaml", _mismatched_export, "model.pretrained: .*holds a ptft.backbones.resnet.ResNet"),
])
def test_bad_input_is_one_line_before_training_and_writes_nothing(tmp_path, cifar_style_tree, config, breakage, message):
    extra = breakage(cifar_style_tree) or []
    runs = tmp_path / "runs"
    result = run_ptft("fit", "-c", str(CONFIGS / config), f"--data.root={cifar_style_tree}", "--data.val_split=test", *TINY,
                      f"--trainer.logger.init_args.save_dir={runs}", *extra, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("ptft: error: ")]
    assert len(error_lines) == 1 and re.search(message, error_lines[0]), result.stderr[-2000:]
    assert not runs.exists()  # no run folder, no checkpoint
