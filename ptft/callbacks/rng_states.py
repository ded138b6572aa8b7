"""The global random streams in every checkpoint, so a resumed run draws what the uninterrupted one drew."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def rng_states() -> dict[str, Any]:
    """The global random states of torch (CPU and CUDA), numpy and Python, as tensors, lists and
    numbers only (loadable with weights_only=True)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(gauss)],
        "python": [version, list(state), python_gauss],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = states.get("torch.cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))


class RNGStates(pl.Callback):
    """Saves the global random states in ``checkpoint["ptft"]["rng"]`` and, after
    ``--ckpt_path``, restores them when training starts (``on_train_start``): after Lightning's own
    restore, and before the first batch is transferred to the device, where a DataModule may draw
    (SpecAugment's masks). A mid-epoch resume calls no ``on_train_epoch_start`` and transfers its
    first batch before ``on_train_batch_start``, so neither hook would do. Loaders start on their
    own generators, so nothing draws from the global streams in between, and noise, masks and
    dropout continue as in the uninterrupted run. Every ptft task adds it."""

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("ptft", {})["rng"] = rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._to_restore = checkpoint.get("ptft", {}).get("rng")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._to_restore is not None:
            restore_rng_states(self._to_restore)
            self._to_restore = None
