import json
import pickle
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from conftest import TESTS, make_sentiment_tsv
from helpers import run_ptft
from ptft.backbones import DCGANEncoder, TextTransformer
from ptft.cli import main
from ptft.data import ImageFolderDataModule, TextClassificationDataModule
from ptft.errors import ConfigError, one_line
from ptft.handoff import FORMAT_VERSION, export_backbone, load_backbone, load_checkpoint, load_module, read_backbone, read_pretrained
from ptft.pretext.generator import DCGANGenerator
from ptft.tasks import AutoencoderPretraining, CausalLMPretraining, Classification
from ptft.tasks.gan import load_generator
from ptft.tasks.language_model import load_causal_lm

LEGACY = TESTS / "fixtures"  # exports written before the format had a version


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint in the layout before format version 2 (``ptft.backbone``), plus pretext weights."""
    backbone = DCGANEncoder(base_width=8, num_layers=2)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["decoder.weight"] = torch.zeros(3)
    path = tmp_path / "pre.ckpt"
    torch.save({"state_dict": state, "ptft": {"task": "x", "backbone": backbone.spec()}}, path)
    return path, backbone


def test_export_writes_safetensors_without_prefix_and_a_rebuildable_spec(tmp_path, checkpoint, capsys):
    path, backbone = checkpoint
    main(["export", str(path), str(tmp_path / "out")])
    weights = load_file(tmp_path / "out" / "backbone.safetensors")
    assert set(weights) == set(backbone.state_dict())  # no "backbone." prefix, no decoder
    assert all(torch.equal(weights[k], v) for k, v in backbone.state_dict().items())
    manifest = json.loads((tmp_path / "out" / "backbone.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and list(manifest["modules"]) == ["backbone"]
    spec = manifest["modules"]["backbone"]
    assert spec["class_path"] == "ptft.backbones.dcgan.DCGANEncoder" and spec["init_args"]["base_width"] == 8
    assert "backbone.safetensors" in capsys.readouterr().out


def fit_briefly(model, datamodule, tmp_path):
    trainer = pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def test_an_image_export_written_before_the_format_version_still_fine_tunes(image_tree, tmp_path):
    legacy = LEGACY / "legacy_export_dcgan"
    assert "format_version" not in json.loads((legacy / "backbone.json").read_text())
    state = load_file(legacy / "backbone.safetensors")
    data = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    model = Classification(pretrained=str(legacy), mode="full", data_spec=data.spec)
    assert model.num_classes == 3 and all(torch.equal(model.backbone.state_dict()[k], v) for k, v in state.items())
    trainer = fit_briefly(model, data, tmp_path)
    assert trainer.global_step == 2 and not torch.equal(model.backbone.state_dict()["layers.0.weight"], state["layers.0.weight"])
    export_backbone(legacy, tmp_path / "again")  # an old export re-exports in the current format
    assert json.loads((tmp_path / "again/backbone.json").read_text())["format_version"] == FORMAT_VERSION
    assert read_backbone(tmp_path / "again")[0] == read_backbone(legacy)[0]


def test_a_text_export_written_before_the_format_version_still_fine_tunes_with_its_tokenizer(tmp_path):
    legacy = LEGACY / "legacy_export_mlm"
    for name, rows in (("train.tsv", 64), ("dev.tsv", 16)):
        make_sentiment_tsv(tmp_path / "sst2" / name, rows)
    data = TextClassificationDataModule(root=str(tmp_path / "sst2"), test_file=None, max_length=32, batch_size=8, tokenizer=str(legacy))
    model = Classification(pretrained=str(legacy), data_spec=data.spec)
    assert isinstance(model.backbone, TextTransformer) and data.spec.tokenizer.same_as(model.pretrained_tokenizer)
    assert fit_briefly(model, data, tmp_path).global_step == 2


class TwoModuleTask(AutoencoderPretraining):
    """A task handing on two named modules, as a seq2seq model hands on an encoder and a decoder."""

    def __init__(self, **kwargs):
        super().__init__(DCGANEncoder(base_width=4, num_layers=2), decoder_width=4, **kwargs)
        self.second = DCGANEncoder(base_width=2, num_layers=1)

    def handoff_modules(self):
        return {"backbone": self.backbone, "second": self.second}


def test_the_hand_off_carries_named_modules_with_a_format_version(image_tree, tmp_path):
    model = TwoModuleTask()
    trainer = fit_briefly(model, ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0), tmp_path)
    trainer.save_checkpoint(tmp_path / "two.ckpt")
    info = load_checkpoint(tmp_path / "two.ckpt")["ptft"]
    assert info["format_version"] == FORMAT_VERSION and list(info["modules"]) == ["backbone", "second"]
    assert info["labels"] == ["cat", "dog", "owl"] and info["task"].endswith("TwoModuleTask")
    out = export_backbone(tmp_path / "two.ckpt", tmp_path / "export")
    assert set(load_file(out / "second.safetensors")) == set(model.second.state_dict())  # each module its own file, no prefix
    pretrained = read_pretrained(out)
    second = load_module(pretrained, "second")
    assert all(torch.equal(second.state_dict()[k], v) for k, v in model.second.state_dict().items())
    with pytest.raises(ValueError, match="holds the modules backbone, second, not 'decoder'"):
        load_module(pretrained, "decoder")


def test_each_source_is_read_once_until_it_changes(tmp_path, checkpoint, monkeypatch):
    path, _ = checkpoint
    reads = []
    import ptft.handoff as handoff

    original = handoff.load_checkpoint
    monkeypatch.setattr(handoff, "load_checkpoint", lambda p: reads.append(p) or original(p))
    first = read_pretrained(path)
    assert read_pretrained(path) is first and read_backbone(path) and len(reads) == 1
    torch.save(load_checkpoint(path), path)  # rewritten: read again
    path.touch()
    read_pretrained(path)
    assert len(reads) == 2


def test_export_does_not_overwrite_an_existing_export(tmp_path, checkpoint):
    path, _ = checkpoint
    out = export_backbone(path, tmp_path / "out")
    before = (out / "backbone.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_backbone(path, out)
    with pytest.raises(SystemExit):
        main(["export", str(path), str(out)])
    assert (out / "backbone.safetensors").read_bytes() == before
    export_backbone(path, out, overwrite=True)


def test_a_checkpoint_without_a_ptft_spec_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="is not a ptft checkpoint"):
        read_backbone(path)
    with pytest.raises(ValueError, match="is not a ptft checkpoint"):
        export_backbone(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Exploit(str(target))}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="refusing to load"):
        export_backbone(path, tmp_path / "out")
    assert not target.exists()


def test_spec_must_name_a_backbone(tmp_path):
    out = tmp_path / "bad"
    out.mkdir()
    (out / "backbone.safetensors").write_bytes(b"")
    (out / "backbone.json").write_text(json.dumps({"class_path": "os.system", "init_args": {}}))
    with pytest.raises(ValueError, match="'os.system' is not a ptft backbone .* set PTFT_TRUSTED_MODULES=os$"):
        Classification(num_classes=2, pretrained=str(out))
    (out / "backbone.json").write_text(json.dumps({"class_path": "ptft.backbones.vit.ConfigError", "init_args": {}}))
    with pytest.raises(ValueError, match="'ptft.backbones.vit.ConfigError' is not a ptft.backbones.Backbone"):
        Classification(num_classes=2, pretrained=str(out))
    (out / "backbone.json").write_text(json.dumps({"class_path": "ptft.backbones.dcgan.DCGANEncoder", "init_args": {"bogus": 1}}))
    with pytest.raises(ValueError, match="init_args {'bogus': 1} do not fit its arguments .*unexpected keyword argument 'bogus'"):
        Classification(num_classes=2, pretrained=str(out))
    (out / "backbone.json").write_text(json.dumps(DCGANEncoder().spec()))
    with pytest.raises(ValueError, match="backbone.safetensors: not a readable safetensors file"):
        Classification(num_classes=2, pretrained=str(out))


LOAD_AND_LIST_MODULES = """
import sys
from ptft.errors import ConfigError
from ptft.handoff import load_backbone
for source in sys.argv[1:]:
    try:
        load_backbone(source)
    except ConfigError as error:
        print("refused:", error)
