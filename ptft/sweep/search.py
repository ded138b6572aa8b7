"""W&B sweep parameters and methods in Optuna's terms: distributions, grid values, samplers, suggestions."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ptft.errors import SweepError

if TYPE_CHECKING:
    from ptft.sweep.spec import Sweep

SPEC_KEYS = {"value", "values", "min", "max", "distribution", "q", "mu", "sigma", "a", "b", "probabilities", "parameters"}
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values",
                 "q_log_uniform_values")
UNSUPPORTED = {  # W&B distributions without an Optuna equivalent (Optuna samples bounded ranges, unweighted choices)
    "normal": "unbounded", "q_normal": "unbounded", "log_normal": "unbounded", "q_log_normal": "unbounded",
    "beta": "not a uniform family", "q_beta": "not a uniform family", "inv_log_uniform": "inverse log scale",
    "inv_log_uniform_values": "inverse log scale", "q_log_uniform": "log scale with a step",
}


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


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its stop at the end of the grid, which works only inside
    ``study.optimize``: :func:`ptft.sweep.trials.run_trials` creates a grid trial only while a point is free."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def grid_space(sweep: Sweep) -> dict[str, list]:
    """The grid of a grid sweep: every value of each parameter."""
    return {key: list(dist.choices) for key, dist in sweep.parameters.items()}


def sampler_for(sweep: Sweep, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """grid -> GridSampler, random -> RandomSampler, bayes -> TPESampler."""
    if sweep.method == "grid":
        return GridSampler(grid_space(sweep), seed=seed)
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


def first_point(sweep: Sweep) -> dict[str, Any]:
    """One valid value per parameter (the first choice or the low end), to check the command early."""
    point = dict(sweep.fixed)
    for key, dist in sweep.parameters.items():
        point[key] = dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low
    return point
