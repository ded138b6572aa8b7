"""GAN pretraining through the `ptft` command: 2-process DDP, bf16, `ptft sample`, fine-tuning from the GAN."""

import json
import math

import pytest
import torch
from PIL import Image

from conftest import make_image_tree
from helpers import CONFIGS, checkpoint_from, run_ptft

PER_CLASS = 8  # 24 train images: 12 per rank under DDP
TINY = ["--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0", "--trainer.enable_progress_bar=false",
        "--model.backbone.init_args.base_width=8", "--model.backbone.init_args.num_layers=2", "--model.generator_width=8",
        "--model.latent_dim=16", "--model.num_grid_images=4", "--trainer.log_every_n_steps=1"]


def gan_fit(tmp_path, name, config, *extra, timeout=300):
    tree = tmp_path / "tree"
    if not tree.exists():
        make_image_tree(tree, per_class=PER_CLASS)
    recorder = json.dumps({"class_path": "ddp_recorder.RecordRank", "init_args": {"out_dir": str(tmp_path / name / "record")}})
    result = run_ptft(
        "fit", "-c", str(CONFIGS / "pretrain" / config), f"--data.root={tree}", *TINY,
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger", f"--trainer.logger.save_dir={tmp_path / name}",
        f"--trainer.callbacks+={recorder}", *extra, cwd=tmp_path, timeout=timeout,
    )
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / name / "record").glob("rank*.json")), key=lambda r: r["rank"])
    return result, records


def logged(tmp_path, name, key):
    rows = [r.split(",") for r in next((tmp_path / name).glob("lightning_logs/version_0/metrics.csv")).read_text().splitlines()]
    column = rows[0].index(key)
    return [float(r[column]) for r in rows[1:] if r[column]]


@pytest.mark.parametrize("config", ["gan_imagenette.yaml", "wgan_gp_imagenette.yaml"])
def test_two_process_ddp_keeps_generator_and_discriminator_identical_on_both_ranks(tmp_path, config):
    # plain `ddp` (find_unused_parameters=False), the strategy Lightning's own GAN example fails under
    _, records = gan_fit(tmp_path, "ddp", config, "-c", str(CONFIGS / "trainer/ddp.yaml"), "--trainer.accelerator=cpu",
                         "--trainer.devices=2", "--trainer.max_epochs=2", "--trainer.max_steps=-1", timeout=400)
    assert [r["rank"] for r in records] == [0, 1] and all(r["world_size"] == 2 for r in records)
    first, second = (set(r["indices"]) for r in records)
    assert not first & second and len(first | second) == 3 * PER_CLASS  # disjoint shards covering the data
    batches = 2 * (3 * PER_CLASS // 2 // 4)
    n_critic = 5 if config.startswith("wgan") else 1
    assert records[0]["steps"] == records[1]["steps"] == batches + batches // n_critic
    assert records[0]["weights"] == records[1]["weights"]  # discriminator, generator and EMA agree bit for bit


def test_bf16_mixed_gan_with_gradient_penalty_is_finite(tmp_path):
    result, records = gan_fit(tmp_path, "bf16", "wgan_gp_imagenette.yaml", "-c", str(CONFIGS / "trainer/cpu.yaml"),
                              "-c", str(CONFIGS / "trainer/bf16.yaml"), "--trainer.max_steps=12", "--model.n_critic=2")
    assert records[0]["precision"] == "bf16-mixed" and records[0]["output_dtype"] == "torch.bfloat16"
    for key in ("train/d_loss", "train/g_loss", "train/gradient_penalty"):
        values = logged(tmp_path, "bf16", key)
        assert values and all(math.isfinite(v) for v in values), key
    state = torch.load(checkpoint_from(result), weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.fixture(scope="module")
def gan_checkpoint(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gan")
    result, _ = gan_fit(tmp_path, "run", "dcgan_imagenette.yaml", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--trainer.max_steps=6")
    return checkpoint_from(result), tmp_path


def test_sample_writes_the_requested_images_and_a_grid(gan_checkpoint, tmp_path):
    checkpoint, _ = gan_checkpoint
    result = run_ptft("sample", checkpoint, "--num", "10", "--out", str(tmp_path / "samples"), "--batch_size", "4", cwd=tmp_path)
    files = sorted((tmp_path / "samples").glob("sample_*.png"))
    assert [f.name for f in files] == [f"sample_{i:05d}.png" for i in range(10)]
    assert all(Image.open(f).size == (16, 16) and Image.open(f).mode == "RGB" for f in files)
    assert Image.open(tmp_path / "samples/grid.png").size == (4 * 17 + 1, 3 * 17 + 1)  # 10 images, 4 per row, 1 px padding
    assert "wrote 10 samples" in result.stdout
    again = run_ptft("sample", checkpoint, "--num", "3", "--out", str(tmp_path / "samples"), cwd=tmp_path, check=False)
    assert again.returncode == 2 and "already holds samples; pass --overwrite" in again.stderr
    assert len(list((tmp_path / "samples").glob("sample_*.png"))) == 10  # nothing replaced


def test_sample_refuses_a_checkpoint_that_is_not_a_gan(tmp_path):
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    result = run_ptft("fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
                      f"--data.root={tree}", "--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0",
                      "--model.backbone.init_args.num_layers=2", "--trainer.max_steps=1", "--trainer.enable_progress_bar=false",
                      "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}", cwd=tmp_path)
    refused = run_ptft("sample", checkpoint_from(result), "--out", str(tmp_path / "s"), cwd=tmp_path, check=False)
    assert refused.returncode == 2
    assert "is not a GAN checkpoint (ptft.tasks.autoencoder.AutoencoderPretraining)" in refused.stderr
    assert not (tmp_path / "s").exists()
    missing = run_ptft("sample", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "s"), cwd=tmp_path, check=False)
    assert missing.returncode == 2 and f"checkpoint {tmp_path / 'none.ckpt'} does not exist" in missing.stderr


def test_linear_probe_from_the_gan_checkpoint(gan_checkpoint, tmp_path):
    checkpoint, run_dir = gan_checkpoint
    result = run_ptft("fit", "-c", str(CONFIGS / "finetune/imagenette_from_gan.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
                      f"--data.root={run_dir / 'tree'}", "--data.image_size=16", "--data.batch_size=8", "--data.num_workers=0",
                      f"--model.pretrained={checkpoint}", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
                      "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}", cwd=tmp_path)
    probe = torch.load(checkpoint_from(result), weights_only=True)
    gan = torch.load(checkpoint, weights_only=True)["state_dict"]
    frozen = {k: v for k, v in probe["state_dict"].items() if k.startswith("backbone.")}
    assert frozen and all(torch.equal(v, gan[k]) for k, v in frozen.items() if "running" not in k)  # a linear probe leaves the trunk as it was


def test_bad_n_critic_is_one_line_naming_the_key(tmp_path):
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    result = run_ptft("fit", "-c", str(CONFIGS / "pretrain/gan_imagenette.yaml"), f"--data.root={tree}", "--model.n_critic=0",
                      cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("ptft: error: model.n_critic must be an integer >= 1")
    assert not (tmp_path / "runs").exists()


def test_image_size_the_generator_cannot_make_is_one_line(tmp_path):
    tree = make_image_tree(tmp_path / "tree", per_class=2)
    result = run_ptft("fit", "-c", str(CONFIGS / "pretrain/gan_imagenette.yaml"), f"--data.root={tree}", "--data.image_size=48",
                      cwd=tmp_path, check=False)
    assert result.returncode == 2 and "cannot produce 48 px images" in result.stderr.strip().splitlines()[-1]
