"""A sweep YAML read into a Sweep, and every bad one refused with one line naming the file and key."""

from __future__ import annotations

import re

import pytest

from helpers import AUTOENCODER, write_sweep
from ptft.cli import main
from ptft.sweep.spec import load_sweep


def test_study_settings_nested_keys_and_command(tmp_path):
    nested = {"model": {"parameters": {"lr": {"values": [1, 2]}}}}
    sweep = load_sweep(write_sweep(tmp_path, name=None, parameters=nested, metric={"name": "val/acc", "goal": "maximize"}))
    assert (sweep.name, sweep.direction, list(sweep.parameters)) == ("sweep", "maximize", ["model.lr"])  # file stem, nested keys
    assert sweep.command == ["fit", "-c", str(AUTOENCODER), "${args}"]


@pytest.mark.parametrize("change, message", [
    ({"method": "hyperband"}, r"tiny\.yaml: method: 'hyperband' is not one of grid, random, bayes"),
    ({"metric": None}, r"tiny\.yaml: metric: missing; give metric: \{name: val/loss, goal: minimize\}"),
    ({"metric": {"name": "val/loss", "goal": "lower"}}, "metric.goal: 'lower' is not minimize or maximize"),
    ({"parameters": {"model.lr": {"distribution": "beta", "a": 1, "b": 2}}}, r"parameters\.model\.lr: distribution beta .*no Optuna equivalent"),
    ({"method": "grid"}, r"parameters\.model\.optimizer\.init_args\.lr: method grid needs a finite set .*log_uniform_values is a continuous"),
    ({"command": ["python", "train.py", "${args}"]}, r'command: must run ptft fit, .*give command: \[ptft, fit, -c, CONFIG\.yaml, "\$\{args\}"\]'),
    ({"command": ["ptft", "fit", "-c", "x.yaml"]}, r"command: needs \$\{args\} once"),
    ({"early_stop": 1}, "unknown key.s. early_stop; valid: "),
    ({"parameters": {"model.lr": {"value": 1}}}, "every parameter is a fixed value"),
    ({"name": "a/b"}, "name: 'a/b' must be letters, digits"),
])
def test_bad_sweep_files_fail_with_one_line(tmp_path, capsys, change, message):
    path = write_sweep(tmp_path, **change)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(path), "--count", "1", "--sweep_dir", str(tmp_path / "sweeps")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and error.startswith("ptft sweep: error: "), error
    assert re.search(message, error), error
    assert not (tmp_path / "sweeps").exists()  # nothing written


def test_unquoted_args_in_a_flow_list_is_explained(tmp_path, capsys):
    path = tmp_path / "flow.yaml"
    path.write_text("method: random\nmetric: {name: val/loss}\nparameters: {model.lr: {values: [1, 2]}}\n"
                    "command: [ptft, fit, -c, x.yaml, ${args}]\n")
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--count", "1"])
    assert 'flow.yaml: not valid YAML (in a [...] list, quote "${args}")' in capsys.readouterr().err
