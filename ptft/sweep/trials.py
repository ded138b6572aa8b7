"""Running a study's trials in this process while other processes may run trials of the same study:
a grid trial is created only while a point is free, under a lock every process of the sweep takes,
so each grid point is run once (Optuna's GridSampler alone lets two processes take one point)."""

from __future__ import annotations

import contextlib
import fcntl
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize runs beside a trial
from optuna.trial import TrialState

from ptft.sweep.runner import TrialFailed

GridSpace = Mapping[str, Sequence[Any]]


@contextlib.contextmanager
def claim_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes; the system releases it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield


def grid_points(study: optuna.Study, space: GridSpace) -> tuple[int, int]:
    """How many points of the grid ``space`` a trial holds (running or finished), and how many are finished."""
    held, finished = set(), set()
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.system_attrs
        if "grid_id" in attrs and attrs.get("search_space") == space and trial.state != TrialState.WAITING:
            held.add(attrs["grid_id"])
            if trial.state.is_finished():
                finished.add(attrs["grid_id"])
    return len(held), len(finished)


def run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float], count: int, lock: Path,
               grid: GridSpace | None = None) -> None:
    """Run up to ``count`` trials one after another; a grid (``grid``: its search space) stops when
    every point is held. A trial that raises :class:`TrialFailed` is recorded as failed and the next
    one starts; other errors (Ctrl-C) fail it and propagate. A trial's heartbeat lets other processes
    fail it (and free its point) once this process has died."""
    for _ in range(count):
        with claim_lock(lock), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's heartbeat "is supposed to be used with Study.optimize": as here
            optuna.storages.fail_stale_trials(study)  # frees the points of trials whose process died
            if grid is not None and grid_points(study, grid)[0] == math.prod(map(len, grid.values())):
                return
            trial = study.ask()  # the sampler gives a grid trial a point no trial holds
        with get_heartbeat_thread(trial._trial_id, study._storage):
            try:
                value = objective(trial)
            except TrialFailed:
                study.tell(trial, state=TrialState.FAIL)
                continue
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
        study.tell(trial, value)
