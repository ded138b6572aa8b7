"""A sweep YAML read into a Sweep, and every bad one refused with one line naming the file and key."""

from __future__ import annotations

import re

import pytest

from helpers import AUTOENCODER, write_sweep
from ptft.cli import main
from ptft.sweep.spec import check_configs, load_sweep


def test_configs_are_found_from_the_working_folder_or_from_the_sweep_file(tmp_path, monkeypatch):
    """A config not in the working folder is looked for next to the sweep file and in the folders above it."""
    repo = tmp_path / "repo"
    for name in ("configs/pretrain/a.yaml", "configs/trainer/b.yaml", "configs/sweeps/c.yaml", "here.yaml"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("{}\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "here.yaml").write_text("{}\n")
    path = write_sweep(repo / "configs" / "sweeps", command=[
        "ptft", "fit", "-c", "configs/pretrain/a.yaml", "--config", "../trainer/b.yaml", "--config=c.yaml", "-c", "here.yaml", "${args}"])
    monkeypatch.chdir(tmp_path / "elsewhere")
    sweep = load_sweep(path)
    assert sweep.command == ["fit", "-c", str(repo / "configs/pretrain/a.yaml"), "--config", str(repo / "configs/trainer/b.yaml"),
                             f"--config={repo / 'configs/sweeps/c.yaml'}", "-c", "here.yaml", "${args}"]  # the working folder's first
    check_configs(sweep, ["-c", "here.yaml"])
    monkeypatch.chdir(repo)  # found in the working folder: kept as written, as `wandb agent` would run it
    assert load_sweep(path).command[:7] == ["fit", "-c", "configs/pretrain/a.yaml", "--config", str(repo / "configs/trainer/b.yaml"),
                                            f"--config={repo / 'configs/sweeps/c.yaml'}", "-c"]


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
    ({"command": ["ptft", "fit", "-c", "nope/x.yaml", "${args}"]},
     r"tiny\.yaml: command: config file nope/x\.yaml not found in the working folder .*, nor in .* or a folder above it$"),
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
