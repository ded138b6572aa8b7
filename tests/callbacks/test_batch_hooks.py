import pytorch_lightning as pl
from pytorch_lightning.profilers import SimpleProfiler

from conftest import make_image_tree, small_encoder
from ptft.callbacks import NonFiniteGuard, RNGStates
from ptft.callbacks.batch_hooks import skip_unimplemented_batch_hooks
from ptft.data import ImageFolderDataModule
from ptft.tasks import Classification


class CountBatches(pl.Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches += 1


def test_lightning_calls_only_the_batch_hooks_a_callback_implements(tmp_path):
    tree = make_image_tree(tmp_path / "images", per_class=8)
    data = ImageFolderDataModule(root=str(tree), image_size=16, batch_size=8, num_workers=0)
    count, profiler = CountBatches(), SimpleProfiler()
    trainer = pl.Trainer(max_steps=5, logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         default_root_dir=tmp_path, callbacks=[count], profiler=profiler)
    trainer.fit(Classification(num_classes=3, backbone=small_encoder(), mode="full"), datamodule=data)
    called = {name for name in profiler.recorded_durations if name.startswith("[Callback]")}
    # on_before_backward: of the run's callbacks, only the non-finite guard implements it
    assert sorted(name.split("]")[1] for name in called if name.endswith(".on_before_backward")) == ["NonFiniteGuard.on_before_backward"]
    # on_train_batch_end: the counter, the checkpoint, the non-finite guard and the preemption check; RNGStates and the others are skipped
    assert sorted(name.split("]")[1].split("{")[0].split(".")[0] for name in called if name.endswith(".on_train_batch_end")) == [
        "CountBatches", "ModelCheckpoint", "NonFiniteGuard", "PreemptionCheckpoint"]
    assert count.batches == 5
    rng = next(c for c in trainer.callbacks if isinstance(c, RNGStates))
    assert rng.on_train_batch_end is None and rng.on_save_checkpoint is not None  # checkpoint hooks are called directly: kept


def test_an_instance_override_and_a_subclass_override_are_kept():
    class Subclass(RNGStates):
        def on_after_backward(self, trainer, pl_module):
            pass

    guard, sub, patched = NonFiniteGuard(), Subclass(), RNGStates()
    patched.on_train_batch_start = print
    skip_unimplemented_batch_hooks([guard, sub, patched])
    assert callable(guard.on_before_backward) and guard.on_before_zero_grad is None
    assert callable(sub.on_after_backward) and sub.on_before_backward is None
    assert patched.on_train_batch_start is print
