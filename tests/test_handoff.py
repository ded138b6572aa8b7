import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from ptft.backbones import DCGANEncoder
from ptft.cli import main
from ptft.handoff import export_backbone, load_checkpoint, read_backbone


@pytest.fixture
def checkpoint(tmp_path):
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
    spec = json.loads((tmp_path / "out" / "backbone.json").read_text())
    assert spec["class_path"] == "ptft.backbones.dcgan.DCGANEncoder" and spec["init_args"]["base_width"] == 8
    assert "backbone.safetensors" in capsys.readouterr().out


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
    from ptft.tasks import FineTuning

    with pytest.raises(ValueError, match="'os.system' is not a ptft.backbones.Backbone"):
        FineTuning(num_classes=2, pretrained=str(out))
    (out / "backbone.json").write_text(json.dumps(DCGANEncoder().spec()))
    with pytest.raises(ValueError, match="backbone.safetensors: not a readable safetensors file"):
        FineTuning(num_classes=2, pretrained=str(out))
