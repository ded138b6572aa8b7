"""A trial's command line and environment, and its metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO
from helpers import write_sweep
from ptft.sweep.runner import Objective, check_command, read_metric, write_metrics
from ptft.sweep.spec import load_sweep


def test_metrics_file_and_failed_metrics(tmp_path):
    import torch

    path = tmp_path / "m" / "metrics.json"
    write_metrics({"val/loss": torch.tensor(0.25), "val/acc": 0.5, "grid": torch.zeros(2)}, path)
    assert json.loads(path.read_text()) == {"val/acc": 0.5, "val/loss": 0.25}  # scalars only
    assert read_metric(path, "val/loss") == 0.25
    with pytest.raises(Exception, match="metric val/ppl was not logged; logged: val/acc, val/loss"):
        read_metric(path, "val/ppl")
    write_metrics({"val/loss": float("nan")}, path)
    with pytest.raises(Exception, match="metric val/loss is nan"):
        read_metric(path, "val/loss")
    with pytest.raises(Exception, match="no metrics file"):
        read_metric(tmp_path / "none.json", "val/loss")


def test_trial_command_and_environment(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, command=["${env}", "ptft", "fit", "-c", "a.yaml", "${args}", "--trainer.fast_dev_run=true"]))
    objective = Objective(sweep, ["--trainer.max_steps=5", "-c", "b.yaml"], tmp_path)
    command = objective.command({"model.lr": 0.001, "model.loss": "hinge"})
    # overrides after the YAML's own arguments and before the trial's: the swept values always win
    assert command[3:] == ["fit", "-c", "a.yaml", "--trainer.max_steps=5", "-c", "b.yaml", "--model.lr=0.001",
                           "--model.loss=hinge", "--trainer.fast_dev_run=true"]
    env = objective.env(7, tmp_path / "metrics.json")
    assert (env["WANDB_RUN_GROUP"], env["WANDB_NAME"], env["PTFT_METRICS_FILE"]) == ("tiny", "tiny-7", str(tmp_path / "metrics.json"))


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "sweeps").glob("*.yaml")))
def test_shipped_sweeps_match_their_configs(name, monkeypatch):
    monkeypatch.chdir(REPO)  # the commands name configs relative to the repository, as `wandb agent` runs them
    sweep = load_sweep(REPO / "configs" / "sweeps" / name)
    assert sweep.name == Path(name).stem and sweep.metric.startswith("val/")
    check_command(sweep, [])  # every key (and every non-numeric choice) is an argument ptft fit accepts
