"""Per-batch callback hooks that Lightning need not call: those a callback leaves as the base class's no-op."""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl

BATCH_HOOKS = (
    "on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad", "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end",
    "on_predict_batch_start", "on_predict_batch_end",
)


def skip_unimplemented_batch_hooks(callbacks: Iterable[pl.Callback]) -> None:
    """Lightning calls every per-batch hook of every callback on every batch, each through its profiler
    (6 calls per callback in a training step, a few microseconds each), also when the callback keeps
    ``pl.Callback``'s no-op. It skips a hook that is not callable, so a hook that a callback's class
    does not override is set to None on the instance. Only the skipped no-op calls change."""
    for callback in callbacks:
        for name in BATCH_HOOKS:
            if name not in vars(callback) and getattr(type(callback), name) is getattr(pl.Callback, name):
                setattr(callback, name, None)
