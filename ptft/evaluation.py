"""The comparison protocol of the demo and the benchmarks: pretrain, export the backbone, then
linear-probe it and a randomly initialised copy of the same backbone with identical settings.

Every stage goes through the same ``ptft fit`` code path (``run_cli``) a user runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import wandb

from ptft.cli import run_cli
from ptft.handoff import export_backbone


def fit(args: list[str]) -> dict[str, Any]:
    """Run ``ptft fit`` in this process: final metrics, seconds, last checkpoint and steps."""
    start = time.perf_counter()
    cli = run_cli(["fit", *args])
    seconds = time.perf_counter() - start
    wandb.finish()  # each stage is its own W&B run
    return {
        "metrics": {k: float(v) for k, v in cli.trainer.callback_metrics.items()},
        "seconds": seconds,
        "checkpoint": cli.trainer.checkpoint_callback.last_model_path,
        "steps": cli.trainer.global_step,
    }


def pretrain_then_probe(pretrain_args: list[str], probe_args: list[str], run_dir: Path) -> dict[str, Any]:
    """Pretrain with ``pretrain_args``, export to ``run_dir/backbone``, then probe the export and a
    random initialisation of the same backbone spec with ``probe_args``; W&B runs go under ``run_dir``.

    Returns ``{"pretrain": {...}, "pretrained": {"val_acc", "seconds"}, "random_init": {...}, "backbone": spec}``.
    """
    pretrain = fit([*pretrain_args, f"--trainer.logger.init_args.save_dir={run_dir / 'pretrain'}"])
    export_dir = export_backbone(pretrain["checkpoint"], run_dir / "backbone")
    spec = json.loads((export_dir / "backbone.json").read_text())
    backbone_arg = json.dumps({"class_path": spec["class_path"], "init_args": spec["init_args"]})
    sources = {"pretrained": [f"--model.pretrained={export_dir}"],
               "random_init": ["--model.pretrained=null", f"--model.backbone={backbone_arg}"]}
    results: dict[str, Any] = {"pretrain": {"seconds": pretrain["seconds"], "steps": pretrain["steps"]}}
    for name, source in sources.items():
        probe = fit([*probe_args, *source, f"--trainer.logger.init_args.save_dir={run_dir / name}"])
        results[name] = {"val_acc": probe["metrics"]["val/acc"], "seconds": probe["seconds"]}
    results["backbone"] = {k: spec[k] for k in ("class_path", "init_args")}
    return results
