"""The ``ptft sweep`` command: its arguments, the study's storage, the trials, the results."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import optuna

from ptft.errors import SweepError
from ptft.sweep.report import best_trial, results_table
from ptft.sweep.runner import Objective, check_command
from ptft.sweep.search import grid_space, sampler_for
from ptft.sweep.spec import Sweep, load_sweep
from ptft.sweep.trials import grid_points, run_trials


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


def _key(arg: str) -> str:
    """``--model.init_args.lr=1`` -> ``model.lr``: the parameter an override sets."""
    return arg.lstrip("-").split("=", 1)[0].replace(".init_args.", ".")


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
        sweep_dir = Path(options.sweep_dir)
        objective = Objective(sweep, overrides, sweep_dir / sweep.name)
        check_command(sweep, overrides)
        storage = options.storage or default_storage(sweep_dir, sweep.name)
        study = open_study(sweep, storage, options.seed)
    except SweepError as error:
        p.exit(2, f"ptft sweep: error: {error}\n")
    before = len(study.trials)
    grid = grid_space(sweep) if sweep.method == "grid" else None
    points = math.prod(map(len, grid.values())) if grid else 0
    count = options.count or points - grid_points(study, grid)[0]  # a grid: the points no trial holds
    if sweep.run_cap is not None:
        count = min(count, max(sweep.run_cap - before, 0))
    print(f"ptft sweep: study {sweep.name} ({sweep.method}, {sweep.goal} {sweep.metric}) in {storage}: "
          f"{before} trial(s) so far, running up to {count} more", flush=True)
    interrupted = False
    try:
        run_trials(study, objective, count, sweep_dir / f"{sweep.name}.lock", grid)
    except KeyboardInterrupt:
        interrupted = True
    print(f"\n{results_table(study, sweep)}")
    best = best_trial(study, sweep)
    if best:
        print(f"\n{best}")
    if grid:
        held, finished = grid_points(study, grid)
        if finished == points:
            print("ptft sweep: the grid is complete")
        elif held == points:
            print(f"ptft sweep: every grid point is taken; {points - finished} still running in other processes")
    if interrupted:
        print("ptft sweep: interrupted; run the same command again to continue the study", file=sys.stderr)
        sys.exit(130)
