"""Hugging Face ViT / ViT-MAE, timm ViT and torchvision/timm ResNet <-> ptft backbones: tiny random
source models built here, read through ``read_pretrained`` and compared output for output; ptft
backbones exported and loaded strictly by the source library."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ptft.backbones.resnet import ResNet
from ptft.backbones.vit import ViT, sincos_position_embedding
from ptft.errors import ConfigError
from ptft.handoff import build_loaded, read_pretrained
from ptft.interop.hf_vit import export_vit
from ptft.interop.resnet import export_timm_resnet
from ptft.interop.timm_vit import export_timm_vit

ATOL = 1e-5


@torch.no_grad()
def perturb(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and batch-norm statistic moved off its initial value (LayerNorm weights
    off 1, biases off 0), so that a mapping error shows in the outputs; eval mode."""
    torch.manual_seed(1)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            noise = torch.randn_like(tensor) * 0.1
            tensor.copy_(tensor.abs() + 0.5 + noise.abs() if name.endswith("running_var") else tensor + noise)
    return model.eval()


def images(size: int = 32, channels: int = 3) -> torch.Tensor:
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


def imported(path) -> torch.nn.Module:
    pretrained = read_pretrained(path)
    return build_loaded(pretrained.specs["backbone"], pretrained.states["backbone"], path).eval()


def tiny_vit(**options) -> ViT:
    torch.manual_seed(0)
    return perturb(ViT(image_size=32, patch_size=8, depth=2, width=32, heads=4, mlp_ratio=2.0, **options))


# --- Hugging Face ViT / ViT-MAE -> ptft


def test_hf_vit_imports_with_equal_tokens(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
                                    patch_size=8)
    hf = perturb(transformers.ViTModel(config))
    hf.save_pretrained(tmp_path / "vit")
    vit = imported(tmp_path / "vit")
    args = vit.spec()["init_args"]
    assert (args["class_token_position"], args["norm_eps"], args["heads"], args["mlp_ratio"]) == (True, 1e-12, 4, 2.0)
    assert read_pretrained(tmp_path / "vit").task == "Hugging Face vit"
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(vit.tokens(x), hf(pixel_values=x).last_hidden_state, atol=ATOL, rtol=0)
    # the module names of transformers 5 (layers.N.attention.q_proj), as a plain state_dict() holds them
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "config.json").write_text((tmp_path / "vit" / "config.json").read_text())
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "modules" / "model.safetensors")
    assert "layers.0.attention.q_proj.weight" in load_file(tmp_path / "modules" / "model.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(imported(tmp_path / "modules").tokens(x), vit.tokens(x), atol=ATOL, rtol=0)


def test_hf_vit_classifier_drops_its_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=32,
                                    patch_size=8, num_labels=3, hidden_act="gelu_pytorch_tanh", qkv_bias=False)
    hf = perturb(transformers.ViTForImageClassification(config))
    hf.save_pretrained(tmp_path / "cls")
    vit = imported(tmp_path / "cls")
    assert vit.spec()["init_args"]["activation"] == "gelu_tanh"
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(vit.tokens(x), hf.vit(pixel_values=x).last_hidden_state, atol=ATOL, rtol=0)


@pytest.mark.parametrize("layout", ["mae", "ptft"])
def test_hf_vit_mae_imports_its_encoder(tmp_path, layout):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
                                       patch_size=8, decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                                       decoder_intermediate_size=32, mask_ratio=0.0)
    mae = perturb(transformers.ViTMAEForPreTraining(config))
    # MAE's fixed sin-cos positions (what its initialisation writes): column channels first, then row;
    # ptft's sincos_position_embedding has the row first. A zero class slot either way.
    rows_first = sincos_position_embedding(4, 4, 32)
    patches = torch.cat([rows_first[:, 16:], rows_first[:, :16]], dim=1) if layout == "mae" else rows_first
    with torch.no_grad():
        mae.vit.embeddings.position_embeddings.copy_(torch.cat([torch.zeros(1, 32), patches])[None])
    mae.save_pretrained(tmp_path / "mae")
    pretrained = read_pretrained(tmp_path / "mae")
    kind = pretrained.specs["backbone"]["init_args"]["position_embedding"]
    assert kind == ("learned" if layout == "mae" else "sincos")
    assert not pretrained.states["backbone"]["class_position"].any()
    vit = imported(tmp_path / "mae")
    x = images()
    noise = torch.arange(16.0).expand(2, -1)  # argsort keeps the patch order; mask_ratio 0 keeps every patch
    with torch.no_grad():
        torch.testing.assert_close(vit.tokens(x), mae.vit(pixel_values=x, noise=noise).last_hidden_state, atol=ATOL, rtol=0)


# --- timm ViT -> ptft


@pytest.mark.parametrize("layout", [{}, {"no_embed_class": True}, {"class_token": False, "global_pool": "avg", "fc_norm": False}])
def test_timm_vit_imports_with_equal_features(tmp_path, layout):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = perturb(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
                                       num_heads=2, num_classes=0, **layout))
    save_file(source.state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(ConfigError, match="not a multiple of timm's usual head dimension"):  # 32 wide, no config: heads unknown
        read_pretrained(tmp_path / "vit.safetensors")
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(source.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224", "num_classes": 0,
                                                    "model_args": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2,
                                                                   "num_heads": 2, **layout}}))
    vit = imported(folder)
    args = vit.spec()["init_args"]
    assert args["class_token_position"] == (not layout)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(vit.tokens(x), source.forward_features(x), atol=ATOL, rtol=0)
        torch.testing.assert_close(vit(x), source(x), atol=ATOL, rtol=0)


