"""CTC: the loss on a hand-computed case, feasibility, and greedy decoding."""

import math

import torch
import torch.nn.functional as F

from ptft.ctc_decoding import greedy_decode
from ptft.tasks.ctc import ctc_feasible


def test_ctc_loss_matches_a_hand_computed_case():
    # two frames, labels {blank=0, a=1}; target "a" has three alignments: a a, a -, - a
    probs = torch.tensor([[0.6, 0.4], [0.3, 0.7]])
    expected = -math.log(0.4 * 0.7 + 0.4 * 0.3 + 0.6 * 0.7)
    loss = F.ctc_loss(probs.log()[:, None], torch.tensor([[1]]), torch.tensor([2]), torch.tensor([1]), blank=0, reduction="sum")
    assert abs(loss.item() - expected) < 1e-6


def test_feasibility_counts_repeats():
    targets = torch.tensor([[1, 1, 2, 0], [1, 2, 3, 0], [1, 1, 0, 0]])
    lengths = torch.tensor([3, 3, 2])
    # "aab" needs 4 frames (a - a b), "abc" 3, "aa" 3
    assert ctc_feasible(torch.tensor([3, 3, 3]), targets, lengths).tolist() == [False, True, True]
    assert ctc_feasible(torch.tensor([4, 2, 2]), targets, lengths).tolist() == [True, False, False]
    # the padding (id 0 repeated) is never counted as a repeat
    assert ctc_feasible(torch.tensor([2]), torch.tensor([[1, 2, 0, 0, 0]]), torch.tensor([2])).tolist() == [True]


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3], [2, 0, 2, 2, 3, 3, 3, 3, 3]])
    log_probs = F.one_hot(path, 4).float().log_softmax(-1)
    assert greedy_decode(log_probs, torch.tensor([9, 4]), blank=0) == [[1, 1, 2, 3], [2, 2]]
