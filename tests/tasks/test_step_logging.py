import pytorch_lightning as pl
import torch

from conftest import make_image_tree, small_encoder
from ptft.data import ImageFolderDataModule
from ptft.tasks import Classification


class LastLoss(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.loss = outputs["loss"].detach()


def test_per_step_training_values_are_recorded_on_logged_steps_epoch_ends_and_the_last_batch(tmp_path, monkeypatch):
    recorded = []
    lightning_log = pl.LightningModule.log

    def spy(module, name, value, *args, **kwargs):
        recorded.append((name, module.trainer.fit_loop.epoch_loop._batches_that_stepped))
        return lightning_log(module, name, value, *args, **kwargs)

    monkeypatch.setattr(pl.LightningModule, "log", spy)
    pl.seed_everything(0)
    tree = make_image_tree(tmp_path / "images", per_class=16)  # 48 images: 6 batches of 8 per epoch
    data = ImageFolderDataModule(root=str(tree), image_size=16, batch_size=8, num_workers=0)
    model = Classification(num_classes=3, backbone=small_encoder(), mode="full")
    last = LastLoss()
    trainer = pl.Trainer(max_steps=11, log_every_n_steps=4, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[last])
    trainer.fit(model, datamodule=data)
    # batches 3 and 7 are logger steps (every 4th), 5 ends epoch 0, 10 is the run's last (max_steps 11)
    assert [b for name, b in recorded if name == "train/loss"] == [3, 5, 7, 10]
    assert [b for name, b in recorded if name == "train/acc"] == list(range(11))  # an epoch-level value sees every step
    torch.testing.assert_close(trainer.callback_metrics["train/loss"], last.loss)
