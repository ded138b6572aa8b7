"""``ptft sweep``: run a W&B-format sweep YAML locally, with Optuna as the search engine.

    ptft sweep configs/sweeps/gan_imagenette.yaml --count 8 [--storage URL] [--trainer.max_steps=50 ...]

The YAML is the one ``wandb sweep`` takes (``method``, ``metric``, ``parameters``, ``command``).
``grid`` maps to Optuna's GridSampler, ``random`` to RandomSampler, ``bayes`` to TPESampler. The
study (named by the YAML's ``name``, else the file stem) lives in a database, by default
``runs/sweeps/<name>.db`` (SQLite), so a second call continues it; a shared database URL lets
several machines work on one study.

Each trial is a ``ptft fit`` subprocess with the trial's ``--key=value`` arguments (formatted as
W&B's ``${args}``), so a crash ends only that trial. The subprocess writes its final
``trainer.callback_metrics`` to the JSON file named by ``$PTFT_METRICS_FILE`` (see
``PtftCLI.after_fit``); the sweep reads the metric from there. Trial logs go to
``runs/sweeps/<name>/trial-<n>/``; W&B runs are grouped by the sweep name (``WANDB_RUN_GROUP``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

METRICS_FILE_ENV = "PTFT_METRICS_FILE"
METHODS = ("grid", "random", "bayes")
TOP_LEVEL_KEYS = {"name", "description", "program", "command", "method", "metric", "parameters", "early_terminate",
                  "run_cap", "project", "entity"}
SPEC_KEYS = {"value", "values", "min", "max", "distribution", "q", "mu", "sigma", "a", "b", "probabilities", "parameters"}
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values",
                 "q_log_uniform_values")
UNSUPPORTED = {  # W&B distributions without an Optuna equivalent (Optuna samples bounded ranges, unweighted choices)
    "normal": "unbounded", "q_normal": "unbounded", "log_normal": "unbounded", "q_log_normal": "unbounded",
    "beta": "not a uniform family", "q_beta": "not a uniform family", "inv_log_uniform": "inverse log scale",
    "inv_log_uniform_values": "inverse log scale", "q_log_uniform": "log scale with a step",
}


class SweepError(ValueError):
    """A sweep YAML or ``ptft sweep`` argument that cannot be used; the message names the key."""


class TrialFailed(Exception):
    """A trial whose run exited non-zero or did not log a finite metric."""


@dataclass
class Sweep:
    """A parsed sweep YAML: ``parameters`` holds Optuna distributions, ``fixed`` the ``value:`` ones."""

    path: Path
    name: str
    method: str
    metric: str
    goal: str
    command: list[str]  # ptft arguments with "${args}" where the trial's arguments go
    parameters: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    run_cap: int | None = None

    @property
    def direction(self) -> str:
        return self.goal  # "minimize" | "maximize", Optuna's words too


# ---------------------------------------------------------------- YAML -> Optuna


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a W&B sweep YAML; raises :class:`SweepError` naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file (e.g. configs/sweeps/autoencoder_imagenette.yaml)")
    text = path.read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        hint = ' (in a [...] list, quote "${args}")' if "${" in text else ""
        raise SweepError(f"{path}: not valid YAML{hint}: {' '.join(str(error).split())}") from None
    if not isinstance(config, dict):
        raise SweepError(f"{path}: expected a mapping with method, metric, parameters and command")
    unknown = set(config) - TOP_LEVEL_KEYS
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    method = config.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method: {method!r} is not one of {', '.join(METHODS)}")
    metric = config.get("metric")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise SweepError(f"{path}: metric: missing; give metric: {{name: val/loss, goal: minimize}} (a name the run logs)")
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise SweepError(f"{path}: metric.goal: {goal!r} is not minimize or maximize")
    run_cap = config.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise SweepError(f"{path}: run_cap: {run_cap!r} is not an integer >= 1")
    raw = config.get("parameters")
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{path}: parameters: missing or empty; give e.g. model.optimizer.init_args.lr: {{min: 1.0e-4, max: 1.0e-2}}")
    name = str(config.get("name") or path.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SweepError(f"{path}: name: {name!r} must be letters, digits, '_', '.' or '-' (it names the study, its database and log folder)")
    sweep = Sweep(path, name, method, metric["name"], goal, parse_command(config.get("command"), path), run_cap=run_cap)
    for key, spec in flatten_parameters(raw, path).items():
        mapped = to_distribution(spec, f"{path}: parameters.{key}", grid=method == "grid")
        if isinstance(mapped, BaseDistribution):
            sweep.parameters[key] = mapped
        else:
            sweep.fixed[key] = mapped[0]
    if not sweep.parameters:
        raise SweepError(f"{path}: parameters: every parameter is a fixed value; nothing to search")
    return sweep


def flatten_parameters(raw: Mapping[str, Any], path: Path, prefix: str = "") -> dict[str, dict]:
    """Dotted keys from flat (``model.lr``) or nested (``model: {parameters: {lr: ...}}``) parameters."""
    flat = {}
    for key, spec in raw.items():
        name = f"{prefix}{key}"
        if not isinstance(spec, dict):
            raise SweepError(f"{path}: parameters.{name}: expected a spec such as {{values: [...]}} or {{min: .., max: ..}}, got {spec!r}")
        if "parameters" in spec:
            flat.update(flatten_parameters(spec["parameters"], path, f"{name}."))
        else:
            flat[name] = spec
    return flat


def to_distribution(spec: Mapping[str, Any], where: str, grid: bool = False) -> BaseDistribution | tuple[Any]:
    """One W&B parameter spec as an Optuna distribution, or ``(value,)`` for a fixed ``value``."""
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; valid: value, values, min, max, distribution, q")
    kind = spec.get("distribution") or infer_distribution(spec, where)
    if kind in UNSUPPORTED or kind == "categorical" and "probabilities" in spec:
        reason = "weighted choices" if kind == "categorical" else UNSUPPORTED[kind]
        raise SweepError(f"{where}: distribution {kind} ({reason}) has no Optuna equivalent; valid here: {', '.join(DISTRIBUTIONS)}")
    if kind not in DISTRIBUTIONS:
        raise SweepError(f"{where}: unknown distribution {kind!r}; valid here: {', '.join(DISTRIBUTIONS)}")
    if kind == "constant":
        if "value" not in spec:
            raise SweepError(f"{where}: distribution constant needs value")
        return (spec["value"],)
    if kind == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: values must be a non-empty list, got {values!r}")
        # Optuna stores None/bool/int/float/str choices; others (lists, mappings) as W&B's text of them.
        return CategoricalDistribution([v if v is None or isinstance(v, (bool, int, float, str)) else str(v) for v in values])
    low, high = spec.get("min"), spec.get("max")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        hint = " (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(low, str) or isinstance(high, str) else ""
        raise SweepError(f"{where}: distribution {kind} needs numbers min < max, got min={low!r}, max={high!r}{hint}")
    q = spec.get("q", 1)
    if not isinstance(q, (int, float)) or q <= 0:
        raise SweepError(f"{where}: q must be a number > 0, got {q!r}")
    if kind == "int_uniform":
        if not (isinstance(low, int) and isinstance(high, int)):
            raise SweepError(f"{where}: int_uniform needs integer min and max, got {low!r}, {high!r}")
        dist = IntDistribution(low, high)
    elif kind == "q_uniform":
        dist = IntDistribution(low, high, step=q) if all(isinstance(v, int) for v in (low, high, q)) else FloatDistribution(low, high, step=q)
    elif kind == "uniform":
        dist = FloatDistribution(low, high)
    elif kind == "log_uniform":  # W&B: exp(U(min, max)), i.e. log-uniform between e^min and e^max
        dist = FloatDistribution(math.exp(low), math.exp(high), log=True)
    else:  # log_uniform_values, q_log_uniform_values
        if low <= 0:
            raise SweepError(f"{where}: {kind} needs min > 0, got {low!r}")
        if kind == "log_uniform_values":
            dist = FloatDistribution(low, high, log=True)
        elif q == 1 and isinstance(low, int) and isinstance(high, int):
            dist = IntDistribution(low, high, log=True)
        else:
            raise SweepError(f"{where}: q_log_uniform_values maps to Optuna only with q: 1 and integer min/max "
                             f"(Optuna has no log scale with a step); use log_uniform_values")
    if grid:
        if isinstance(dist, FloatDistribution) and dist.step is None:
            raise SweepError(f"{where}: method grid needs a finite set of values, but {kind} is a continuous range; "
                             f"use values: [...], int_uniform or q_uniform")
        return CategoricalDistribution(grid_values(dist))
    return dist


def infer_distribution(spec: Mapping[str, Any], where: str) -> str:
    """W&B's defaults: value -> constant, values -> categorical, integer min/max -> int_uniform, else uniform."""
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise SweepError(f"{where}: cannot map {dict(spec)!r} to a distribution; give value, values, or min and max")


