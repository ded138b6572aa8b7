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


def test_an_unalignable_transcript_is_left_out_and_counted_never_an_infinite_loss():
    from ptft.backbones import Conformer
    from ptft.backbones.base import SequenceFeatures
    from ptft.data.audio_features import LogMelSettings
    from ptft.data.spec import DataSpec
    from ptft.data.speech_batch import SpeechBatch
    from ptft.data.tokenizer import train_char_tokenizer
    from ptft.tasks.ctc import CTCFineTuning

    vocabulary = train_char_tokenizer(["abc"], 16)
    torch.manual_seed(0)
    model = CTCFineTuning(backbone=Conformer(n_mels=8, width=16, heads=2, depth=1), data_spec=DataSpec("audio", tokenizer=vocabulary,
                                                                                                          audio=LogMelSettings(n_mels=8)))
    states = torch.randn(2, 16, 8)  # 16 frames -> 4 output frames each
    targets = torch.tensor([[6, 7, 0, 0, 0, 0], [6, 7, 8, 6, 7, 8]])  # "ab" fits 4 frames, "abcabc" does not
    batch = SpeechBatch(SequenceFeatures(states, torch.ones(2, 16, dtype=torch.bool)), torch.tensor([16, 16]), targets, torch.tensor([2, 6]))
    log_probs, lengths = model(batch)
    loss, skipped = model.ctc_loss(log_probs, lengths, batch)
    assert int(skipped) == 1 and torch.isfinite(loss)
    alone = F.ctc_loss(log_probs[:1].transpose(0, 1), targets[:1, :2], lengths[:1], torch.tensor([2]), blank=0, reduction="mean")
    assert torch.allclose(loss, alone)  # the mean over the alignable utterance only, per target label
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    none, skipped = model.ctc_loss(log_probs[1:], lengths[1:], SpeechBatch(batch.inputs, lengths[1:], targets[1:], torch.tensor([6])))
    assert float(none) == 0 and int(skipped) == 1 and none.requires_grad  # nothing alignable: a zero that still has a graph


def test_beam_search_agrees_with_greedy_on_a_confident_path():
    from ptft.ctc_decoding import BeamSearchDecoder, transcript
    from ptft.data.tokenizer import train_char_tokenizer

    vocabulary = train_char_tokenizer(["ab ba"], 16)
    tokens = [vocabulary.tokenizer.id_to_token(i) for i in range(vocabulary.vocab_size)]
    a, b, space = (vocabulary.tokenizer.token_to_id(c) for c in ("a", "b", " "))
    path = torch.tensor([[a, a, 0, b, space, b, 0, a, a]])
    log_probs = (F.one_hot(path, vocabulary.vocab_size).float() * 8).log_softmax(-1)
    lengths = torch.tensor([9])
    greedy = [transcript(vocabulary, ids) for ids in greedy_decode(log_probs, lengths, blank=0)]
    beam = [transcript(vocabulary, ids) for ids in BeamSearchDecoder(tokens, blank=0, beam_size=8)(log_probs, lengths)]
    assert greedy == beam == ["ab ba"]
