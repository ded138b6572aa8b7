"""OnlineLinearProbe: a classifier on detached backbone features, trained alongside pretraining."""

import csv
import json
import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from conftest import make_image_tree, small_encoder
from helpers import AUTOENCODER, CONFIGS, run_ptft
from ptft.callbacks import OnlineLinearProbe
from ptft.data import ImageFolderDataModule
from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.backbones import DCGANEncoder, ViT
from ptft.tasks import AutoencoderPretraining, GANPretraining, MaskedAutoencoderPretraining


def fit(image_tree, root, callbacks=(), max_steps=-1, epochs=1, ckpt_path=None, **trainer_kwargs):
    pl.seed_everything(0)
    model = AutoencoderPretraining(small_encoder(), corruption="gaussian")  # draws from the global random stream every step
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0, train_augment="flip")
    options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = pl.Trainer(max_epochs=epochs, max_steps=max_steps, callbacks=list(callbacks), default_root_dir=root, **{**options, **trainer_kwargs})
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, model


def test_the_probe_learns_and_logs_during_pretraining(image_tree, tmp_path):
    probe = OnlineLinearProbe(lr=0.02)
    trainer, model = fit(image_tree, tmp_path, [probe], epochs=8)
    assert trainer.callback_metrics["val/online_acc"].item() > 0.8  # chance is 1/3; the classes differ in colour
    assert "train/online_loss" in trainer.callback_metrics
    assert model.backbone.training and all(m.training for m in model.backbone.modules())  # modes restored after the probe


def test_the_probe_does_not_change_the_pretraining(image_tree, tmp_path):
    _, plain = fit(image_tree, tmp_path / "plain", max_steps=5, epochs=2)
    _, probed = fit(image_tree, tmp_path / "probed", [OnlineLinearProbe(lr=0.02)], max_steps=5, epochs=2)
    for key, value in plain.state_dict().items():  # backbone weights and BatchNorm statistics, decoder: all identical
        assert torch.equal(value, probed.state_dict()[key]), key


def test_the_probe_resumes_exactly_from_a_checkpoint(image_tree, tmp_path):
    def run(name, ckpt_path=None):  # 2 epochs of 3 batches, a checkpoint every 2 steps (mid-epoch at step 2)
        probe = OnlineLinearProbe(lr=0.02, optimizer="sgd")
        saver = ModelCheckpoint(dirpath=tmp_path / name, every_n_train_steps=2, save_top_k=-1, filename="{step}")
        _, model = fit(image_tree, tmp_path, [probe, saver], max_steps=6, epochs=2, ckpt_path=ckpt_path, enable_checkpointing=True)
        return probe, model

    whole, whole_model = run("whole")
    checkpoint = tmp_path / "whole" / "step=2.ckpt"
    state = torch.load(checkpoint, weights_only=True)["callbacks"]["OnlineLinearProbe"]
    assert set(state) == {"classifier", "optimizer"}
    resumed, resumed_model = run("resumed", checkpoint)
    assert all(torch.equal(v, resumed_model.state_dict()[k]) for k, v in whole_model.state_dict().items())  # the pretraining resumed exactly
    for key, value in whole.classifier.state_dict().items():  # and so did the probe
        assert torch.equal(value, resumed.classifier.state_dict()[key]), key
    momentum = [s["momentum_buffer"] for s in resumed.optimizer.state.values()]
    assert all(torch.equal(a, s["momentum_buffer"]) for a, s in zip(momentum, whole.optimizer.state.values()))


@pytest.mark.parametrize("task", ["gan", "mae"])
def test_the_probe_runs_with_other_pretraining_tasks(task, image_tree, tmp_path):
    # the GAN optimizes manually (two optimizer steps per batch), the MAE's ViT pools its class token
    pl.seed_everything(0)
    if task == "gan":
        model = GANPretraining(DCGANEncoder(base_width=8, num_layers=2, norm="none"), image_size=16, latent_dim=16, generator_width=8, num_grid_images=0)
    else:
        vit = ViT(image_size=16, patch_size=4, depth=1, width=32, heads=2)
        model = MaskedAutoencoderPretraining(vit, decoder_width=32, decoder_depth=1, decoder_heads=2, num_grid_images=0)
    probe = OnlineLinearProbe(lr=0.02)
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[probe],
                         default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert 0 <= trainer.callback_metrics["val/online_acc"].item() <= 1
    assert [int(s["step"]) for s in probe.optimizer.state.values()] == [6, 6]  # one probe step per training batch


class Unlabelled(pl.LightningDataModule):
    """Random images labelled -1 (unlabelled), with or without classes in the spec."""

    def __init__(self, num_classes):
        super().__init__()
        self.spec = DataSpec("image", num_classes=num_classes, image_size=16)
        self.data = TensorDataset(torch.randn(16, 3, 16, 16), torch.full((16,), -1))

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=8)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=8)


@pytest.mark.parametrize("num_classes, why", [(None, "the data has no classes"), (3, "the first training batch has no labels")])
def test_without_labels_the_probe_turns_itself_off_with_one_warning(num_classes, why, tmp_path):
    probe = OnlineLinearProbe()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[probe],
                         default_root_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(AutoencoderPretraining(small_encoder()), datamodule=Unlabelled(num_classes))
    messages = [str(w.message) for w in caught if "OnlineLinearProbe" in str(w.message)]
    assert len(messages) == 1 and why in messages[0]
    assert "val/online_acc" not in trainer.callback_metrics and "train/online_loss" not in trainer.callback_metrics


def test_multi_view_batches_probe_the_first_view():
    views, labels = [torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)], torch.tensor([0, 1])
    images, got = OnlineLinearProbe()._split((views, labels))
    assert images is views[0] and got is labels


def test_bad_probe_settings_are_named():
    with pytest.raises(ConfigError, match="optimizer must be 'adam' or 'sgd'"):
        OnlineLinearProbe(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="lr > 0"):
        OnlineLinearProbe(lr=0)


def test_ddp_keeps_the_classifier_identical_on_both_ranks(tmp_path):
    tree = make_image_tree(tmp_path / "tree", per_class=8)  # 24 images: 12 per rank, 3 batches of 4 each
    probe = json.dumps({"class_path": "ptft.callbacks.OnlineLinearProbe", "init_args": {"lr": 0.02}})
    recorder = json.dumps({"class_path": "probe_recorder.RecordProbe", "init_args": {"out_dir": str(tmp_path / "record")}})
    run_ptft("fit", "-c", str(AUTOENCODER), "-c", str(CONFIGS / "trainer/ddp.yaml"), f"--data.root={tree}", "--data.image_size=16",
             "--data.batch_size=4", "--data.num_workers=0", "--model.backbone.init_args.num_layers=2", "--model.backbone.init_args.base_width=8",
             "--model.decoder_width=8", "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_epochs=2", "--trainer.max_steps=-1",
             "--trainer.enable_progress_bar=false", "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
             f"--trainer.logger.save_dir={tmp_path / 'logs'}", f"--trainer.callbacks+={probe}", f"--trainer.callbacks+={recorder}",
             cwd=tmp_path, timeout=400)
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / "record").glob("rank*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in records] == [0, 1]
    assert records[0]["classifier"] == records[1]["classifier"]  # the ranks saw different batches, yet agree
    assert records[0]["probe_steps"] == records[1]["probe_steps"] == [6, 6] and records[0]["steps"] == 6
    rows = list(csv.DictReader(next((tmp_path / "logs").rglob("metrics.csv")).open()))
    accuracies = [float(r["val/online_acc"]) for r in rows if r.get("val/online_acc")]
    assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies)
