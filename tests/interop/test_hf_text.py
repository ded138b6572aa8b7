"""Hugging Face BERT and GPT-2 <-> ptft TextTransformer: imports compute what the source model
computes, exports load in ``transformers`` with every weight in place and compute what ptft does,
and what has no exact counterpart is refused."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from ptft.backbones.text import TextTransformer  # noqa: E402
from ptft.errors import ConfigError  # noqa: E402
from ptft.handoff import load_module, read_pretrained  # noqa: E402
from ptft.interop.foreign import read_foreign  # noqa: E402
from ptft.interop.hf_bert import export_bert  # noqa: E402
from ptft.interop.hf_gpt2 import export_gpt2  # noqa: E402

VOCAB, LENGTH, WIDTH = 99, 40, 32
LENGTHS = (12, 9, 5)  # right-padded rows


def perturbed(model):
    """``model`` with every parameter moved off its init (biases 0 and LayerNorm weights 1 would
    hide a mapping that swaps them), in evaluation mode."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def padded_ids(pad=0):
    """Random ids (never ``pad``) right-padded with ``pad``, and the attention mask of the real ones."""
    torch.manual_seed(2)
    ids = torch.randint(1, VOCAB, (len(LENGTHS), max(LENGTHS)))
    mask = torch.arange(max(LENGTHS))[None, :] < torch.tensor(LENGTHS)[:, None]
    return ids.masked_fill(~mask, pad), mask


def assert_close_where(ours, theirs, mask):
    assert ours.shape == theirs.shape
    assert torch.allclose(ours[mask], theirs[mask], atol=1e-5), (ours[mask] - theirs[mask]).abs().max()


def tiny_bert(cls=None, **kw):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=LENGTH, **kw)
    return perturbed((cls or transformers.BertForMaskedLM)(config))


def tiny_gpt2(**kw):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=WIDTH, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=LENGTH,
                                     bos_token_id=VOCAB - 1, eos_token_id=VOCAB - 1, **kw)
    return perturbed(transformers.GPT2LMHeadModel(config))


def save_bin(model, folder):
    """A folder as older transformers wrote it: config.json and a pickled pytorch_model.bin."""
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


def write_hf_folder(folder, config, state):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, str(folder / "model.safetensors"))
    return folder


def imported(folder):
    return load_module(read_pretrained(folder)).eval()


@pytest.mark.parametrize("kind,fmt", [("mlm", "safetensors"), ("mlm", "bin"), ("mlm", "sharded"), ("base", "safetensors")])
def test_bert_import_computes_the_bert_states_at_every_real_token(tmp_path, kind, fmt):
    model = tiny_bert(transformers.BertModel if kind == "base" else transformers.BertForMaskedLM)
    if fmt == "bin":
        save_bin(model, tmp_path)
    else:
        model.save_pretrained(tmp_path, max_shard_size="20KB" if fmt == "sharded" else "5GB")
    assert (tmp_path / "model.safetensors.index.json").is_file() == (fmt == "sharded")
    assert (tmp_path / "pytorch_model.bin").is_file() == (fmt == "bin")
    ids, mask = padded_ids()
    with torch.no_grad():
        theirs = (model if kind == "base" else model.bert)(ids, attention_mask=mask.long()).last_hidden_state
        features = imported(tmp_path).forward_features(ids)
    assert torch.equal(features.mask, mask)
    assert_close_where(features.states, theirs, mask)
    dropped = read_foreign(tmp_path).dropped
    if kind == "base":
        assert dropped == ["pooler.dense.bias", "pooler.dense.weight"]
    else:
        assert "cls.predictions.transform.dense.weight" in dropped and "cls.predictions.bias" in dropped
        assert all(key.startswith("cls.predictions.") for key in dropped)


def test_bert_import_spec_reads_the_config(tmp_path):
    tiny_bert(hidden_act="gelu_new", layer_norm_eps=1e-7, type_vocab_size=3, hidden_dropout_prob=0.2).save_pretrained(tmp_path)
    args = read_pretrained(tmp_path).specs["backbone"]["init_args"]
    assert args == {"vocab_size": VOCAB, "max_length": LENGTH, "depth": 2, "width": WIDTH, "heads": 4, "mlp_ratio": 2.0,
                    "causal": False, "pool": "cls", "pad_id": 0, "dropout": 0.2, "attention_dropout": 0.1, "bias": True,
                    "norm_position": "post", "token_types": 3, "norm_eps": 1e-7, "activation": "gelu_tanh"}


def test_bert_pretraining_heads_and_pooler_are_dropped_on_purpose(tmp_path):
    tiny_bert(transformers.BertForPreTraining).save_pretrained(tmp_path)
    dropped = read_foreign(tmp_path).dropped
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.predictions.bias", "cls.seq_relationship.weight"} <= set(dropped)


