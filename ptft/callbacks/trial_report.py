"""The outcome of a run as a JSON file: its final metrics and checkpoint (``ptft sweep`` reads it)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytorch_lightning as pl

from ptft.errors import one_line
from ptft.reliability import atomic_write


class TrialReport(pl.Callback):
    """At the end of fit, rank zero writes ``path`` (atomically) as JSON::

        {"metrics": {"val/loss": 0.31, ...}, "checkpoint": "runs/.../last.ckpt", "error": null}

    ``metrics`` holds the finite scalars of ``trainer.callback_metrics`` (the last value of each
    logged metric), ``checkpoint`` the first ModelCheckpoint's last (else best) model path or null.
    When the run ends by an exception the file is written too, with ``error`` naming it.

    Args:
        path: the JSON file to write (its folder is created).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.write(trainer, None)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        message = one_line(exception)
        self.write(trainer, f"{type(exception).__name__}: {message}" if message else type(exception).__name__)

    def write(self, trainer: pl.Trainer, error: str | None) -> None:
        if not trainer.is_global_zero:
            return
        checkpoint = trainer.checkpoint_callback
        report = {"metrics": finite_scalars(trainer.callback_metrics),
                  "checkpoint": checkpoint and (checkpoint.last_model_path or checkpoint.best_model_path) or None,
                  "error": error}
        atomic_write(self.path, lambda f: f.write(json.dumps(report, indent=1, sort_keys=True).encode()))


def finite_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """``{name: float}`` of the metrics that are finite numbers or one-element tensors."""
    scalars = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(number):
            scalars[name] = number
    return scalars
