"""`ptft sweep`: W&B sweep YAML -> Optuna, bad input, and real resumable sweeps of `ptft fit` trials."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import REPO, make_image_tree
from ptft.cli import main
from ptft.sweep import Objective, SweepError, check_command, load_sweep, read_metric, sampler_for, to_distribution, write_metrics

AUTOENCODER = REPO / "configs" / "pretrain" / "autoencoder_imagenette.yaml"


def write_sweep(folder: Path, **changes) -> Path:
    """A small valid sweep YAML, with top-level keys replaced (None removes one)."""
    config = {"name": "tiny", "method": "random", "metric": {"name": "val/loss", "goal": "minimize"},
              "parameters": {"model.optimizer.init_args.lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}},
              "command": ["ptft", "fit", "-c", str(AUTOENCODER), "${args}"]}
    config.update(changes)
    path = folder / f"{str(config.get('name') or 'sweep').replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    return path


@pytest.mark.parametrize("spec, expected", [
    ({"value": 3}, (3,)),
    ({"distribution": "constant", "value": "mask"}, ("mask",)),
    ({"values": ["hinge", "wgan_gp"]}, CategoricalDistribution(["hinge", "wgan_gp"])),
    ({"distribution": "categorical", "values": [[0.0, 0.9], [0.5, 0.99]]}, CategoricalDistribution(["[0.0, 0.9]", "[0.5, 0.99]"])),
    ({"min": 1, "max": 4}, IntDistribution(1, 4)),
    ({"distribution": "int_uniform", "min": 2, "max": 8}, IntDistribution(2, 8)),
    ({"min": 0.1, "max": 0.9}, FloatDistribution(0.1, 0.9)),
    ({"distribution": "uniform", "min": 0, "max": 1}, FloatDistribution(0, 1)),
    ({"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}, FloatDistribution(1e-4, 1e-2, log=True)),
    ({"distribution": "log_uniform", "min": -5, "max": 0}, FloatDistribution(math.exp(-5), 1.0, log=True)),
    ({"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25}, FloatDistribution(0.0, 1.0, step=0.25)),
    ({"distribution": "q_uniform", "min": 16, "max": 64, "q": 16}, IntDistribution(16, 64, step=16)),
    ({"distribution": "q_log_uniform_values", "min": 8, "max": 256}, IntDistribution(8, 256, log=True)),
])
def test_parameter_specs_map_to_optuna_distributions(spec, expected):
    assert to_distribution(spec, "x.yaml: parameters.p") == expected


@pytest.mark.parametrize("spec, expected", [
    ({"values": [0.5, 0.75]}, [0.5, 0.75]),
    ({"distribution": "int_uniform", "min": 1, "max": 3}, [1, 2, 3]),
    ({"distribution": "q_uniform", "min": 0.0, "max": 0.5, "q": 0.25}, [0.0, 0.25, 0.5]),
])
def test_grid_takes_finite_sets(spec, expected):
    assert to_distribution(spec, "x.yaml: parameters.p", grid=True) == CategoricalDistribution(expected)


@pytest.mark.parametrize("spec, grid, message", [
    ({"distribution": "normal", "mu": 0, "sigma": 1}, False, "normal .unbounded. has no Optuna equivalent; valid here: constant"),
    ({"distribution": "q_log_uniform_values", "min": 1.0e-4, "max": 1.0, "q": 0.1}, False, "Optuna has no log scale with a step"),
    ({"values": ["a", "b"], "probabilities": [0.9, 0.1]}, False, "weighted choices"),
    ({"distribution": "log_uniform_values", "min": 0, "max": 1}, False, "needs min > 0"),
    ({"min": 1.0, "max": 0.5}, False, "needs numbers min < max"),
    ({"min": "1e-4", "max": 1.0e-2}, False, r"write 1\.0e-4"),
    ({"vaues": [1, 2]}, False, "unknown key.s. vaues; valid: value, values"),
    ({"distribution": "sobol", "min": 0, "max": 1}, False, "unknown distribution 'sobol'"),
    ({"distribution": "int_uniform", "min": 0.5, "max": 3}, False, "int_uniform needs integer min and max"),
    ({"distribution": "uniform", "min": 0.1, "max": 0.9}, True, "method grid needs a finite set of values, but uniform is a continuous range"),
    ({"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}, True, "continuous range"),
])
def test_specs_without_a_mapping_are_errors(spec, grid, message):
    with pytest.raises(SweepError, match=r"x\.yaml: parameters\.p: .*" + message):
        to_distribution(spec, "x.yaml: parameters.p", grid=grid)


def test_sampler_per_method_and_study_settings(tmp_path):
    samplers = {"grid": optuna.samplers.GridSampler, "random": optuna.samplers.RandomSampler, "bayes": optuna.samplers.TPESampler}
    for method, sampler in samplers.items():
        parameters = {"model.layer_decay": {"values": [0.5, 1.0]}, "model.mask_ratio": {"value": 0.5}}
        sweep = load_sweep(write_sweep(tmp_path, name=method, method=method, parameters=parameters))
        assert isinstance(sampler_for(sweep), sampler)
        assert sweep.fixed == {"model.mask_ratio": 0.5} and list(sweep.parameters) == ["model.layer_decay"]
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


@pytest.mark.parametrize("args, message", [
    (["nope.yaml", "--count", "1"], r"nope\.yaml: no such sweep file"),
    (["{sweep}", "--count", "0"], "--count must be >= 1, got 0"),
    (["{sweep}"], "--count N is needed for method random"),
    (["{sweep}", "--count", "1", "--model.init_args.optimizer.init_args.lr=0.1"], "override.s. --model.optimizer.lr would replace swept parameters"),
    (["{sweep}", "--count", "x"], "argument --count: invalid int value"),
])
def test_bad_arguments_fail_with_one_line(tmp_path, capsys, args, message):
    sweep = write_sweep(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", *[a.format(sweep=sweep) for a in args]])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and error.startswith("ptft sweep: error: "), error
    assert re.search(message, error), error


def test_unquoted_args_in_a_flow_list_is_explained(tmp_path, capsys):
    path = tmp_path / "flow.yaml"
    path.write_text("method: random\nmetric: {name: val/loss}\nparameters: {model.lr: {values: [1, 2]}}\n"
                    "command: [ptft, fit, -c, x.yaml, ${args}]\n")
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--count", "1"])
    assert 'flow.yaml: not valid YAML (in a [...] list, quote "${args}")' in capsys.readouterr().err


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
    assert f"trial {failed[0].number} FAILED after" in output and "exit status 1" in output
    assert "model.mask_ratio must be in [0, 1), got 1.5" in output  # the tail of the trial's stderr

    table = outputs[1].split("\n\n")[1].splitlines()  # header, rule, 4 rows
    assert table[0].split() == ["trial", "state", "val/loss", "model.mask_ratio"] and len(table) == 6
    rows = [line.split() for line in table[2:]]
    assert [r[1] for r in rows] == ["COMPLETE"] * 3 + ["FAIL"]
    values = [float(r[2]) for r in rows[:3]]
    assert values == sorted(values)  # best (lowest val/loss) first
    assert "best: trial" in outputs[1] and "--trainer.max_steps=2" in outputs[1]

    configs = sorted((tmp_path / "runs").glob("config*.yaml"))  # the config every finished trial ran with
    assert len(configs) == 3
    for config in map(yaml.safe_load, (c.read_text() for c in configs)):  # the overrides reached every trial
        assert config["trainer"]["max_steps"] == 2 and config["data"]["init_args"]["root"] == str(tree)
        assert config["model"]["init_args"]["backbone"]["init_args"]["base_width"] == 8
    assert all((sweep_dir / "tiny" / f"trial-{t.number}" / "stderr.txt").is_file() for t in trials)

    main(["sweep", str(path), "--sweep_dir", str(sweep_dir), *overrides])  # a complete grid runs nothing more
    assert "running up to 0 more" in capsys.readouterr().out and len(study.get_trials()) == 4