@pytest.mark.parametrize("kw", [{"token_types": 2}, {"token_types": 0, "activation": "gelu_tanh", "bias": False}])
def test_bert_export_loads_in_transformers_with_every_weight_and_computes_the_same(tmp_path, kw):
    ours = perturbed(TextTransformer(vocab_size=VOCAB, max_length=LENGTH, depth=2, width=WIDTH, heads=4, mlp_ratio=1.5, dropout=0.0,
                                     norm_position="post", norm_eps=1e-12, **kw))
    config, state = export_bert(ours)
    folder = write_hf_folder(tmp_path / "bert", config, state)
    theirs, info = transformers.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert type(theirs) is transformers.BertModel
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and not info["mismatched_keys"], info
    ids, mask = padded_ids()
    with torch.no_grad():
        expected = ours.hidden_states(ids)
        assert_close_where(expected, theirs.eval()(ids, attention_mask=mask.long()).last_hidden_state, mask)
        assert_close_where(expected, imported(folder).hidden_states(ids), mask)  # and back into ptft


def test_gpt2_import_computes_the_gpt2_logits(tmp_path):
    model = tiny_gpt2()
    model.save_pretrained(tmp_path)
    ids, mask = padded_ids()
    backbone = imported(tmp_path)
    assert backbone.spec()["init_args"]["pad_id"] == -1 and backbone.causal and backbone.pool_kind == "last"
    with torch.no_grad():
        logits = backbone.hidden_states(ids) @ backbone.token_embedding.weight.T
        assert_close_where(logits, model(ids, attention_mask=mask.long()).logits, mask)
        # <|endoftext|> inside a sequence is attended to, as in GPT-2: it is not taken for padding
        ids[:, 2] = VOCAB - 1
        assert_close_where(backbone.hidden_states(ids), model.transformer(ids).last_hidden_state, mask)


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_gpt2_tied_lm_head_and_mask_buffers_are_dropped_and_an_untied_head_refused(tmp_path, prefix):
    model = tiny_gpt2()
    state = {prefix + k: v.clone() for k, v in model.transformer.state_dict().items()}
    state.update({f"{prefix}h.{i}.attn.bias": torch.ones(1, 1, LENGTH, LENGTH).tril() for i in range(2)})  # older checkpoints' buffers
    config = model.config.to_dict()
    tied = write_hf_folder(tmp_path / "tied", config, {**state, "lm_head.weight": state[f"{prefix}wte.weight"].clone()})
    assert read_foreign(tied).dropped == sorted([f"{prefix}h.0.attn.bias", f"{prefix}h.1.attn.bias", "lm_head.weight"])
    untied = write_hf_folder(tmp_path / "untied", config, {**state, "lm_head.weight": state[f"{prefix}wte.weight"] + 1})
    with pytest.raises(ConfigError, match="lm_head.weight is not tied to wte"):
        read_foreign(untied)


@pytest.mark.parametrize("bias", [True, False])
def test_gpt2_export_loads_in_transformers_with_every_weight_and_computes_the_same(tmp_path, bias):
    ours = perturbed(TextTransformer(vocab_size=VOCAB, max_length=LENGTH, depth=2, width=WIDTH, heads=4, causal=True, dropout=0.0,
                                     bias=bias, norm_eps=1e-5, activation="gelu_tanh"))
    config, state = export_gpt2(ours)
    folder = write_hf_folder(tmp_path / "gpt2", config, state)
    theirs, info = transformers.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert type(theirs) is transformers.GPT2Model
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and not info["mismatched_keys"], info
    ids, mask = padded_ids()
    with torch.no_grad():
        expected = ours.hidden_states(ids)
        assert_close_where(expected, theirs.eval()(ids, attention_mask=mask.long()).last_hidden_state, mask)
        assert_close_where(expected, imported(folder).hidden_states(ids), mask)


def test_exports_without_an_exact_counterpart_are_refused():
    shape = dict(vocab_size=VOCAB, max_length=LENGTH, depth=1, width=WIDTH, heads=4)
    with pytest.raises(ConfigError, match=r"post-LN; this TextTransformer is pre-LN \(norm_position: pre\)"):
        export_bert(TextTransformer(**shape))
    with pytest.raises(ConfigError, match=r"causal \(causal: true\)"):
        export_bert(TextTransformer(**shape, norm_position="post", causal=True))
    with pytest.raises(ConfigError, match=r"norm_position: post"):
        export_gpt2(TextTransformer(**shape, norm_position="post", causal=True))
    with pytest.raises(ConfigError, match=r"bidirectional \(causal: false\)"):
        export_gpt2(TextTransformer(**shape))
    with pytest.raises(ConfigError, match="norm_eps unset"):  # ptft's default eps: 1e-6 in the blocks, 1e-5 in the final norm
        export_gpt2(TextTransformer(**shape, causal=True))


@pytest.mark.parametrize("model,key,value,named", [
    ("bert", "position_embedding_type", "relative_key", "position_embedding_type 'relative_key'"),
    ("bert", "hidden_act", "relu", "hidden_act 'relu'"),
    ("bert", "is_decoder", True, "is_decoder"),
    ("gpt2", "scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx"),
    ("gpt2", "scale_attn_weights", False, "scale_attn_weights"),
])
def test_imports_refuse_what_ptft_cannot_compute_naming_the_setting(tmp_path, model, key, value, named):
    (tiny_bert() if model == "bert" else tiny_gpt2()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(ConfigError, match=named):
        read_pretrained(tmp_path)
