"""Speech backbones (DeepSpeech2, Conformer): subsampling by 4, padding, layer groups, hand-off."""

import json

import pytest
import torch

from ptft.backbones import Conformer, DeepSpeech2
from ptft.backbones.base import SequenceFeatures
from ptft.backbones.conv_subsampling import ConvSubsampling
from ptft.data.audio_features import LogMelSettings
from ptft.data.spec import DataSpec
from ptft.errors import ConfigError
from ptft.handoff import build_backbone, load_weights

N_MELS = 12
MAKERS = {
    "deepspeech2": lambda **kw: DeepSpeech2(**{"n_mels": N_MELS, "conv_channels": 4, "hidden_size": 8, "num_layers": 2, "dropout": 0.0, **kw}),
    "deepspeech2-unidirectional": lambda **kw: DeepSpeech2(**{"n_mels": N_MELS, "conv_channels": 4, "hidden_size": 8, "num_layers": 2, "dropout": 0.0, "bidirectional": False, **kw}),
    "conformer": lambda **kw: Conformer(**{"n_mels": N_MELS, "width": 16, "heads": 2, "depth": 2, "kernel_size": 5, "dropout": 0.0, **kw}),
}
OUT_DIM = {"deepspeech2": 16, "deepspeech2-unidirectional": 8, "conformer": 16}


def padded(lengths: list[int], steps: int | None = None) -> SequenceFeatures:
    """Random frames, zero at padding (as LogMelFeatures gives them), and their mask."""
    steps = steps or max(lengths)
    mask = torch.arange(steps)[None] < torch.tensor(lengths)[:, None]
    return SequenceFeatures(torch.randn(len(lengths), steps, N_MELS) * mask[..., None], mask)


@pytest.fixture(params=list(MAKERS))
def kind(request):
    return request.param


def test_shapes_mask_and_mean_pooling(kind):
    model = MAKERS[kind]().eval()
    assert model.input_kind == "audio" and model.time_reduction == 4 and model.out_dim == OUT_DIM[kind]
    x = padded([37, 20, 9])
    states, mask = model.forward_features(x)
    assert states.shape == (3, 10, model.out_dim) and mask.shape == (3, 10)
    assert mask.sum(1).tolist() == [10, 5, 3]
    weights = mask[..., None].float()
    assert torch.allclose(model(x), (states * weights).sum(1) / weights.sum(1), atol=1e-6)
    # a bare tensor means nothing is padded
    bare = model.forward_features(x.states[:1])
    assert bare.mask is None and torch.allclose(bare.states, model.forward_features(SequenceFeatures(x.states[:1], None)).states)