def grid_values(dist: IntDistribution | FloatDistribution, limit: int = 10_000) -> list:
    """Every value of a stepped range, for a grid."""
    count = int(round((dist.high - dist.low) / dist.step)) + 1
    if count > limit:
        raise SweepError(f"a grid range with {count} values (more than {limit}); use a larger q or fewer values")
    values = [dist.low + i * dist.step for i in range(count)]
    return values if isinstance(dist, IntDistribution) else [round(v, 12) for v in values]


def parse_command(command: Any, path: Path) -> list[str]:
    """The ptft arguments of a W&B ``command`` ``[${env}, ptft, fit, -c, CONFIG, ..., ${args}]``."""
    valid = 'give command: [ptft, fit, -c, CONFIG.yaml, "${args}"]'
    if not isinstance(command, list) or not command:
        raise SweepError(f"{path}: command: missing; {valid}")
    words = [re.sub(r"\$\{envvar:([A-Za-z0-9_]*)\}", lambda m: os.environ.get(m.group(1), m.group(1)), str(w)) for w in command]
    words = [w for w in words if w != "${env}"]
    if not words or Path(words[0]).name != "ptft" or len(words) < 2 or words[1] != "fit":
        raise SweepError(f"{path}: command: must run ptft fit, got {' '.join(map(str, command))}; {valid}")
    macros = [w for w in words if w.startswith("${")]
    if macros != ["${args}"]:
        raise SweepError(f"{path}: command: needs ${{args}} once and no other macro (found {', '.join(macros) or 'none'}); {valid}")
    return words[1:]


