"""A test-only callback: each rank writes a digest of the OnlineLinearProbe's classifier and its step count."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytorch_lightning as pl

from ptft.callbacks import OnlineLinearProbe


class RecordProbe(pl.Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        probe = next(c for c in trainer.callbacks if isinstance(c, OnlineLinearProbe))
        digest = hashlib.sha256()
        for name, tensor in sorted(probe.classifier.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        steps = [int(state["step"]) for state in probe.optimizer.state.values()]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"rank": trainer.global_rank, "classifier": digest.hexdigest(), "probe_steps": steps, "steps": trainer.global_step,
                  "weight_norm": probe.classifier.weight.norm().item()}
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
