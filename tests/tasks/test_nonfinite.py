"""The non-finite guard (a callback) every PtftTask with automatic optimisation gets."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from conftest import small_encoder
from ptft.backbones import ViT
from ptft.callbacks import NonFiniteGuard
from ptft.data import ImageFolderDataModule
from ptft.errors import DivergenceError
from ptft.tasks import AutoencoderPretraining, Classification, MaskedAutoencoderPretraining
from reliability_callbacks import PoisonBatch, state_digest

TASKS = {
    "autoencoder": lambda **kw: AutoencoderPretraining(small_encoder(), num_grid_images=0, **kw),
    "mae": lambda **kw: MaskedAutoencoderPretraining(ViT(image_size=16, patch_size=4, depth=1, width=32, heads=2),
                                                     decoder_width=32, decoder_depth=1, decoder_heads=2, num_grid_images=0, **kw),
    "finetune": lambda **kw: Classification(num_classes=3, backbone=small_encoder(), **kw),
}


def fit(model, tree, tmp_path, callbacks=(), **trainer_kwargs):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(tree), image_size=16, batch_size=8, num_workers=0)
    trainer = pl.Trainer(max_steps=5, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, limit_val_batches=0, callbacks=list(callbacks), **trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    return trainer


@pytest.mark.parametrize("task", TASKS)
def test_a_nan_loss_stops_the_run_naming_the_step_and_last_ckpt_stays_finite(task, image_tree, tmp_path):
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_last=True)
    with pytest.raises(DivergenceError, match=r"train/loss is not finite \(nan\) at step 2, epoch 0: stopped; that step's update is never saved"):
        fit(TASKS[task](), image_tree, tmp_path, callbacks=[checkpoints, PoisonBatch(at=2)], enable_checkpointing=True)
    saved = torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


class CheckSkippedStep(pl.Callback):
    """Snapshots weights, buffers and optimizer state around the poisoned step."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.before = self.after = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            self.before = state_digest(pl_module), repr(trainer.optimizers[0].state_dict()["state"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.before is not None and self.after is None:
            self.after = state_digest(pl_module), repr(trainer.optimizers[0].state_dict()["state"])


@pytest.mark.parametrize("task, precision", [("autoencoder", "32-true"), ("mae", "32-true"), ("finetune", "32-true"), ("autoencoder", "bf16-mixed")])
def test_skip_mode_leaves_weights_buffers_and_optimizer_unchanged_and_counts(task, precision, image_tree, tmp_path):
    check = CheckSkippedStep(at=2)
    # PoisonBatch runs first: the NaN batch is the one CheckSkippedStep brackets.
    with pytest.warns(UserWarning, match=r"train/loss is not finite \(nan\) at step 2.*step skipped \(1 so far\)"):
        trainer = fit(TASKS[task](on_nonfinite="skip"), image_tree, tmp_path, callbacks=[PoisonBatch(at=2), check], precision=precision)
    (weights_before, optimizer_before), (weights_after, optimizer_after) = check.before, check.after
    assert weights_before.keys() == weights_after.keys()
    for name in weights_before:  # parameters and buffers (BatchNorm statistics saw the NaN batch and were put back)
        assert torch.equal(weights_before[name], weights_after[name]), name
    assert optimizer_before == optimizer_after
    model = trainer.lightning_module
    guard = next(cb for cb in trainer.callbacks if isinstance(cb, NonFiniteGuard))  # every task adds it
    assert guard.skipped_steps == 1 and trainer.callback_metrics["train/skipped_steps"].item() == 1
    assert trainer.global_step == 5  # the run went on to max_steps
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bf16_raise_mode(image_tree, tmp_path):
    with pytest.raises(DivergenceError, match=r"train/loss is not finite \(nan\) at step 1"):
        fit(TASKS["autoencoder"](), image_tree, tmp_path, callbacks=[PoisonBatch(at=1)], precision="bf16-mixed")


def test_a_subclass_gets_the_guard_without_calling_anything(image_tree, tmp_path):
    class InfAtStep1(AutoencoderPretraining):  # like a new task: overrides training_step, calls super()
        nonfinite_loss_name = "train/my_loss"

        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return {"loss": loss * float("inf")} if self.trainer.global_step == 1 else {"loss": loss}

    with pytest.raises(DivergenceError, match=r"train/my_loss is not finite \(inf\) at step 1"):
        fit(InfAtStep1(small_encoder(), num_grid_images=0), image_tree, tmp_path)


def test_on_nonfinite_is_validated():
    with pytest.raises(ValueError, match="model.on_nonfinite must be 'raise' or 'skip'"):
        TASKS["autoencoder"](on_nonfinite="ignore")


def test_a_nan_at_the_last_step_still_stops_the_run(image_tree, tmp_path):
    # raise mode reads each loss when the next step starts; the run's last step is read when training ends
    with pytest.raises(DivergenceError, match=r"train/loss is not finite \(nan\) at step 4, epoch \d"):
        fit(TASKS["autoencoder"](), image_tree, tmp_path, callbacks=[PoisonBatch(at=4)])
