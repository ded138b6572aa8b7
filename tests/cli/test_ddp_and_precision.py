"""Real 2-process DDP (gloo on CPU) through the `ptft` command, and bf16-mixed runs."""

import json
import math

import pytest
import torch

from conftest import make_image_tree
from helpers import CONFIGS, checkpoint_from, run_ptft

PER_CLASS = 8  # 3 classes x 8 = 24 train images: 12 per rank, no padding by the DistributedSampler


def ddp_run(tmp_path, name, config, *extra):
    tree = tmp_path / "tree"
    if not tree.exists():
        make_image_tree(tree, per_class=PER_CLASS)
    out = tmp_path / name
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(out)}})
    result = run_ptft(
        "fit", "-c", str(CONFIGS / config), "-c", str(CONFIGS / "trainer/ddp.yaml"), f"--data.root={tree}",
        "--data.image_size=32", "--data.batch_size=4", "--data.num_workers=0", "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_epochs=2",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path / (name + '_logs')}",
        f"--trainer.callbacks+={recorder}", *extra,
        cwd=tmp_path, timeout=400,
    )
    records = sorted((json.loads(p.read_text()) for p in out.glob("rank*.json")), key=lambda r: r["rank"])
    return result, records


def assert_ranks_agree(records, total=3 * PER_CLASS):
    assert [r["rank"] for r in records] == [0, 1] and all(r["world_size"] == 2 for r in records)
    first, second = (set(r["indices"]) for r in records)
    assert len(first) == len(second) == total // 2
    assert not first & second and first | second == set(range(total))  # disjoint shards covering the data
    assert records[0]["steps"] == records[1]["steps"] == 2 * (total // 2 // 4)
    assert records[0]["weights"] == records[1]["weights"]  # identical parameters on both ranks


def test_ddp_pretraining_then_fine_tuning(tmp_path):
    result, records = ddp_run(tmp_path, "pretrain", "pretrain/autoencoder_imagenette.yaml")
    assert_ranks_agree(records)
    run_ptft("export", checkpoint_from(result), str(tmp_path / "export"), cwd=tmp_path)
    _, records = ddp_run(tmp_path, "finetune", "finetune/imagenette_full.yaml", f"--model.pretrained={tmp_path / 'export'}")
    assert_ranks_agree(records)


def test_ddp_unfreezing_needs_find_unused_parameters(tmp_path):
    with pytest.raises(AssertionError, match="ddp_find_unused_parameters_true"):
        ddp_run(tmp_path, "probe", "finetune/imagenette_linear_probe.yaml", "--model.backbone=ptft.backbones.DCGANEncoder",
                "--model.pretrained=null", "--model.unfreeze_at_epoch=1")
    _, records = ddp_run(tmp_path, "probe", "finetune/imagenette_linear_probe.yaml", "--model.backbone=ptft.backbones.DCGANEncoder",
                         "--model.pretrained=null", "--model.unfreeze_at_epoch=1", "--trainer.strategy=ddp_find_unused_parameters_true")
    assert_ranks_agree(records)


def test_ddp_simclr_gathers_negatives_across_ranks_and_keeps_them_in_step(tmp_path):
    _, records = ddp_run(tmp_path, "simclr", "pretrain/simclr_imagenette.yaml", "--model.backbone=ptft.backbones.DCGANEncoder",
                         "--model.projection_hidden_dim=32", "--model.projection_dim=16", "--model.gather_negatives=true")
    assert_ranks_agree(records)


@pytest.mark.parametrize("config", ["pretrain/autoencoder_imagenette.yaml", "finetune/imagenette_full.yaml", "pretrain/simclr_imagenette.yaml"])
def test_bf16_mixed_on_cpu(tmp_path, config):
    tree = make_image_tree(tmp_path / "tree", per_class=4)
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(tmp_path / "record")}})
    result = run_ptft(
        "fit", "-c", str(CONFIGS / config), "-c", str(CONFIGS / "trainer/cpu.yaml"), "-c", str(CONFIGS / "trainer/bf16.yaml"),
        f"--data.root={tree}", "--data.image_size=32", "--data.batch_size=4", "--data.num_workers=0",
        "--model.backbone=ptft.backbones.DCGANEncoder", *(["--model.pretrained=null"] if "finetune" in config else []),
        "--trainer.max_steps=3",
        "--trainer.log_every_n_steps=1", "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}", f"--trainer.callbacks+={recorder}", "--trainer.enable_progress_bar=false",
        cwd=tmp_path,
    )
    record = json.loads((tmp_path / "record/rank0.json").read_text())
    assert record["precision"] == "bf16-mixed" and record["output_dtype"] == "torch.bfloat16"
    rows = next(tmp_path.glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()
    column = rows[0].split(",").index("train/loss")
    losses = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    state = torch.load(checkpoint_from(result), weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
