"""A W&B sweep YAML read and checked into a :class:`Sweep`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml
from optuna.distributions import BaseDistribution

from ptft.errors import SweepError
from ptft.sweep.search import to_distribution

METHODS = ("grid", "random", "bayes")
TOP_LEVEL_KEYS = {"name", "description", "program", "command", "method", "metric", "parameters", "early_terminate",
                  "run_cap", "project", "entity"}


@dataclass
class Sweep:
    """A parsed sweep YAML: ``parameters`` holds Optuna distributions, ``fixed`` the ``value:`` ones."""

    path: Path
    name: str
    method: str
    metric: str
    goal: str
    command: list[str]  # ptft arguments with "${args}" where the trial's arguments go; configs found (see resolve_configs)
    parameters: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    run_cap: int | None = None

    @property
    def direction(self) -> str:
        return self.goal  # "minimize" | "maximize", Optuna's words too


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
    return resolve_configs(words[1:], path)


def config_values(words: list[str]) -> Iterator[tuple[int, str, str]]:
    """``(index, prefix, file)`` of each ``-c FILE``, ``--config FILE`` and ``--config=FILE`` in ``words``."""
    for i, word in enumerate(words):
        if word in ("-c", "--config") and i + 1 < len(words) and not words[i + 1].startswith("${"):
            yield i + 1, "", words[i + 1]
        elif word.startswith("--config="):
            yield i, "--config=", word[len("--config="):]


def find_config(name: str, sweep_path: Path) -> Path | None:
    """The config file ``name``: relative to the working folder, else to the sweep file's folder or
    the nearest folder above it that has it (``configs/pretrain/x.yaml`` from ``configs/sweeps/``)."""
    path = Path(name).expanduser()
    if path.is_file() or path.is_absolute():
        return path if path.is_file() else None
    return next((folder / path for folder in sweep_path.resolve().parents if (folder / path).is_file()), None)


def resolve_configs(words: list[str], sweep_path: Path) -> list[str]:
    """The command with each config that is not in the working folder but is found from the sweep file
    as an absolute path, so that a sweep runs from any folder; one found nowhere stays as written
    (:func:`check_configs` names it)."""
    words = list(words)
    for i, prefix, name in config_values(words):
        found = find_config(name, sweep_path)
        if found is not None and not Path(name).expanduser().is_file():
            words[i] = prefix + str(found.resolve())
    return words


def check_configs(sweep: Sweep, overrides: list[str]) -> None:
    """A :class:`SweepError` naming the first ``-c`` file of the command or of the overrides that does not exist."""
    for _, _, name in config_values(sweep.command):
        if not Path(name).expanduser().is_file():
            raise SweepError(f"{sweep.path}: command: config file {name} not found in the working folder {Path.cwd()}, "
                             f"nor in {sweep.path.resolve().parent} or a folder above it")
    for _, _, name in config_values(overrides):
        if not Path(name).expanduser().is_file():
            raise SweepError(f"-c {name}: no such config file in the working folder {Path.cwd()}")
