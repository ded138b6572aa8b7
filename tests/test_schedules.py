import math

import pytest
import torch

from ptft.errors import ConfigError
from ptft.schedules import WarmupCosine, build_scheduler


def sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def trace(optimizer, schedule, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_warmup_then_cosine_for_every_group():
    parameters = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": parameters[:1], "lr": 1.0}, {"params": parameters[1:], "lr": 0.5}], lr=1.0)
    schedule = WarmupCosine(optimizer, warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    first = [lr[0] for lr in lrs]
    assert first[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # linear warmup
    assert first[4] == pytest.approx(1.0)  # peak
    assert first[8] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half way down the cosine
    assert first[12] == pytest.approx(0.1) and first[13] == pytest.approx(0.1)  # floor, then held
    assert all(b == pytest.approx(a / 2) for a, b in lrs)  # the second group follows at its own scale


def test_the_run_length_sizes_the_schedule_and_a_fraction_its_warmup():
    optimizer = sgd()
    schedule = build_scheduler(lambda opt: WarmupCosine(opt, warmup_fraction=0.25), optimizer, 20)
    assert (schedule.warmup_steps, schedule.total_steps) == (5, 20)
    lrs = trace(optimizer, schedule, 21)
    assert lrs[5] == pytest.approx(1.0) and lrs[4] < 1.0  # peak after the 5 warmup steps
    assert lrs[19] > 0 and lrs[20] == pytest.approx(0.0)  # the cosine ends with the run
    steps = build_scheduler(lambda opt: WarmupCosine(opt, warmup_steps=3), sgd(), 50)
    assert (steps.warmup_steps, steps.total_steps) == (3, 50)  # a step count is not scaled
    given = build_scheduler(lambda opt: WarmupCosine(opt, warmup_fraction=0.1, total_steps=30), sgd(), 50)
    assert (given.warmup_steps, given.total_steps) == (3, 30)  # an explicit total_steps wins; the fraction is of it


def test_the_run_length_does_not_outlive_the_call():
    build_scheduler(lambda opt: WarmupCosine(opt), sgd(), 20)
    with pytest.raises(ConfigError, match="lr_scheduler.init_args.total_steps is not set"):
        WarmupCosine(sgd())


@pytest.mark.parametrize("run", [math.inf, -1])  # max_epochs=-1 without max_steps; an unsized loader without max_steps
def test_a_run_without_a_length_is_named(run):
    with pytest.raises(ConfigError, match="trainer.max_steps or trainer.max_epochs"):
        build_scheduler(lambda opt: WarmupCosine(opt, warmup_fraction=0.1), sgd(), run)
    assert build_scheduler(lambda opt: WarmupCosine(opt, warmup_steps=2, total_steps=10), sgd(), run).total_steps == 10


@pytest.mark.parametrize("kwargs, message", [
    ({"warmup_steps": 10, "total_steps": 10}, "need 0 <= warmup < total steps, got 10 and 10"),
    ({"warmup_steps": 1, "warmup_fraction": 0.1, "total_steps": 10}, "give warmup_steps or warmup_fraction, not both"),
    ({"warmup_fraction": 1.0, "total_steps": 10}, r"warmup_fraction must be in \[0, 1\)"),
    ({"total_steps": 10, "min_lr_ratio": 2.0}, r"min_lr_ratio must be in \[0, 1\]"),
])
def test_bad_schedule_is_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        WarmupCosine(sgd(), **kwargs)


def test_a_resumed_schedule_keeps_its_position_and_takes_its_shape_from_the_run():
    optimizer = sgd()
    saved = build_scheduler(lambda opt: WarmupCosine(opt, warmup_steps=2), optimizer, 10)
    trace(optimizer, saved, 6)
    resumed = build_scheduler(lambda opt: WarmupCosine(opt, warmup_steps=2), sgd(), 20)  # resumed with a longer max_steps
    resumed.load_state_dict(saved.state_dict())
    assert (resumed.last_epoch, resumed.total_steps) == (6, 20)
