import math

import pytest
import torch

from ptft.schedules import WarmupCosine


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


def test_bad_schedule_is_named():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="0 <= warmup_steps < total_steps"):
        WarmupCosine(optimizer, warmup_steps=10, total_steps=10)