def test_output_lengths_match_the_convolutions_for_every_length(kind):
    model = MAKERS[kind]().eval()
    lengths = list(range(1, 34))
    with torch.no_grad():
        alone = [model.forward_features(padded([n]).states).states.shape[1] for n in lengths]
        batched = model.forward_features(padded(lengths)).mask.sum(1).tolist()
    expected = [-(-n // 4) for n in lengths]  # ceil(n / 4)
    assert alone == batched == expected == model.output_lengths(torch.tensor(lengths)).tolist()
    assert model.output_lengths(torch.tensor([0])).tolist() == [1]  # an empty utterance still gives one frame


def test_padding_does_not_change_the_states_of_real_frames(kind):
    model = MAKERS[kind]().eval()
    lengths = [29, 17, 6, 1]
    x = padded(lengths, steps=35)
    with torch.no_grad():
        batch = model.forward_features(x)
        for i, n in enumerate(lengths):
            alone = model.forward_features(SequenceFeatures(x.states[i:i + 1, :n], None)).states[0]
            assert torch.allclose(batch.states[i, :len(alone)], alone, atol=1e-5), (i, n)
        assert torch.allclose(model(x)[1:2], model(x.states[1:2, :17]), atol=1e-5)


def test_layer_groups_cover_every_parameter_once_in_depth_order(kind):
    model = MAKERS[kind]()
    groups = model.layer_groups()
    names = [n for g in groups for n in g]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters()) and len(names) == len(set(names))
    assert all(groups) and all(n.startswith("subsampling.") for n in groups[0])
    layers = "blocks" if kind == "conformer" else "layers"
    for i, group in enumerate(groups[1:3]):
        assert all(n.startswith(f"{layers}.{i}.") for n in group)
    if kind == "conformer":
        assert len(groups) == 1 + 2
    else:
        assert len(groups) == 1 + 2 + 1 and groups[-1] == ["norm.weight", "norm.bias"]


def test_gradients_reach_every_parameter(kind):
    model = MAKERS[kind]().train()
    model(padded([23, 11])).pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bf16_autocast_forward_on_cpu(kind):
    model = MAKERS[kind]().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        states, mask = model.forward_features(padded([19, 7]))
    assert states.dtype == torch.bfloat16 and states.shape == (2, 5, model.out_dim)
    assert torch.isfinite(states).all() and mask.sum(1).tolist() == [5, 2]


def test_spec_round_trips_through_build_backbone(kind):
    model = MAKERS[kind]().eval()
    spec = json.loads(json.dumps(model.spec()))
    assert spec["class_path"].startswith("ptft.backbones.") and spec["init_args"]["n_mels"] == N_MELS
    rebuilt = build_backbone(spec).eval()
    load_weights(rebuilt, model.state_dict(), "test")
    x = padded([15, 8])
    assert torch.equal(rebuilt.forward_features(x).states, model.forward_features(x).states)


def test_check_data_wants_audio_with_the_backbones_n_mels(kind):
    model = MAKERS[kind]()
    model.check_data(DataSpec("audio", audio=LogMelSettings(n_mels=N_MELS)))
    model.check_data(DataSpec("audio"))
    with pytest.raises(ConfigError, match="reads audio inputs"):
        model.check_data(DataSpec("text"))
    with pytest.raises(ConfigError, match=rf"gives 40 mel bands .* n_mels={N_MELS}; set model.backbone.init_args.n_mels=40 or data.n_mels={N_MELS}"):
        model.check_data(DataSpec("audio", audio=LogMelSettings(n_mels=40)))
    with pytest.raises(ConfigError, match=rf"\(B, T, n_mels={N_MELS}\), got a tensor of shape \(2, 9, 40\)"):
        model(torch.randn(2, 9, 40))


@pytest.mark.parametrize("make, message", [
    (lambda: Conformer(width=10, heads=4), "width 10 must be divisible by heads 4"),
    (lambda: Conformer(kernel_size=4), "kernel_size must be odd, got 4"),
    (lambda: Conformer(depth=0), "depth must be >= 1, got 0"),
    (lambda: Conformer(ffn_ratio=0), "ffn_ratio must be > 0"),
    (lambda: DeepSpeech2(num_layers=0), "num_layers must be >= 1, got 0"),
    (lambda: DeepSpeech2(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    (lambda: ConvSubsampling(80, 8, kernel_sizes=((3, 3), (4, 3))), "kernel_sizes must be two odd"),
    (lambda: ConvSubsampling(80, 8, activation="gelu"), "activation must be one of relu, hardtanh"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_conformer_blocks_compute_what_torchaudios_conformer_computes_without_padding():
    from torchaudio.models import Conformer as TorchaudioConformer

    model = MAKERS["conformer"]().eval()
    reference = TorchaudioConformer(16, 2, 64, 2, 5).eval()
    reference.load_state_dict({k.replace("blocks.", "conformer_layers.", 1): v for k, v in model.blocks.state_dict(prefix="blocks.").items()})
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        ours = x
        for block in model.blocks:
            ours = block(ours, None)
        theirs, _ = reference(x, torch.tensor([9, 9]))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_the_subsampling_gives_ceil_of_a_quarter_of_the_frames_and_mel_bands():
    sub = ConvSubsampling(N_MELS, 3, out_dim=None)
    assert sub.out_dim == 3 * 3  # 12 -> 6 -> 3 bands
    states, mask = sub(torch.randn(2, 10, N_MELS), torch.tensor([[True] * 10, [True] * 5 + [False] * 5]))
    assert states.shape == (2, 3, 9) and mask.sum(1).tolist() == [3, 2]
    assert (states[1, 2:] == 0).all()  # padded outputs are zero
