"""Two `ptft sweep` processes on one grid study: each point runs once, and the grid is reported complete
only when every point has finished. Trials are a fake objective here, not `ptft fit`."""

from __future__ import annotations

import threading

import optuna
from optuna.trial import TrialState

from helpers import write_sweep
from ptft.cli import main
from ptft.sweep.search import suggest


class FakeObjective:
    """Returns at once, except trial 0, which runs until ``release`` is set."""

    started, release = threading.Event(), threading.Event()

    def __init__(self, sweep, overrides, log_dir) -> None:
        self.sweep = sweep

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.sweep)
        if trial.number == 0:
            FakeObjective.started.set()
            FakeObjective.release.wait(timeout=20)
        return float(values["model.mask_ratio"])


def test_two_processes_on_one_grid_run_each_point_once_and_only_the_last_reports_it_complete(tmp_path, capsys, monkeypatch):
    FakeObjective.started.clear(), FakeObjective.release.clear()
    monkeypatch.setattr("ptft.sweep.command.Objective", FakeObjective)
    monkeypatch.setattr("ptft.sweep.command.check_command", lambda sweep, overrides: None)
    path = write_sweep(tmp_path, method="grid", parameters={"model.mask_ratio": {"values": [0.0, 0.1, 0.2, 0.3]},
                                                            "model.loss": {"values": ["mse", "l1"]}})
    args = ["sweep", str(path), "--sweep_dir", str(tmp_path / "sweeps")]
    first = threading.Thread(target=main, args=(args,))  # a second process, as far as the study can tell
    first.start()
    assert FakeObjective.started.wait(timeout=20)
    capsys.readouterr()
    main(args)  # runs the 7 free points while trial 0 still runs in the other process
    out = capsys.readouterr().out
    assert "the grid is complete" not in out and "every grid point is taken; 1 still running in other processes" in out
    FakeObjective.release.set()
    first.join(timeout=20)
    assert "the grid is complete" in capsys.readouterr().out

    trials = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'sweeps' / 'tiny.db'}").get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 8
