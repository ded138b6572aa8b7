"""`ptft sweep` end to end: bad arguments, a command ptft fit rejects, and a real resumable sweep of
`ptft fit` trials whose table shows each trial's checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import make_image_tree
from helpers import write_sweep
from ptft.cli import main


@pytest.mark.parametrize("args, message", [
    (["nope.yaml", "--count", "1"], r"nope\.yaml: no such sweep file"),
    (["{sweep}", "--count", "0"], "--count must be >= 1, got 0"),
    (["{sweep}"], "--count N is needed for method random"),
    (["{sweep}", "--count", "1", "--model.init_args.optimizer.init_args.lr=0.1"], "override.s. --model.optimizer.lr would replace swept parameters"),
    (["{sweep}", "--count", "x"], "argument --count: invalid int value"),
    (["{sweep}", "--count", "1", "-c", "more.yaml"], r"-c more\.yaml: no such config file in the working folder "),
])
def test_bad_arguments_fail_with_one_line(tmp_path, capsys, args, message):
    sweep = write_sweep(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", *[a.format(sweep=sweep) for a in args]])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and error.startswith("ptft sweep: error: "), error
    assert re.search(message, error), error


def test_a_python_without_the_ptft_command_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(SystemExit):
        main(["sweep", str(write_sweep(tmp_path)), "--count", "1", "--sweep_dir", str(tmp_path / "sweeps")])
    assert f"ptft sweep: error: no ptft command next to {tmp_path / 'python'}: install ptft" in capsys.readouterr().err
    assert not (tmp_path / "sweeps").exists()


def test_a_key_or_choice_ptft_fit_rejects_stops_the_sweep_before_any_trial(tmp_path, capsys):
    path = write_sweep(tmp_path, parameters={"model.loss": {"values": ["l2", "mse"]}})
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--count", "1", "--sweep_dir", str(tmp_path / "sweeps")])
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(r"ptft sweep: error: .*tiny\.yaml: ptft fit rejects the trial arguments "
                                                r"--model\.loss=l2: model\.loss: expected one of 'mse', 'l1', got 'l2'", error), error
    assert not (tmp_path / "sweeps").exists()


def test_sweep_runs_resumes_and_survives_a_failing_trial(tmp_path, capsys, monkeypatch):
    """A 4-point grid over model.mask_ratio, one value invalid (the model raises): 2 trials, then 2 more."""
    monkeypatch.chdir(tmp_path)
    tree = make_image_tree(tmp_path / "images", per_class=4)  # 12 images: 2 batches of 8 = 1 epoch, then validation
    path = write_sweep(tmp_path, method="grid", parameters={"model.mask_ratio": {"values": [0.0, 0.3, 0.6, 1.5]},
                                                            "model.corruption": {"value": "mask"}})
    overrides = [f"--data.root={tree}", "--data.image_size=32", "--data.batch_size=8", "--data.num_workers=0",
                 "--trainer.max_steps=2", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
                 f"--trainer.default_root_dir={tmp_path / 'runs'}", "--model.backbone.init_args.base_width=8",
                 "--model.decoder_width=8", "--model.num_grid_images=0", "--trainer.num_sanity_val_steps=0",
                 "--trainer.enable_model_summary=false"]
    sweep_dir = tmp_path / "sweeps"
    outputs = []
    for _ in range(2):
        main(["sweep", str(path), "--count", "2", "--sweep_dir", str(sweep_dir), *overrides])
        outputs.append(capsys.readouterr().out)
    assert "0 trial(s) so far" in outputs[0] and "2 trial(s) so far" in outputs[1]

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{sweep_dir / 'tiny.db'}")
    trials = study.get_trials()
    assert len(trials) == 4 and sorted(t.params["model.mask_ratio"] for t in trials) == [0.0, 0.3, 0.6, 1.5]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.params["model.mask_ratio"] for t in failed] == [1.5]
    output = "".join(outputs)
    assert f"trial {failed[0].number} FAILED after" in output and "exit status 2" in output  # bad input: exit 2
    assert "model.mask_ratio must be in [0, 1), got 1.5" in output  # the tail of the trial's stderr

    table = outputs[1].split("\n\n")[1].splitlines()  # header, rule, 4 rows
    assert table[0].split() == ["trial", "state", "val/loss", "model.mask_ratio", "checkpoint"] and len(table) == 6
    rows = [line.split() for line in table[2:]]
    assert [r[1] for r in rows] == ["COMPLETE"] * 3 + ["FAIL"]
    values = [float(r[2]) for r in rows[:3]]
    assert values == sorted(values)  # best (lowest val/loss) first
    checkpoints = [r[4] for r in rows[:3]]
    assert len(set(checkpoints)) == 3 and all(Path(c).is_file() for c in checkpoints) and rows[3][4] == "-"
    assert all(Path(c).parent.parent.parent == sweep_dir / "tiny" for c in checkpoints)  # each trial in its own folder
    assert "best: trial" in outputs[1] and "--trainer.max_steps=2" in outputs[1] and f"checkpoint {checkpoints[0]}" in outputs[1]
    for t in trials:  # what the trial's TrialReport wrote: the metric, the checkpoint; nothing from the run that never began fit
        report = sweep_dir / "tiny" / f"trial-{t.number}" / "report.json"
        if t.state == TrialState.FAIL:
            assert not report.exists()
        else:
            outcome = json.loads(report.read_text())
            assert outcome["metrics"]["val/loss"] == t.value and outcome["checkpoint"] == t.user_attrs["checkpoint"]
            assert outcome["error"] is None and "TrialReport" not in t.user_attrs["command"]

    configs = sorted((sweep_dir / "tiny").glob("trial-*/config*.yaml"))  # the config every finished trial ran with, in its folder
    assert len(configs) == 3
    for config in map(yaml.safe_load, (c.read_text() for c in configs)):  # the overrides reached every trial
        assert config["trainer"]["max_steps"] == 2 and config["data"]["init_args"]["root"] == str(tree)
        assert config["model"]["init_args"]["backbone"]["init_args"]["base_width"] == 8
    assert all((sweep_dir / "tiny" / f"trial-{t.number}" / "stderr.txt").is_file() for t in trials)

    main(["sweep", str(path), "--sweep_dir", str(sweep_dir), *overrides])  # a complete grid runs nothing more
    assert "running up to 0 more" in capsys.readouterr().out and len(study.get_trials()) == 4
