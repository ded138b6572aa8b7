"""W&B parameter specs and methods -> Optuna distributions and samplers."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from helpers import write_sweep
from ptft.errors import SweepError
from ptft.sweep.search import sampler_for, to_distribution
from ptft.sweep.spec import load_sweep


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


def test_sampler_per_method(tmp_path):
    samplers = {"grid": optuna.samplers.GridSampler, "random": optuna.samplers.RandomSampler, "bayes": optuna.samplers.TPESampler}
    for method, sampler in samplers.items():
        parameters = {"model.layer_decay": {"values": [0.5, 1.0]}, "model.mask_ratio": {"value": 0.5}}
        sweep = load_sweep(write_sweep(tmp_path, name=method, method=method, parameters=parameters))
        assert isinstance(sampler_for(sweep), sampler)
        assert sweep.fixed == {"model.mask_ratio": 0.5} and list(sweep.parameters) == ["model.layer_decay"]