def test_timm_vit_with_head_dim_64_needs_no_config(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = perturb(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=8, embed_dim=128, depth=1,
                                       num_heads=2, num_classes=5))
    save_file(source.state_dict(), tmp_path / "vit.safetensors")
    pretrained = read_pretrained(tmp_path / "vit.safetensors")
    assert pretrained.specs["backbone"]["init_args"]["heads"] == 2
    assert pretrained.task == "timm ViT"
    vit = imported(tmp_path / "vit.safetensors")
    x = images(16)
    with torch.no_grad():
        torch.testing.assert_close(vit.tokens(x), source.forward_features(x), atol=ATOL, rtol=0)


def test_timm_vit_variants_ptft_cannot_compute_are_refused_by_name(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=1,
                               num_classes=0, init_values=1e-5)
    save_file(source.state_dict(), tmp_path / "ls.safetensors")
    with pytest.raises(ConfigError, match=r"blocks\.0\.ls1\.gamma is layer scale"):
        read_pretrained(tmp_path / "ls.safetensors")


# --- torchvision / timm ResNet -> ptft


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_resnet_imports_with_equal_features(tmp_path, arch):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    source = perturb(getattr(torchvision.models, arch)())
    torch.save(source.state_dict(), tmp_path / f"{arch}.pth")
    pretrained = read_pretrained(tmp_path / f"{arch}.pth")
    assert pretrained.specs["backbone"]["init_args"] == {"arch": arch, "small_images": False, "norm": "batch"}
    assert pretrained.task == "torchvision/timm ResNet"
    resnet = imported(tmp_path / f"{arch}.pth")
    x = images(64)
    trunk = torch.nn.Sequential(*list(source.children())[:-2])  # up to layer4, before the pool
    with torch.no_grad():
        torch.testing.assert_close(resnet.forward_features(x), trunk(x), atol=ATOL, rtol=0)
        torch.testing.assert_close(resnet(x), torch.flatten(source.avgpool(trunk(x)), 1), atol=ATOL, rtol=0)


def test_resnet_with_other_block_counts_is_refused(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    state = torchvision.models.resnet18().state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("layer3.1.")}  # layer3 with one block
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ConfigError, match=r"\[2, 2, 1, 2\] blocks"):
        read_pretrained(tmp_path / "odd.pth")


# --- ptft -> Hugging Face, timm


@pytest.mark.parametrize("options", [{}, {"class_token_position": True, "position_embedding": "learned", "norm_eps": 1e-12}])
def test_vit_exports_to_hugging_face(tmp_path, options):
    transformers = pytest.importorskip("transformers")
    vit = tiny_vit(**options)
    config, state = export_vit(vit)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, tmp_path / "model.safetensors")
    hf, info = transformers.AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(hf).__name__ == "ViTModel"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(pixel_values=x).last_hidden_state, vit.tokens(x), atol=ATOL, rtol=0)
    again = imported(tmp_path)  # and back: the same ViT
    with torch.no_grad():
        torch.testing.assert_close(again.tokens(x), vit.tokens(x), atol=ATOL, rtol=0)


def test_vit_without_class_token_is_not_exported_to_hugging_face():
    with pytest.raises(ConfigError, match="class_token: false"):
        export_vit(ViT(image_size=32, patch_size=8, depth=1, width=32, heads=4, class_token=False, pool="mean"))


@pytest.mark.parametrize("options", [{}, {"class_token_position": True}, {"class_token": False, "pool": "mean"}])
def test_vit_exports_to_timm(tmp_path, options):
    timm = pytest.importorskip("timm")
    vit = tiny_vit(**options)
    config, state = export_timm_vit(vit)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, tmp_path / "model.safetensors")
    model = timm.create_model(config["architecture"], pretrained=True, num_classes=0, **config["model_args"],
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "model.safetensors"), custom_load=False))
    result = model.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    hub = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)  # the folder alone rebuilds it
    x = images()
    with torch.no_grad():
        for loaded in (model.eval(), hub.eval()):
            torch.testing.assert_close(loaded.forward_features(x), vit.tokens(x), atol=ATOL, rtol=0)
            torch.testing.assert_close(loaded(x), vit(x), atol=ATOL, rtol=0)


def test_resnet_exports_to_timm(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    resnet = perturb(ResNet("resnet18"))
    config, state = export_timm_resnet(resnet)
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, tmp_path / "model.safetensors")
    model = timm.create_model("resnet18", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "model.safetensors")))
    result = model.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = images(64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().forward_features(x), resnet.forward_features(x), atol=ATOL, rtol=0)
        torch.testing.assert_close(model(x), resnet(x), atol=ATOL, rtol=0)
    again = imported(tmp_path)  # a timm hub folder reads back as the same ResNet
    with torch.no_grad():
        torch.testing.assert_close(again.forward_features(x), resnet.forward_features(x), atol=ATOL, rtol=0)


def test_small_image_resnet_is_not_exported_to_timm():
    with pytest.raises(ConfigError, match="small_images: true"):
        export_timm_resnet(ResNet("resnet18", small_images=True))
