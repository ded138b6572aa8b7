"""Span masking of speech frames, BEST-RQ's random-projection quantizer and the perplexity of its codes."""

import torch

from ptft.backbones.base import SequenceFeatures
from ptft.pretext.code_perplexity import CodePerplexity
from ptft.pretext.frame_masking import mask_inputs, span_mask, stack_frames
from ptft.pretext.random_projection_quantizer import RandomProjectionQuantizer


def test_span_mask_covers_only_real_frames_in_whole_spans():
    lengths = torch.tensor([50, 30, 3, 1])
    mask = span_mask(lengths, 50, 0.05, 5, torch.Generator().manual_seed(0))
    assert mask.shape == (4, 50)
    real = torch.arange(50)[None] < lengths[:, None]
    assert not (mask & ~real).any()
    assert mask.any(1).all()  # every utterance has masked frames, even a one-frame one
    # runs of masked frames are at least one span long unless cut by the utterance's end
    for row, n in zip(mask.tolist(), lengths.tolist()):
        runs, run = [], 0
        for i, m in enumerate(row[:n] + [False]):
            if m:
                run += 1
            elif run:
                runs.append((run, i == n))
                run = 0
        assert all(r >= 5 or at_end for r, at_end in runs)


def test_span_mask_ratio_follows_the_probability():
    lengths = torch.full((64,), 400)
    ratio = span_mask(lengths, 400, 0.05, 10, torch.Generator().manual_seed(1)).float().mean().item()
    assert abs(ratio - (1 - 0.95**10)) < 0.05  # a frame is masked when a span starts in the 10 frames up to it


def test_stack_frames_and_mask_inputs():
    frames = torch.arange(2 * 10 * 3, dtype=torch.float).reshape(2, 10, 3)
    stacked = stack_frames(frames, 4, 3)
    assert stacked.shape == (2, 3, 12)
    assert torch.equal(stacked[0, 1], frames[0, 4:8].reshape(12))
    assert torch.equal(stacked[0, 2, 6:], torch.zeros(6))  # past the end: zeros
    hidden = torch.tensor([[False, True, False], [False, False, False]])
    masked = mask_inputs(SequenceFeatures(frames, None), hidden, 4, 0.0)
    assert torch.equal(masked.states[0, 4:8], torch.zeros(4, 3))
    assert torch.equal(masked.states[0, :4], frames[0, :4]) and torch.equal(masked.states[0, 8:], frames[0, 8:])
    assert torch.equal(masked.states[1], frames[1])


def test_quantizer_gives_fixed_nearest_codes():
    frames = torch.randn(100, 12, generator=torch.Generator().manual_seed(0))
    first, second = RandomProjectionQuantizer(12, 4, 32, seed=3), RandomProjectionQuantizer(12, 4, 32, seed=3)
    codes = first(frames)
    assert torch.equal(codes, second(frames))  # a function of the input and the seed only
    assert not torch.equal(codes, RandomProjectionQuantizer(12, 4, 32, seed=4)(frames))
    projected = torch.nn.functional.normalize(frames @ first.projection, dim=-1)
    distances = torch.cdist(projected, first.codebook)
    assert torch.equal(codes, distances.argmin(-1))  # nearest codeword
    assert codes.unique().numel() > 5
    assert not any(p.requires_grad for p in first.parameters()) and len(first.state_dict()) == 2


def test_code_perplexity_counts_real_frames_only():
    metric = CodePerplexity(8)
    metric.update(torch.tensor([[0, 1, 2, 3, 7, 7]]), torch.tensor([[True, True, True, True, False, False]]))  # the two 7s are padding
    assert metric.compute().item() == 4.0  # four codes, equally often
    metric.update(torch.tensor([0, 0, 0, 0]), torch.ones(4, dtype=torch.bool))
    shares = torch.tensor([5, 1, 1, 1]) / 8
    assert torch.isclose(metric.compute(), torch.exp(-(shares * shares.log()).sum()))
    metric.reset()
    metric.update(torch.full((3, 5), 6), torch.ones(3, 5, dtype=torch.bool))
    assert metric.compute().item() == 1.0  # every frame gets the same code


def test_centred_codes_ignore_each_frames_loudness_and_use_more_codes():
    from ptft.backbones import Conformer
    from ptft.tasks import BestRQPretraining

    backbone = Conformer(n_mels=8, width=16, heads=2, depth=1)  # 4 input frames of 8 bands per output frame
    plain, centred = BestRQPretraining(backbone, codebook_size=64), BestRQPretraining(backbone, codebook_size=64, center_frames=True)
    generator = torch.Generator().manual_seed(0)
    shape = torch.randn(2, 200, 4, 8, generator=generator) * 0.3
    loudness = torch.randn(2, 200, 4, 1, generator=generator) * 3  # most of the variance, as in log-mel frames
    stacked, louder = (shape + loudness).flatten(-2), (shape + loudness + 2).flatten(-2)
    assert torch.equal(centred.codes(stacked), centred.codes(louder))  # a frame's codes do not depend on its loudness
    assert not torch.equal(plain.codes(stacked), plain.codes(louder))
    assert torch.equal(centred.codes(stacked), centred.quantizer((shape - shape.mean(-1, keepdim=True)).flatten(-2)))
    spread = {}
    for name, model in (("plain", plain), ("centred", centred)):
        metric = CodePerplexity(64)
        metric.update(model.codes(stacked), torch.ones(2, 200, dtype=torch.bool))
        spread[name] = metric.compute().item()
    assert spread["centred"] > 2 * spread["plain"], spread
