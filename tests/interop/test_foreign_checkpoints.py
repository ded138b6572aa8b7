"""Foreign checkpoints through ptft's own entry points: bad input refused in one line naming the
file or key, `ptft inspect`, `ptft export --format`, and an imported BERT fine-tuned by `ptft fit`."""

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_text_data
from helpers import CONFIGS, checkpoint_from, run_ptft
from ptft.errors import ConfigError, MissingPathError
from ptft.handoff import read_pretrained

transformers = pytest.importorskip("transformers")


def tiny_bert(folder, **config):
    """A random BertForMaskedLM saved as Hugging Face does (config.json + model.safetensors)."""
    torch.manual_seed(0)
    settings = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    max_position_embeddings=40, pad_token_id=0) | config
    model = transformers.BertForMaskedLM(transformers.BertConfig(**settings)).eval()
    model.save_pretrained(folder)
    return model


def test_a_folder_without_config_json_is_refused_naming_it(tmp_path):
    save_file({"w": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(MissingPathError, match="config.json"):
        read_pretrained(tmp_path)


def test_an_architecture_without_a_ptft_backbone_is_named(tmp_path):
    tiny_bert(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(ConfigError, match="model_type 'llama' has no ptft backbone; ptft imports bert, gpt2, vit, vit_mae"):
        read_pretrained(tmp_path)


def test_weights_whose_shapes_disagree_with_their_config_are_refused_naming_the_keys(tmp_path):
    tiny_bert(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(ConfigError, match=r"mlp\.0\.weight"):
        read_pretrained(tmp_path)


def test_a_tensor_the_converter_does_not_know_is_refused_naming_it(tmp_path):
    tiny_bert(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({**state, "bert.extra.adapter": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(ConfigError, match="bert.extra.adapter"):
        read_pretrained(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (print, ("this ran while unpickling",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    tiny_bert(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"bert.embeddings.word_embeddings.weight": _Exploit()}))
    with pytest.raises(ConfigError, match="pytorch_model.bin: refusing to load"):
        read_pretrained(tmp_path)
    torch.save({"conv1.weight": _Exploit()}, tmp_path / "resnet.pth")
    with pytest.raises(ConfigError, match="resnet.pth: refusing to load"):
        read_pretrained(tmp_path / "resnet.pth")
    assert "this ran" not in capsys.readouterr().out


def test_a_sharded_index_that_names_a_missing_shard_is_refused(tmp_path):
    model = tiny_bert(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    read_pretrained(tmp_path)  # complete: loads
    (tmp_path / shards[-1]).unlink()
    with pytest.raises(MissingPathError, match=f"names shards that are not in .*: {shards[-1]}"):
        read_pretrained(tmp_path)


def test_ptft_inspect_describes_foreign_and_ptft_models_and_export_refuses_what_has_no_counterpart(tmp_path):
    tiny_bert(tmp_path / "bert")
    shown = run_ptft("inspect", str(tmp_path / "bert"), cwd=tmp_path).stdout
    assert "format: Hugging Face bert" in shown and "maps to: ptft.backbones.text.TextTransformer(" in shown
    assert "norm_position='post'" in shown and "cls.predictions" in shown

    run_ptft("export", str(tmp_path / "bert"), str(tmp_path / "as_ptft"), cwd=tmp_path)
    shown = run_ptft("inspect", str(tmp_path / "as_ptft"), cwd=tmp_path).stdout
    assert "format: ptft export (format version 2), written by Hugging Face bert" in shown and "module backbone: TextTransformer" in shown

    refused = run_ptft("export", str(tmp_path / "bert"), str(tmp_path / "as_timm"), "--format", "timm", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "a TextTransformer has no timm counterpart" in refused.stderr
    assert not (tmp_path / "as_timm").exists()
    missing = run_ptft("inspect", str(tmp_path / "nothing"), cwd=tmp_path, check=False)
    assert missing.returncode == 2 and "nothing does not exist" in missing.stderr


def wordpiece_tokenizer(words):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words)])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def test_an_imported_bert_fine_tunes_through_ptft_fit_and_exports_back(tmp_path):
    root = make_text_data(tmp_path / "data")
    words = {w for line in (root / "sst2/train.tsv").read_text().splitlines()[1:] for w in line.split("\t")[0].lower().split()}
    tokenizer = wordpiece_tokenizer(words)
    tiny_bert(tmp_path / "bert", vocab_size=tokenizer.get_vocab_size())
    tokenizer.save(str(tmp_path / "bert/tokenizer.json"))

    result = run_ptft("fit", "-c", str(CONFIGS / "finetune/sst2_from_mlm.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
                      f"--model.pretrained={tmp_path / 'bert'}", f"--data.root={root / 'sst2'}", "--data.max_length=32",
                      "--data.batch_size=16", "--trainer.max_steps=4", "--trainer.enable_progress_bar=false", cwd=tmp_path)
    shown = run_ptft("inspect", checkpoint_from(result), cwd=tmp_path).stdout
    assert "format: ptft checkpoint, step 4, written by ptft.tasks.classification.Classification" in shown and "labels (2): 0, 1" in shown
    run_ptft("export", checkpoint_from(result), str(tmp_path / "tuned"), cwd=tmp_path)
    tuned = read_pretrained(tmp_path / "tuned")
    assert tuned.labels == ["0", "1"] and json.loads(tuned.tokenizer)["model"]["type"] == "WordPiece"
    assert tuned.specs["backbone"]["init_args"]["norm_position"] == "post"
    imported = read_pretrained(tmp_path / "bert").states["backbone"]
    changed = [k for k, v in tuned.states["backbone"].items() if not torch.equal(v, imported[k])]
    assert changed, "fine-tuning did not change the imported weights"

    checked = run_ptft("export", str(tmp_path / "tuned"), str(tmp_path / "tuned_hf"), "--format", "hf", "--check", cwd=tmp_path)
    assert "ptft: checked: hf's outputs equal ptft's within" in checked.stdout
    model, info = transformers.AutoModel.from_pretrained(tmp_path / "tuned_hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert (tmp_path / "tuned_hf/tokenizer.json").is_file()


def test_export_check_loads_the_export_in_its_library_and_writes_nothing_when_it_fails(tmp_path, monkeypatch):
    import torchvision

    from ptft.interop import export as export_module
    from ptft.interop.export import export_foreign

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    shown = run_ptft("export", str(tmp_path / "resnet18.pth"), str(tmp_path / "timm"), "--format", "timm", "--check", cwd=tmp_path).stdout
    assert "ptft: checked: timm's outputs equal ptft's within" in shown and (tmp_path / "timm/model.safetensors").is_file()
    refused = run_ptft("export", str(tmp_path / "resnet18.pth"), str(tmp_path / "ptft"), "--check", cwd=tmp_path, check=False)
    assert refused.returncode == 2 and "give --format hf or --format timm" in refused.stderr

    real = export_module.resnet.export_timm_resnet

    def off_by_a_little(backbone):
        config, state = real(backbone)
        return config, {**state, "layer4.1.bn2.bias": state["layer4.1.bn2.bias"] + 0.01}

    monkeypatch.setattr(export_module.resnet, "export_timm_resnet", off_by_a_little)
    with pytest.raises(ConfigError, match="the timm export computes something else: outputs differ by up to 1"):
        export_foreign(tmp_path / "resnet18.pth", tmp_path / "wrong", "timm", check=True)
    assert not (tmp_path / "wrong").exists()

    monkeypatch.setitem(__import__("sys").modules, "timm", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"--check loads the export with timm, which is not installed: pip install 'ptft\[interop\]'"):
        export_foreign(tmp_path / "resnet18.pth", tmp_path / "none", "timm", check=True)
    assert not (tmp_path / "none").exists()