# ---------------------------------------------------------------- trials


def sampler_for(sweep: Sweep, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """grid -> GridSampler, random -> RandomSampler, bayes -> TPESampler."""
    if sweep.method == "grid":
        return optuna.samplers.GridSampler({k: list(d.choices) for k, d in sweep.parameters.items()}, seed=seed)
    if sweep.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def suggest(trial: optuna.Trial, sweep: Sweep) -> dict[str, Any]:
    """The trial's values of every parameter, fixed ones included."""
    values = dict(sweep.fixed)
    for key, dist in sweep.parameters.items():
        if isinstance(dist, CategoricalDistribution):
            values[key] = trial.suggest_categorical(key, dist.choices)
        elif isinstance(dist, IntDistribution):
            values[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            values[key] = trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return values


def trial_args(values: Mapping[str, Any]) -> list[str]:
    """``--key=value`` as W&B's ``${args}`` writes them (jsonargparse reads the value as YAML)."""
    return [f"--{key}={value}" for key, value in values.items()]


def fit_args(sweep: Sweep, overrides: list[str], values: Mapping[str, Any]) -> list[str]:
    """The ``ptft`` arguments of a trial: the YAML's command with the overrides, then the trial's
    ``--key=value``, in place of ``${args}`` (so the swept values win over the overrides)."""
    at = sweep.command.index("${args}")
    return sweep.command[:at] + overrides + trial_args(values) + sweep.command[at + 1:]


def first_point(sweep: Sweep) -> dict[str, Any]:
    """One valid value per parameter (the first choice or the low end), to check the command early."""
    point = dict(sweep.fixed)
    for key, dist in sweep.parameters.items():
        point[key] = dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low
    return point


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> None:
    """Write the scalar ``trainer.callback_metrics`` as ``{name: float}`` JSON (called by the ptft CLI)."""
    scalars = {}
    for name, value in metrics.items():
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            scalars[name] = float(value)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(scalars, indent=1, sort_keys=True))


def read_metric(path: str | Path, name: str) -> float:
    """The metric ``name`` from a metrics file; :class:`TrialFailed` when missing or not finite."""
    path = Path(path)
    if not path.is_file():
        raise TrialFailed(f"no metrics file {path}: the run did not reach the end of fit")
    metrics = json.loads(path.read_text())
    if name not in metrics:
        raise TrialFailed(f"metric {name} was not logged; logged: {', '.join(sorted(metrics)) or 'nothing'}")
    if not math.isfinite(metrics[name]):
        raise TrialFailed(f"metric {name} is {metrics[name]}")
    return metrics[name]


def tail(path: Path, lines: int = 12) -> str:
    """The last non-empty lines of a log file (progress-bar carriage returns resolved)."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return "\n".join("    " + line for line in [k for k in kept if k.strip()][-lines:])


class Objective:
    """Runs one trial as a ``ptft fit`` subprocess and returns its metric."""

    def __init__(self, sweep: Sweep, overrides: list[str], log_dir: Path) -> None:
        self.sweep, self.overrides, self.log_dir = sweep, overrides, log_dir

    def command(self, values: Mapping[str, Any]) -> list[str]:
        return [sys.executable, "-m", "ptft.cli", *fit_args(self.sweep, self.overrides, values)]

    def env(self, number: int, metrics_file: Path) -> dict[str, str]:
        return {**os.environ, METRICS_FILE_ENV: str(metrics_file), "WANDB_RUN_GROUP": self.sweep.name,
                "WANDB_NAME": f"{self.sweep.name}-{number}"}

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.sweep)
        folder = self.log_dir / f"trial-{trial.number}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").unlink(missing_ok=True)  # left by a deleted study's trial of this number
        command = self.command(values)
        trial.set_user_attr("command", shlex.join(["ptft", *command[3:]]))
        trial.set_user_attr("log_dir", str(folder))
        shown = " ".join(trial_args({k: values[k] for k in self.sweep.parameters}))
        print(f"ptft sweep: trial {trial.number}: {shown}", flush=True)
        start = time.monotonic()
        with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, env=self.env(trial.number, folder / "metrics.json"))
            try:
                code = process.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the run too: let it stop, then stop the sweep
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=60)
                process.kill()
                raise
        seconds = time.monotonic() - start
        checkpoint = re.search(r"^ptft: checkpoint (.+)$", (folder / "stdout.txt").read_text(errors="replace"), re.M)
        if checkpoint:
            trial.set_user_attr("checkpoint", checkpoint.group(1))
        try:
            if code != 0:
                raise TrialFailed(f"exit status {code}")
            value = read_metric(folder / "metrics.json", self.sweep.metric)
        except TrialFailed as error:
            print(f"ptft sweep: trial {trial.number} FAILED after {seconds:.0f} s: {error}; "
                  f"last lines of {folder / 'stderr.txt'}:\n{tail(folder / 'stderr.txt')}", flush=True)
            raise
        print(f"ptft sweep: trial {trial.number}: {self.sweep.metric}={value:.6g} ({seconds:.0f} s)", flush=True)
        return value


# ---------------------------------------------------------------- study, table, command


def default_storage(sweep_dir: Path, name: str) -> str:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(sweep_dir / f'{name}.db').resolve()}"


def open_study(sweep: Sweep, storage: str, seed: int | None = None) -> optuna.Study:
    """Create the study or load it (same name in the same database): an interrupted sweep resumes."""
    if "://" not in storage:
        raise SweepError(f"--storage: {storage!r} is not a database URL; e.g. sqlite:///runs/sweeps/x.db or postgresql://host/db")
    try:
        # Heartbeats: a trial whose sweep process was killed is marked failed instead of running forever.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180)
        study = optuna.create_study(study_name=sweep.name, storage=rdb, sampler=sampler_for(sweep, seed),
                                    direction=sweep.direction, load_if_exists=True)
    except (ImportError, ValueError, optuna.exceptions.OptunaError) as error:
        raise SweepError(f"--storage {storage}: {' '.join(str(error).split())[:300]}") from None
    except Exception as error:  # SQLAlchemy: cannot connect, cannot create the file, ...
        raise SweepError(f"--storage {storage}: cannot open the database: {' '.join(str(error).split())[:300]}") from None
    if study.direction.name.lower() != sweep.direction:
        raise SweepError(f"study {sweep.name} in {storage} was created to {study.direction.name.lower()}, "
                         f"but metric.goal is {sweep.direction}; rename the sweep or use another --storage")
    return study


def results_table(study: optuna.Study, sweep: Sweep) -> str:
    """All trials of the study: finished ones by the metric (best first), then the others by number."""
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value, reverse=sweep.goal == "maximize")
    rows = [["trial", "state", sweep.metric, *sweep.parameters]]
    for t in done + sorted((t for t in trials if t.state != TrialState.COMPLETE), key=lambda t: t.number):
        rows.append([str(t.number), t.state.name, "-" if t.value is None else f"{t.value:.4g}",
                     *[_short(t.params.get(k, "-")) for k in sweep.parameters]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _key(arg: str) -> str:
    """``--model.init_args.lr=1`` -> ``model.lr``: the parameter an override sets."""
    return arg.lstrip("-").split("=", 1)[0].replace(".init_args.", ".")


def check_command(sweep: Sweep, overrides: list[str]) -> None:
    """Parse the trial command (first value of each parameter, and each other non-numeric choice)
    with ptft's own parser, so a wrong key or choice fails here once, not in every trial."""
    from ptft.cli import run_cli

    points = [first_point(sweep)]
    for key, dist in sweep.parameters.items():  # choices that a parser may take or refuse one by one (not numbers)
        if isinstance(dist, CategoricalDistribution):
            points += [{**points[0], key: c} for c in dist.choices[1:] if not isinstance(c, (int, float)) or isinstance(c, bool)]
    for point in points:
        args = fit_args(sweep, overrides, point) + ["--print_config"]
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LightningCLI: "args given and sys.argv too" (ours is sweep's argv)
                run_cli(args)
        except SystemExit as exit_info:
            if exit_info.code not in (None, 0):
                raise SweepError(f"{sweep.path}: ptft fit rejects the trial arguments "
                                 f"{' '.join(overrides + trial_args(point))}: {_parser_error(stderr.getvalue())}") from None


def _parser_error(text: str) -> str:
    """The gist of a jsonargparse error, on one line."""
    message = " ".join(text[text.find("error:") + 6:].split()) if "error:" in text else " ".join(text.split())
    message = message.split(" Given value type:")[0]
    nested = re.findall(r"Problem with given class_path '([^']+)': (.*)", message)
    return (f"{nested[-1][0]}: {nested[-1][1]}" if nested else message)[:500]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ptft sweep", allow_abbrev=False,
                description="Run a W&B-format sweep YAML locally with Optuna; each trial is a `ptft fit` subprocess. "
                            "Other arguments (--trainer.max_steps=50, --data.root=..., -c more.yaml) apply to every trial.")
    p.add_argument("config", help="a sweep YAML, e.g. configs/sweeps/gan_imagenette.yaml")
    p.add_argument("--count", type=int, help="trials to run in this call (a grid: default the rest of it)")
    p.add_argument("--storage", help="database URL of the study (default: sqlite:///<sweep_dir>/<name>.db)")
    p.add_argument("--sweep_dir", default="runs/sweeps", help="folder of the default database and of the trials' logs (default runs/sweeps)")
    p.add_argument("--seed", type=int, help="seed of the sampler")
    return p


def main(argv: list[str]) -> None:
    """``ptft sweep CONFIG --count N [--storage URL] [overrides...]``."""
    p = parser()
    options, overrides = p.parse_known_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # ptft prints one line per trial itself
    try:
        sweep = load_sweep(options.config)
        if options.count is not None and options.count < 1:
            raise SweepError(f"--count must be >= 1, got {options.count}")
        if options.count is None and sweep.method != "grid":
            raise SweepError(f"--count N is needed for method {sweep.method} (only a grid has a natural end)")
        clash = sorted({_key(a) for a in overrides if a.startswith("--")} & {_key(k) for k in sweep.parameters})
        if clash:
            raise SweepError(f"override(s) --{', --'.join(clash)} would replace swept parameters of {sweep.path}; "
                             f"remove them or fix them with value: in the YAML")
        check_command(sweep, overrides)
        sweep_dir = Path(options.sweep_dir)
        storage = options.storage or default_storage(sweep_dir, sweep.name)
        study = open_study(sweep, storage, options.seed)
    except SweepError as error:
        p.exit(2, f"ptft sweep: error: {error}\n")
    before = len(study.trials)
    grid = isinstance(study.sampler, optuna.samplers.GridSampler)
    count = options.count or math.prod(len(d.choices) for d in sweep.parameters.values())  # a grid stops when complete
    if grid and study.sampler.is_exhausted(study):
        count = 0
    if sweep.run_cap is not None:
        count = min(count, max(sweep.run_cap - before, 0))
    print(f"ptft sweep: study {sweep.name} ({sweep.method}, {sweep.goal} {sweep.metric}) in {storage}: "
          f"{before} trial(s) so far, running up to {count} more", flush=True)
    objective = Objective(sweep, overrides, sweep_dir / sweep.name)
    interrupted = False
    try:
        if count:
            study.optimize(objective, n_trials=count, catch=(TrialFailed,))
    except KeyboardInterrupt:
        interrupted = True
    print(f"\n{results_table(study, sweep)}")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        print(f"\nbest: trial {best.number}, {sweep.metric}={best.value:.6g}: {best.user_attrs.get('command', '')}")
        if best.user_attrs.get("checkpoint"):
            print(f"      checkpoint {best.user_attrs['checkpoint']}")
    if grid and study.sampler.is_exhausted(study):
        print("ptft sweep: the grid is complete")
    if interrupted:
        print("ptft sweep: interrupted; run the same command again to continue the study", file=sys.stderr)
        sys.exit(130)