print("imported this:", "this" in sys.modules)
"""


def test_a_hostile_class_path_is_refused_before_anything_is_imported(tmp_path, checkpoint):
    export = tmp_path / "hostile"
    export.mkdir()
    (export / "backbone.safetensors").write_bytes(b"")
    (export / "backbone.json").write_text(json.dumps({"format_version": 2, "modules": {"backbone": {"class_path": "this.Foo", "init_args": {}}}}))
    path, _ = checkpoint
    edited = torch.load(path, weights_only=True)
    edited["ptft"]["backbone"]["class_path"] = "this.Foo"
    torch.save(edited, tmp_path / "edited.ckpt")
    for source in (export, tmp_path / "edited.ckpt"):  # a fresh process each: sys.modules starts clean
        result = subprocess.run([sys.executable, "-c", LOAD_AND_LIST_MODULES, str(source)], capture_output=True, text=True, timeout=300)
        assert result.stdout.splitlines() == [
            "refused: backbone class_path 'this.Foo' is not a ptft backbone (ptft.backbones.*) and was not imported; "
            "to load backbones from a module you trust, set PTFT_TRUSTED_MODULES=this", "imported this: False"], result.stderr
        exported = run_ptft("export", str(source), str(tmp_path / "out"), cwd=tmp_path, check=False)
        assert exported.returncode == 2 and "Beautiful is better than ugly" not in exported.stdout
        assert exported.stderr.startswith("ptft export: error: backbone class_path 'this.Foo' is not a ptft backbone") and exported.stderr.count("\n") == 1
        assert not (tmp_path / "out").exists()


def test_a_module_next_to_an_export_is_not_imported_when_its_folder_is_on_sys_path(tmp_path, monkeypatch, capsys):
    """As with ``python -m ptft.cli export . OUT`` run in the export's folder, which puts that folder
    first on ``sys.path``: a spec naming a module placed next to the export is refused, and the module never runs."""
    export = tmp_path / "export"
    export.mkdir()
    (export / "payload.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\nclass Evil: pass\n")
    (export / "backbone.json").write_text(json.dumps({"format_version": 2, "modules": {"backbone": {"class_path": "payload.Evil", "init_args": {}}}}))
    (export / "backbone.safetensors").write_bytes(b"")
    monkeypatch.chdir(export)
    monkeypatch.syspath_prepend(str(export))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", ".", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and capsys.readouterr().err == (
        "ptft export: error: backbone class_path 'payload.Evil' is not a ptft backbone (ptft.backbones.*) and was not imported; "
        "to load backbones from a module you trust, set PTFT_TRUSTED_MODULES=payload\n")
    assert "payload" not in sys.modules and not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()


def test_a_backbone_outside_ptft_loads_when_its_module_is_trusted(tmp_path, monkeypatch):
    from extensions.tiny_convnet import TinyConvNet

    backbone = TinyConvNet(width=4)
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()}, "ptft": {"backbone": backbone.spec()}}, path)
    monkeypatch.delenv("PTFT_TRUSTED_MODULES", raising=False)
    with pytest.raises(ValueError, match="set PTFT_TRUSTED_MODULES=extensions.tiny_convnet$"):
        load_module(read_pretrained(path))
    for trusted in ("extensions.tiny_convnet", "other, extensions"):  # a module, or a package and its submodules
        monkeypatch.setenv("PTFT_TRUSTED_MODULES", trusted)
        assert isinstance(load_module(read_pretrained(path)), TinyConvNet)
    monkeypatch.setenv("PTFT_TRUSTED_MODULES", "extensions.tiny")  # a prefix of a name is not the module
    with pytest.raises(ValueError, match="is not a ptft backbone"):
        load_module(read_pretrained(path))


WIDE = 10_000_000  # built for real, a TextTransformer this wide needs petabytes: a refusal naming shapes, not memory, proves nothing was allocated


def edited_checkpoint(tmp_path, name, checkpoint, edit):
    """``checkpoint`` saved weights-only clean, then with its stored spec changed by ``edit``."""
    edit(checkpoint["ptft"])
    path = tmp_path / f"{name}.ckpt"
    torch.save(checkpoint, path)
    return path


def wide_text_export(tmp_path):
    backbone = TextTransformer(vocab_size=50, max_length=16, depth=1, width=16, heads=2)
    path = tmp_path / "text.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()}, "ptft": {"backbone": backbone.spec()}}, path)
    export = export_backbone(path, tmp_path / "text_export")
    manifest = json.loads((export / "backbone.json").read_text())
    manifest["modules"]["backbone"]["init_args"]["width"] = WIDE
    (export / "backbone.json").write_text(json.dumps(manifest))
    return export


def wide_text_checkpoint(tmp_path):
    backbone = TextTransformer(vocab_size=50, max_length=16, depth=1, width=16, heads=2)
    checkpoint = {"state_dict": {f"backbone.{k}": v for k, v in backbone.state_dict().items()}, "ptft": {"backbone": backbone.spec()}}
    return edited_checkpoint(tmp_path, "text", checkpoint, lambda info: info["backbone"]["init_args"].update(width=WIDE))


def wide_causal_lm(tmp_path):
    model = CausalLMPretraining(TextTransformer(vocab_size=50, max_length=16, depth=1, width=16, heads=2, causal=True))
    checkpoint = {"state_dict": model.state_dict(), "ptft": {"backbone": model.backbone.spec(), "tokenizer": "{}",
                                                              "task": "ptft.tasks.language_model.CausalLMPretraining"}}
    return edited_checkpoint(tmp_path, "clm", checkpoint, lambda info: info["backbone"]["init_args"].update(width=WIDE))


def wide_generator(tmp_path):
    spec = {"latent_dim": 4, "image_size": 8, "base_width": 4, "norm": "batch"}
    state = {f"generator_ema.module.{k}": v for k, v in DCGANGenerator(**spec).state_dict().items()}
    return edited_checkpoint(tmp_path, "gan", {"state_dict": state, "ptft": {"generator": spec}}, lambda info: info["generator"].update(latent_dim=10**12))


@pytest.mark.parametrize("make, load, refusal, shapes", [
    (wide_text_export, load_backbone, "backbone weights in {} do not match the TextTransformer its spec describes (nothing was built)",
     "blocks.0.mlp.0.weight: (64, 16) in {}, (40000000, 10000000) here"),
    (wide_text_checkpoint, load_backbone, "backbone weights in {} do not match the TextTransformer its spec describes (nothing was built)",
     "blocks.0.mlp.0.weight: (64, 16) in {}, (40000000, 10000000) here"),
    (wide_causal_lm, load_causal_lm, "backbone weights in {} do not match the TextTransformer its spec describes (nothing was built)",
     "blocks.0.mlp.0.weight: (64, 16) in {}, (40000000, 10000000) here"),
    (wide_generator, load_generator, "generator weights in {} do not match the DCGANGenerator checkpoint['ptft']['generator'] describes (nothing was built)",
     "layers.0.weight: (4, 4, 4, 4) in {}, (1000000000000, 4, 4, 4) here"),
], ids=["export", "checkpoint", "causal_lm", "gan_generator"])
def test_a_spec_that_does_not_fit_its_weights_is_refused_before_anything_is_allocated(tmp_path, make, load, refusal, shapes):
    source = make(tmp_path)
    with pytest.raises(ConfigError) as refused:
        load(source)
    message = one_line(refused.value)
    assert message.startswith(refusal.format(source) + ": mis-shaped (") and shapes.format(source) in message


@pytest.mark.parametrize("make", [wide_text_export, wide_text_checkpoint], ids=["export", "checkpoint"])
def test_ptft_export_of_a_spec_that_does_not_fit_its_weights_is_one_line_and_writes_nothing(tmp_path, capsys, make):
    source = make(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(source), str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1
    assert error.startswith(f"ptft export: error: backbone weights in {source} do not match the TextTransformer its spec describes")
    assert not (tmp_path / "out").exists()
