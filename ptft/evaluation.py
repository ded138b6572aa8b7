"""The comparison protocol of the demo and the benchmarks: pretrain, export the backbone, then
evaluate it and a randomly initialised copy of the same backbone with identical settings.

Every stage goes through the same ``ptft fit`` code path (``run_cli``) a user runs. Each stage
prints (to stderr) a line when it starts and when it ends, and its training a progress line with
the elapsed time and an ETA every 15 seconds (:class:`~ptft.callbacks.StageProgress`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import wandb

from ptft.callbacks.progress import StageProgress, format_duration
from ptft.cli import run_cli
from ptft.errors import OutputExistsError
from ptft.handoff import export_backbone, read_backbone


def new_run_dir(parent: str | Path) -> Path:
    """A new, empty folder for one run: ``parent/<YYYYmmdd-HHMMSS>``, or with ``-2``, ``-3``... when
    that exists. Created here, so two runs never share a folder and none replaces earlier outputs."""
    base = Path(parent) / f"{datetime.now():%Y%m%d-%H%M%S}"
    for n in itertools.count(1):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue


def label_fraction(text: str) -> float:
    """argparse type of a fraction of the train labels: a number in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction of the train labels must be in (0, 1], got {text}")
    return value


def positive_number(text: str) -> float:
    """argparse type of a budget in minutes: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def positive_integer(text: str) -> int:
    """argparse type of a budget in steps or epochs: an integer above 0."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer above 0, got {text}")
    return value


def label_subset(fraction: float, full_epochs: int) -> list[str]:
    """``ptft fit`` args that train on a stratified ``fraction`` (in (0, 1]) of the train labels for
    about as many optimizer steps as ``full_epochs`` epochs of all of them (``full_epochs / fraction``
    epochs), and validate once, at the end. Every label fraction gets the same number of steps, so a
    probe on 10% of the labels is trained as far as one on all of them instead of stopping ten times earlier."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a fraction of the train labels must be in (0, 1], got {fraction}")
    epochs = max(1, round(full_epochs / fraction))
    return [f"--data.label_fraction={fraction:g}", f"--trainer.max_epochs={epochs}", f"--trainer.check_val_every_n_epoch={epochs}"]


def say(line: str) -> None:
    """A progress line of the comparison, on stderr (stdout keeps the results)."""
    print(line, file=sys.stderr, flush=True)


def fit(args: list[str], test: bool = False, stage: str = "fit", progress_every: float = 15.0,
        callbacks: tuple[pl.Callback, ...] = ()) -> dict[str, Any]:
    """Run ``ptft fit`` in this process (then the test split with the final weights, with ``test``):
    final metrics, seconds (of the fit), last checkpoint and steps. Training prints progress lines
    named ``stage`` every ``progress_every`` seconds; ``callbacks`` join the config's."""
    start = time.perf_counter()
    cli = run_cli(["fit", *args], callbacks=[StageProgress(stage, every_n_seconds=progress_every), *callbacks])
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    if test:
        for results in cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in results.items()})
    wandb.finish()  # each stage is its own W&B run
    return {
        "metrics": metrics,
        "seconds": seconds,
        "checkpoint": cli.trainer.checkpoint_callback.last_model_path,
        "steps": cli.trainer.global_step,
    }


def pretrain_then_evaluate(pretrain_args: list[str], evaluations: dict[str, dict[str, Any]], run_dir: Path,
                           random_init: bool | Callable[[dict], bool] = True, export: Path | None = None) -> dict[str, Any]:
    """Pretrain with ``pretrain_args``, export to ``run_dir/backbone``, then run each evaluation
    (``{"args": [...fit args], "test": bool}``) on the export and on a random initialisation of the
    same backbone spec (the evaluation's ``model.backbone_overrides``, e.g. drop path, apply to
    both); W&B runs go under ``run_dir``, which must hold no export yet (see :func:`new_run_dir`).

    Returns ``{"pretrain": {"seconds", "steps", "metrics"}, "backbone": spec, "pretrained": {evaluation:
    {"metrics", "seconds"}}, "random_init": {...}}``. ``random_init``: False, or a function of the backbone spec
    ``{class_path, init_args}`` returning False, skips the random-init runs (e.g. one already evaluated), and
    ``"random_init"`` is then ``{}``. ``export``: an earlier export of this pretraining, evaluated instead
    of pretraining again (``pretrain_args`` unused; ``"pretrain"`` is then None).
    """
    if export is not None:
        read_backbone(export)  # a missing or broken export stops here, before any run
    elif (run_dir / "backbone").exists():  # found now, not after pretraining
        raise OutputExistsError(f"{run_dir / 'backbone'} exists: give each run a new folder (ptft.evaluation.new_run_dir)")
    stages, started = [0, 0], time.perf_counter()  # [done, of]; `of` grows once the random-init runs are known

    def stage(name: str, run: Callable[[], Any]) -> Any:
        stages[0] += 1
        say(f"stage {name} ({stages[0]}/{stages[1]}): started")
        begin = time.perf_counter()
        result = run()
        now = time.perf_counter()
        say(f"stage {name} ({stages[0]}/{stages[1]}): finished in {format_duration(now - begin)} "
            f"({format_duration(now - started)} in all)")
        return result

    pretraining = 2 if export is None else 0
    stages[1] = pretraining + len(evaluations) * (2 if random_init is not False else 1)
    pretrain = None
    if export is None:
        pretrain = stage("pretrain", lambda: fit([*pretrain_args, f"--trainer.logger.init_args.save_dir={run_dir / 'pretrain'}"], stage="pretrain"))
        export = stage("export", lambda: export_backbone(pretrain["checkpoint"], run_dir / "backbone"))
    spec = read_backbone(export)[0]
    results: dict[str, Any] = {"pretrain": pretrain and {k: pretrain[k] for k in ("seconds", "steps", "metrics")},
                               "backbone": {k: spec[k] for k in ("class_path", "init_args")}, "pretrained": {}, "random_init": {}}
    sources = {"pretrained": [f"--model.pretrained={export}"]}
    if random_init(results["backbone"]) if callable(random_init) else random_init:
        sources["random_init"] = ["--model.pretrained=null", f"--model.backbone={json.dumps(results['backbone'])}"]
    stages[1] = pretraining + len(evaluations) * len(sources)
    for name, evaluation in evaluations.items():
        for source, backbone in sources.items():
            label = f"{name} {source.replace('_', ' ')}"
            run = stage(label, lambda: fit([*evaluation["args"], *backbone, f"--trainer.logger.init_args.save_dir={run_dir / f'{name}_{source}'}"],
                                           test=evaluation.get("test", False), stage=label))
            results[source][name] = {"metrics": run["metrics"], "seconds": run["seconds"]}
    return results


def pretrain_then_probe(pretrain_args: list[str], probe_args: list[str], run_dir: Path) -> dict[str, Any]:
    """:func:`pretrain_then_evaluate` with one linear probe; returns ``{"pretrain", "backbone",
    "pretrained": {"val_acc", "seconds"}, "random_init": {...}}``."""
    results = pretrain_then_evaluate(pretrain_args, {"probe": {"args": probe_args}}, run_dir)
    for source in ("pretrained", "random_init"):
        probe = results[source]["probe"]
        results[source] = {"val_acc": probe["metrics"]["val/acc"], "seconds": probe["seconds"]}
    return results
