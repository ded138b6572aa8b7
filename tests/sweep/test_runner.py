"""A trial's command line, its TrialReport among the run's callbacks, and its outcome."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from helpers import AUTOENCODER, write_sweep
from ptft.cli import run_cli
from ptft.sweep.runner import Objective, TrialFailed, check_command, read_report, report_args, trial_metric
from ptft.sweep.spec import load_sweep


def test_trial_command_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ":/my/pkg:")  # empty entries: the trial's working folder on its sys.path
    sweep = load_sweep(write_sweep(tmp_path, command=["${env}", "ptft", "fit", "-c", "a.yaml", "${args}", "--trainer.fast_dev_run=true"]))
    objective = Objective(sweep, ["--trainer.max_steps=5", "-c", "b.yaml"], tmp_path)
    command = objective.command({"model.lr": 0.001, "model.loss": "hinge"}, tmp_path / "report.json")
    assert command[0] == str(Path(sys.executable).parent / "ptft")  # the console script: the working folder is not on sys.path
    # overrides after the YAML's own arguments and before the trial's: the swept values always win; then the trial's
    # own folder (checkpoints of runs without a logger never mix) and the report
    assert command[1:] == ["fit", "-c", "a.yaml", "--trainer.max_steps=5", "-c", "b.yaml", "--model.lr=0.001",
                           "--model.loss=hinge", "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}",
                           *report_args(tmp_path / "report.json")]
    env = objective.env(7)
    assert (env["WANDB_RUN_GROUP"], env["WANDB_NAME"]) == ("tiny", "tiny-7") and "PTFT_METRICS_FILE" not in env
    assert env["PYTHONPATH"] == "/my/pkg"


def printed_callbacks(args: list[str]) -> list[dict]:
    """``trainer.callbacks`` of ``ptft fit ARGS --print_config``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", *args, "--print_config"])
    assert exit_info.value.code in (None, 0)
    return yaml.safe_load(out.getvalue())["trainer"]["callbacks"]


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
def test_the_report_is_appended_to_the_configs_callbacks_or_is_the_only_one(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    report = tmp_path / "a: b #1" / "report.json"  # YAML-like text in the path stays a path
    sweep = load_sweep(REPO / "configs" / "sweeps" / "gan_imagenette.yaml")  # the config's 2 ModelCheckpoints + KNNMonitor(every_n_epochs=5)
    callbacks = printed_callbacks(Objective(sweep, [], tmp_path).command({"model.loss": "hinge"}, report)[2:])
    assert [c["class_path"].rsplit(".", 1)[1] for c in callbacks] == ["ModelCheckpoint", "ModelCheckpoint", "KNNMonitor", "TrialReport"]
    assert callbacks[2]["init_args"]["every_n_epochs"] == 5 and callbacks[3]["init_args"] == {"path": str(report)}

    config = yaml.safe_load(AUTOENCODER.read_text())
    del config["trainer"]["callbacks"]
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(config))
    callbacks = printed_callbacks(["-c", str(bare), *report_args(report)])
    assert callbacks == [{"class_path": "ptft.callbacks.TrialReport", "init_args": {"path": str(report)}}]


def test_a_trials_outcome_comes_from_its_exit_status_and_report(tmp_path):
    path = tmp_path / "report.json"
    assert read_report(path) == {}
    path.write_text(json.dumps({"metrics": {"val/acc": 0.5, "val/loss": 0.25}, "checkpoint": "last.ckpt", "error": None}))
    report = read_report(path)
    assert trial_metric(0, report, path, "val/loss") == 0.25
    with pytest.raises(TrialFailed, match="metric val/ppl was not logged or is not finite; finite: val/acc, val/loss"):
        trial_metric(0, report, path, "val/ppl")
    with pytest.raises(TrialFailed, match=r"^exit status 1 \(DivergenceError: train/loss is nan at step 3\)$"):
        trial_metric(1, {**report, "error": "DivergenceError: train/loss is nan at step 3"}, path, "val/loss")
    with pytest.raises(TrialFailed, match="^exit status 2$"):
        trial_metric(2, {}, path, "val/loss")  # stopped before fit began: no report
    with pytest.raises(TrialFailed, match="no report file .*report.json: the run did not reach the end of fit"):
        trial_metric(0, {}, path, "val/loss")


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs" / "sweeps").glob("*.yaml")))
def test_shipped_sweeps_match_their_configs(name, tmp_path, monkeypatch):
    # The commands name configs relative to the repository, as `wandb agent` runs them; `ptft sweep` finds them from any folder.
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(REPO / "configs" / "sweeps" / name)
    assert sweep.name == Path(name).stem and sweep.metric.startswith("val/")
    check_command(sweep, [])  # every key (and every non-numeric choice) is an argument ptft fit accepts, with the report
