"""The collapse indicators on hand-made cases."""

import pytest
import torch

from ptft.pretext.collapse import normalized_std, state_spread


def test_state_spread_is_zero_for_one_repeated_state_and_one_for_opposite_states():
    v = torch.tensor([3.0, 4.0])
    assert state_spread(v.repeat(5, 1)).item() == 0
    assert state_spread(torch.stack([v, -v])).item() == pytest.approx(1.0)  # each is |v| from the mean 0, norm |v|
    # mean (3, 4.5); distances 0.5 each; norms 5 and sqrt(34): spread 0.5 / mean norm
    assert state_spread(torch.tensor([[3.0, 4.0], [3.0, 5.0]])).item() == pytest.approx(0.5 / ((5 + 34 ** 0.5) / 2))
    assert state_spread(torch.zeros(3, 4)).item() == 0  # no division by zero


def test_normalized_std_is_zero_at_collapse_and_near_one_when_spread():
    torch.manual_seed(0)
    assert normalized_std(torch.ones(8, 16)).item() == 0
    assert normalized_std(torch.randn(4096, 16)).item() == pytest.approx(1.0, abs=0.05)
