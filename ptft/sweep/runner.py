"""A trial: its ``ptft fit`` command line (checked once before the sweep starts), run as a
subprocess, and its outcome read from the :class:`~ptft.callbacks.TrialReport` file it writes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.distributions import CategoricalDistribution

from ptft.cli import run_cli
from ptft.errors import SweepError
from ptft.sweep.search import first_point, suggest
from ptft.sweep.spec import Sweep, check_configs

REPORT_FILE = "report.json"


class TrialFailed(Exception):
    """A trial whose run exited non-zero or did not log a finite metric."""


def trial_args(values: Mapping[str, Any]) -> list[str]:
    """``--key=value`` as W&B's ``${args}`` writes them (jsonargparse reads the value as YAML)."""
    return [f"--{key}={value}" for key, value in values.items()]


def fit_args(sweep: Sweep, overrides: list[str], values: Mapping[str, Any]) -> list[str]:
    """The ``ptft`` arguments of a trial: the YAML's command with the overrides, then the trial's
    ``--key=value``, in place of ``${args}`` (so the swept values win over the overrides)."""
    at = sweep.command.index("${args}")
    return sweep.command[:at] + overrides + trial_args(values) + sweep.command[at + 1:]


def report_args(path: str | Path) -> list[str]:
    """Appends a TrialReport writing ``path`` to ``trainer.callbacks``. It goes after every other
    argument, so a config's callback list cannot replace it, and as one JSON value, so a
    ``--trainer.callbacks.X=`` meant for the callback before it stays with that one."""
    spec = {"class_path": "ptft.callbacks.TrialReport", "init_args": {"path": str(path)}}
    return [f"--trainer.callbacks+={json.dumps(spec)}"]


def ptft_script() -> str:
    """The ``ptft`` console script of this Python. Trials run it rather than ``python -m``, which
    would put the working folder first on their ``sys.path``."""
    script = shutil.which("ptft", path=os.path.dirname(sys.executable))
    if script is None:
        raise SweepError(f"no ptft command next to {sys.executable}: install ptft into this environment (pip install -e .)")
    return script


def read_report(path: Path) -> dict[str, Any]:
    """A trial's TrialReport, or ``{}`` when the run wrote none (it stopped before fit began)."""
    return json.loads(path.read_text()) if path.is_file() else {}


def trial_metric(code: int, report: Mapping[str, Any], path: Path, name: str) -> float:
    """The metric ``name`` of a run that exited with ``code``; :class:`TrialFailed` when it failed."""
    if code != 0:
        raise TrialFailed(f"exit status {code}" + (f" ({report['error']})" if report.get("error") else ""))
    if not report:
        raise TrialFailed(f"no report file {path}: the run did not reach the end of fit")
    metrics = report["metrics"]
    if name not in metrics:
        raise TrialFailed(f"metric {name} was not logged or is not finite; finite: {', '.join(sorted(metrics)) or 'nothing'}")
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
        self.script = ptft_script()

    def command(self, values: Mapping[str, Any], report: Path) -> list[str]:
        """The trial's ``ptft fit``; its ``trainer.default_root_dir`` is its own log folder (last, so
        it wins), so runs without a logger never share a checkpoint folder."""
        return [self.script, *fit_args(self.sweep, self.overrides, values), f"--trainer.default_root_dir={report.parent}", *report_args(report)]

    def env(self, number: int) -> dict[str, str]:
        """The sweep's environment with the trial's W&B names. Empty ``PYTHONPATH`` entries are
        dropped: one (``:/my/pkg``, from ``PYTHONPATH=$PYTHONPATH:/my/pkg``) would put the trial's
        working folder on its ``sys.path``."""
        env = {**os.environ, "WANDB_RUN_GROUP": self.sweep.name, "WANDB_NAME": f"{self.sweep.name}-{number}"}
        if "PYTHONPATH" in env:
            env["PYTHONPATH"] = os.pathsep.join(entry for entry in env["PYTHONPATH"].split(os.pathsep) if entry)
        return env

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.sweep)
        folder = self.log_dir / f"trial-{trial.number}"
        folder.mkdir(parents=True, exist_ok=True)
        report_file = (folder / REPORT_FILE).resolve()
        report_file.unlink(missing_ok=True)  # left by a deleted study's trial of this number
        trial.set_user_attr("command", shlex.join(["ptft", *fit_args(self.sweep, self.overrides, values)]))
        trial.set_user_attr("log_dir", str(folder))
        shown = " ".join(trial_args({k: values[k] for k in self.sweep.parameters}))
        print(f"ptft sweep: trial {trial.number}: {shown}", flush=True)
        start = time.monotonic()
        with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
            process = subprocess.Popen(self.command(values, report_file), stdout=out, stderr=err, env=self.env(trial.number))
            try:
                code = process.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the run too: let it stop, then stop the sweep
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=60)
                process.kill()
                raise
        seconds = time.monotonic() - start
        report = read_report(report_file)
        if report.get("checkpoint"):
            trial.set_user_attr("checkpoint", report["checkpoint"])
        try:
            value = trial_metric(code, report, report_file, self.sweep.metric)
        except TrialFailed as error:
            print(f"ptft sweep: trial {trial.number} FAILED after {seconds:.0f} s: {error}; "
                  f"last lines of {folder / 'stderr.txt'}:\n{tail(folder / 'stderr.txt')}", flush=True)
            raise
        print(f"ptft sweep: trial {trial.number}: {self.sweep.metric}={value:.6g} ({seconds:.0f} s)", flush=True)
        return value


def check_command(sweep: Sweep, overrides: list[str]) -> None:
    """Parse the trial command (first value of each parameter, and each other non-numeric choice)
    with ptft's own parser, so a missing config, a wrong key or a wrong choice fails here once, not in every trial."""
    check_configs(sweep, overrides)
    points = [first_point(sweep)]
    for key, dist in sweep.parameters.items():  # choices that a parser may take or refuse one by one (not numbers)
        if isinstance(dist, CategoricalDistribution):
            points += [{**points[0], key: c} for c in dist.choices[1:] if not isinstance(c, (int, float)) or isinstance(c, bool)]
    for point in points:
        args = fit_args(sweep, overrides, point) + report_args(REPORT_FILE) + ["--print_config"]
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
