"""MAE through the `ptft` command: pretrain -> export -> fine-tune with layer decay, 2-process DDP, bf16."""

import csv
import json
import math

import pytest
import torch

from conftest import make_image_tree
from helpers import CONFIGS, checkpoint_from, run_ptft
from ptft.backbones import ViT
from ptft.cli import main, run_cli

PER_CLASS = 8
VIT = ["--model.backbone.init_args.image_size=16", "--model.backbone.init_args.patch_size=4", "--model.backbone.init_args.depth=2",
       "--model.backbone.init_args.width=32", "--model.backbone.init_args.heads=2"]
TINY = ["--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0", "--trainer.enable_progress_bar=false",
        "--trainer.log_every_n_steps=1"]


def mae_fit(tmp_path, name, *extra, config="pretrain/mae_imagenette.yaml", vit=VIT):
    tree = tmp_path / "tree"
    if not tree.exists():
        make_image_tree(tree, per_class=PER_CLASS)
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(tmp_path / name / "record")}})
    result = run_ptft("fit", "-c", str(CONFIGS / config), f"--data.root={tree}", *TINY, *vit,
                      "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path / name}",
                      f"--trainer.callbacks+={recorder}", *extra, cwd=tmp_path, timeout=400)
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / name / "record").glob("rank*.json")), key=lambda r: r["rank"])
    return result, records


def metric(tmp_path, name, key):
    rows = [r.split(",") for r in next((tmp_path / name).glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()]
    return [float(r[rows[0].index(key)]) for r in rows[1:] if r[rows[0].index(key)]]


def test_mae_pretrain_then_fine_tune_with_layer_decay(tmp_path):
    result, _ = mae_fit(tmp_path, "pre", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--trainer.max_steps=12")
    assert all(math.isfinite(v) for v in metric(tmp_path, "pre", "train/loss"))
    run_ptft("export", checkpoint_from(result), str(tmp_path / "export"), cwd=tmp_path)
    result, _ = mae_fit(tmp_path, "ft", "-c", str(CONFIGS / "trainer/cpu.yaml"), f"--model.pretrained={tmp_path / 'export'}",
                        "--trainer.max_epochs=2", config="finetune/imagenette_from_mae.yaml", vit=())  # the pretrained ViT as it is
    assert len(metric(tmp_path, "ft", "val/acc")) == 2
    lrs = {k: v for k, v in zip(*[r.split(",") for r in next((tmp_path / "ft").glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()[:2]])}
    assert "lr-AdamW/backbone.0" in lrs and "lr-AdamW/head" in lrs  # one LR per depth, logged by LearningRateMonitor
    state = torch.load(checkpoint_from(result), weights_only=True)
    vit = state["ptft"]["modules"]["backbone"]["init_args"]
    assert (vit["patch_size"], vit["width"], vit["drop_path"]) == (4, 32, 0.1)  # pretrained patch 4 and width, the config's drop path


def test_fine_tuning_schedule_spans_max_steps(tmp_path):
    """`ptft fit -c configs/finetune/imagenette_from_mae.yaml --trainer.max_steps=N`: warmup (10%) and cosine over exactly N steps."""
    steps = 20
    mae_fit(tmp_path, "ft", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--model.pretrained=null", f"--trainer.max_steps={steps}",
            "--trainer.limit_val_batches=1", config="finetune/imagenette_from_mae.yaml", vit=("--model.backbone=ptft.backbones.ViT", *VIT))
    rows = list(csv.DictReader(next((tmp_path / "ft").glob("lightning_logs/version_0/metrics.csv")).open()))
    lrs = {int(r["step"]): float(r["lr-AdamW/head"]) for r in rows if r.get("lr-AdamW/head")}  # the LR each step ran with
    assert {float(r["lr-AdamW/head.no_decay"]) for r in rows if r.get("lr-AdamW/head.no_decay")} == set(lrs.values())
    warmup, peak = 2, 1e-3  # 10% of 20 steps; the optimizer's lr
    expected = [peak * (s + 1) / (warmup + 1) if s < warmup else peak * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup)))
                for s in range(steps)]
    assert list(lrs) == list(range(steps)) and list(lrs.values()) == pytest.approx(expected)


def test_mae_two_process_ddp_and_bf16(tmp_path):
    _, records = mae_fit(tmp_path, "ddp", "-c", str(CONFIGS / "trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2",
                         "--trainer.max_epochs=2", "--trainer.max_steps=-1", "--model.lr_scheduler=null",
                         '--trainer.callbacks+={"class_path": "ptft.callbacks.KNNMonitor", "init_args": {"k": 5}}')
    assert [r["rank"] for r in records] == [0, 1]
    first, second = (set(r["indices"]) for r in records)
    assert not first & second and len(first | second) == 3 * PER_CLASS
    assert records[0]["weights"] == records[1]["weights"]
    knn = metric(tmp_path, "ddp", "val/knn_acc")  # features of both ranks' shards gathered
    assert len(knn) == 2 and all(0 <= v <= 1 for v in knn)
    _, records = mae_fit(tmp_path, "bf16", "-c", str(CONFIGS / "trainer/cpu.yaml"), "-c", str(CONFIGS / "trainer/bf16.yaml"),
                         "--trainer.max_steps=4", "--model.lr_scheduler=null")
    assert records[0]["precision"] == "bf16-mixed"
    assert all(math.isfinite(v) for v in metric(tmp_path, "bf16", "train/loss"))


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # built in this process, under pytest's argv
def test_data_image_size_alone_sizes_the_vit_and_an_explicit_conflict_is_refused(tmp_path, capsys):
    tree = make_image_tree(tmp_path / "tree", per_class=1, size=(8, 8))
    config = ["-c", str(CONFIGS / "pretrain/mae_imagenette.yaml"), f"--data.root={tree}", "--data.image_size=32", "--data.num_workers=0"]
    cli = run_cli([*config, "--trainer.logger=false"], run=False)
    assert isinstance(cli.model.backbone, ViT) and cli.model.backbone.grid == (4, 4)  # 32 px in patches of 8
    assert cli.model.backbone.spec()["init_args"]["image_size"] == 32
    cli.model.check_data(cli.datamodule.spec)
    with pytest.raises(SystemExit) as stop:
        main(["fit", *config, "--model.backbone.init_args.image_size=64", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}"])
    assert stop.value.code == 2 and capsys.readouterr().err == ("ptft: error: data.image_size=32 but the ViT backbone has "
                                                                "image_size=64; set model.backbone.init_args.image_size=32\n")
    assert not (tmp_path / "runs").exists()
