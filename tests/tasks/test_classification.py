import pytest
import pytorch_lightning as pl
import torch

from conftest import make_image_tree, small_encoder
from ptft.backbones import DCGANEncoder, ResNet, TextTransformer
from ptft.callbacks import CheckpointMetadata
from ptft.data import ImageFolderDataModule
from ptft.handoff import export_backbone
from ptft.tasks import AutoencoderPretraining, Classification


def fit(model, image_tree, epochs=2, **trainer_kwargs):
    pl.seed_everything(0)
    dm = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0, train_augment="flip")
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, **trainer_kwargs)
    trainer.fit(model, datamodule=dm)
    return trainer


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_linear_probe_freezes_the_backbone_and_its_batchnorm_statistics(image_tree):
    pl.seed_everything(0)
    model = Classification(num_classes=3, backbone=small_encoder(), mode="linear_probe", feature_norm=True,
                       optimizer=lambda params: torch.optim.Adam(params, lr=0.05))
    backbone_before, head_before = snapshot(model.backbone), snapshot(model.head)
    trainer = fit(model, image_tree, epochs=15)  # the head's BatchNorm statistics need a few epochs
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone_before.items())  # running stats too
    assert any(not torch.equal(v, model.head.state_dict()[k]) for k, v in head_before.items())
    assert not model.backbone.training and model.head.training
    assert trainer.callback_metrics["val/acc"] > 0.9  # colours are separable


def test_full_fine_tuning_trains_the_backbone_at_its_own_learning_rate(image_tree):
    model = Classification(num_classes=3, backbone=small_encoder(), mode="full", backbone_lr=1e-4,
                       optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    before = snapshot(model.backbone)
    trainer = fit(model, image_tree, epochs=1)
    assert any(not torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())
    groups = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert groups == {"head": 0.1, "head.no_decay": 0.1, "backbone": 1e-4, "backbone.no_decay": 1e-4}


def test_unfreeze_at_epoch(image_tree):
    model = Classification(num_classes=3, backbone=small_encoder(), mode="linear_probe", unfreeze_at_epoch=1)
    before = snapshot(model.backbone)
    fit(model, image_tree, epochs=1)
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())
    fit(model, image_tree, epochs=2)  # a fresh trainer: epochs 0 (frozen) and 1 (unfrozen)
    assert any(not torch.equal(v, model.backbone.state_dict()[k]) for k, v in before.items())
    assert model.backbone.training


def test_top5_accuracy_with_more_than_five_classes(tmp_path):
    make_image_tree(tmp_path / "t", classes=[f"c{i}" for i in range(6)], per_class=2)
    model = Classification(num_classes=6, backbone=small_encoder())
    trainer = fit(model, tmp_path / "t", epochs=1)
    assert trainer.callback_metrics["val/acc_top5"] >= trainer.callback_metrics["val/acc"]
    test_data = ImageFolderDataModule(root=str(tmp_path / "t"), test_split="val", image_size=16, batch_size=8, num_workers=0)
    trainer.test(model, datamodule=test_data, verbose=False)
    assert {"test/acc", "test/acc_top5"} <= set(trainer.callback_metrics)
    assert "acc_top5" not in Classification(num_classes=5, backbone=small_encoder()).eval_metrics["val"]


def test_mlp_head_and_feature_norm():
    model = Classification(num_classes=4, backbone=small_encoder(), head="mlp", head_hidden_dim=32, feature_norm=True)
    norm = model.head[0]
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine
    assert model(torch.randn(3, 3, 16, 16)).shape == (3, 4)


def _pretrained_checkpoint(tmp_path, backbone):
    trainer = pl.Trainer(max_steps=0, logger=False, enable_progress_bar=False, callbacks=[CheckpointMetadata()])  # no fit: add it by hand
    model = AutoencoderPretraining(backbone)
    trainer.strategy.connect(model)
    path = tmp_path / "ae.ckpt"
    trainer.save_checkpoint(path)
    return path, model


@pytest.mark.parametrize("source", ["checkpoint", "export"])
def test_pretrained_weights_arrive_from_a_checkpoint_or_an_export(tmp_path, source):
    backbone = small_encoder()
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)  # distinguishable from a fresh init
    path, _ = _pretrained_checkpoint(tmp_path, backbone)
    if source == "export":
        path = export_backbone(path, tmp_path / "export")
    model = Classification(num_classes=3, pretrained=str(path))
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone.state_dict().items())
    assert model.backbone.spec() == backbone.spec()


def test_mismatched_backbone_lists_keys_and_shapes(tmp_path):
    path, _ = _pretrained_checkpoint(tmp_path, small_encoder())
    with pytest.raises(ValueError) as info:
        Classification(num_classes=3, pretrained=str(path), backbone=DCGANEncoder(base_width=16, num_layers=3))
    message = str(info.value)
    assert "missing (6)" in message and "layers.6.weight" in message
    assert "mis-shaped" in message and "layers.0.weight: (8, 3, 4, 4) in" in message and "(16, 3, 4, 4) here" in message
    with pytest.raises(ValueError, match="holds a ptft.backbones.dcgan.DCGANEncoder, but model.backbone is a ptft.backbones.resnet.ResNet"):
        Classification(num_classes=3, pretrained=str(path), backbone=ResNet())


def test_fine_tuning_takes_the_pretrained_architecture_and_overrides_only_its_fine_tuning_options(tmp_path):
    from ptft.backbones import ViT

    vit = ViT(image_size=32, patch_size=4, depth=2, width=32, heads=2)  # not the ViT defaults (patch 8, width 192)
    export = export_backbone(_pretrained_checkpoint(tmp_path, vit)[0], tmp_path / "export")
    model = Classification(num_classes=3, pretrained=str(export), backbone_overrides={"drop_path": 0.1})
    assert model.backbone.spec()["init_args"] == {**vit.spec()["init_args"], "drop_path": 0.1}
    assert model.backbone.blocks[-1].drop_path.p == 0.1
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in vit.state_dict().items())
    with pytest.raises(ValueError, match=r"^model.backbone_overrides.width: fine-tuning keeps the architecture of the ViT it is given; "
                                         r"it may override only image_size, pool, dropout, drop_path$"):
        Classification(num_classes=3, pretrained=str(export), backbone_overrides={"width": 64})


def test_backbone_overrides_apply_to_a_random_init_backbone_without_changing_any_initial_weight():
    torch.manual_seed(0)
    plain = Classification(num_classes=3, backbone=small_encoder())
    torch.manual_seed(0)
    overridden = Classification(num_classes=3, backbone=small_encoder(), backbone_overrides={"dropout": 0.5})
    assert overridden.backbone.dropout.p == 0.5 and plain.backbone.dropout.p == 0.0
    assert all(torch.equal(v, overridden.state_dict()[k]) for k, v in plain.state_dict().items())  # the head's too: no extra draws


def test_reinit_top_groups_draws_the_top_layers_afresh_and_keeps_the_rest(tmp_path):
    backbone = small_encoder()  # layer groups: [layers.0], [layers.3 (conv), layers.4 (BatchNorm)]
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)  # distinguishable from a fresh init
        backbone.layers[4].running_mean.fill_(5.0)
    path, _ = _pretrained_checkpoint(tmp_path, backbone)
    model = Classification(num_classes=3, pretrained=str(path), reinit_top_groups=1)
    fine_tuned = model.backbone
    assert torch.equal(fine_tuned.layers[0].weight, backbone.layers[0].weight)  # the bottom group keeps its weights
    assert not torch.equal(fine_tuned.layers[3].weight, backbone.layers[3].weight)
    assert torch.equal(fine_tuned.layers[4].weight, torch.ones(16)) and torch.equal(fine_tuned.layers[4].bias, torch.zeros(16))
    assert torch.equal(fine_tuned.layers[4].running_mean, torch.zeros(16))  # the BatchNorm statistics are fresh too
    assert torch.equal(Classification(num_classes=3, pretrained=str(path)).backbone.layers[3].weight, backbone.layers[3].weight)

    with pytest.raises(ValueError, match=r"^model.reinit_top_groups must be between 1 and 1 for a DCGANEncoder of 2 layer groups, got 2$"):
        Classification(num_classes=3, pretrained=str(path), reinit_top_groups=2)
    with pytest.raises(ValueError, match=r"^model.reinit_top_groups must be >= 0, got -1$"):
        Classification(num_classes=3, pretrained=str(path), reinit_top_groups=-1)
    with pytest.raises(ValueError, match=r"^model.reinit_top_groups with model.mode=linear_probe would freeze random layers"):
        Classification(num_classes=3, pretrained=str(path), reinit_top_groups=1, mode="linear_probe")
    assert Classification(num_classes=3, pretrained=str(path), reinit_top_groups=1, mode="linear_probe", unfreeze_at_epoch=1)

    torch.manual_seed(0)
    plain = Classification(num_classes=3, backbone=small_encoder())
    torch.manual_seed(0)
    shared = Classification(num_classes=3, backbone=small_encoder(), reinit_top_groups=1)  # a random-init baseline shares the setting
    assert all(torch.equal(v, shared.state_dict()[k]) for k, v in plain.state_dict().items())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"pretrained": "/no/such/thing.ckpt"}, FileNotFoundError, "/no/such/thing.ckpt does not exist"),
    ({}, ValueError, "give model.backbone"),
    ({"backbone": "make", "mode": "full", "unfreeze_at_epoch": 2}, ValueError, "unfreeze_at_epoch needs model.mode=linear_probe"),
    ({"backbone": "make", "head": "deep"}, ValueError, "model.head must be"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    if kwargs.get("backbone") == "make":
        kwargs["backbone"] = small_encoder()
    with pytest.raises(error, match=message):
        Classification(num_classes=3, **kwargs)


def test_layer_decay_gives_each_depth_its_learning_rate():
    from ptft.backbones import ViT

    vit = ViT(image_size=16, patch_size=8, depth=2, width=32, heads=2)
    model = Classification(num_classes=3, backbone=vit, layer_decay=0.5, backbone_lr=0.8,
                       optimizer=lambda params: torch.optim.AdamW(params, lr=0.1))
    optimizer = model.configure_optimizers()
    lrs = {g["name"].removesuffix(".no_decay"): g["lr"] for g in optimizer.param_groups}  # both weight-decay halves
    # head at the optimizer's lr; backbone from its last group (final norm) at backbone_lr, halving per depth
    assert lrs == pytest.approx({"head": 0.1, "backbone.3": 0.8, "backbone.2": 0.4, "backbone.1": 0.2, "backbone.0": 0.1})
    first = next(g for g in optimizer.param_groups if g["name"] == "backbone.0")
    assert any(p is vit.patch_embed.weight for p in first["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_layer_decay_per_resnet_stage_and_its_range():
    from ptft.backbones import ResNet

    model = Classification(num_classes=3, backbone=ResNet(small_images=True), layer_decay=0.75,
                       optimizer=lambda params: torch.optim.SGD(params, lr=1.0))
    lrs = [g["lr"] for g in model.configure_optimizers().param_groups if g["name"].startswith("backbone")]
    assert lrs == pytest.approx([s for s in [0.75**4, 0.75**3, 0.75**2, 0.75, 1.0] for _half in ("decayed", "no_decay")])  # stem, layer1..layer4, each split
    with pytest.raises(ValueError, match=r"model.layer_decay must be in \(0, 1\]"):
        Classification(num_classes=3, backbone=ResNet(), layer_decay=1.5)


def test_the_data_contract_runs_one_way(image_tree, tmp_path):
    data = ImageFolderDataModule(root=str(image_tree), image_size=16, batch_size=8, num_workers=0)
    model = Classification(backbone=small_encoder(), data_spec=data.spec)  # classes come from the data's spec
    assert model.num_classes == 3 and model.hparams.num_classes == 3
    text = TextTransformer(vocab_size=64, max_length=8, depth=1, width=16, heads=2)
    with pytest.raises(ValueError, match="the data gives image inputs, but the backbone TextTransformer reads text inputs"):
        Classification(backbone=text, data_spec=data.spec).check_data(data.spec)
    with pytest.raises(ValueError, match="the data has 3 classes but model.num_classes is 4"):
        Classification(num_classes=4, backbone=small_encoder()).check_data(data.spec)
    with pytest.raises(ValueError, match="model.num_classes is not set and the data gives no classes"):
        Classification(backbone=small_encoder())
    before = {k: v for k, v in vars(data).items() if not k.startswith("_")}
    pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_checkpointing=False, limit_val_batches=1).fit(model, datamodule=data)
    after = {k: v for k, v in vars(data).items() if not k.startswith("_")}
    assert after.keys() == before.keys() and vars(data.spec) == {**vars(data.spec), "num_classes": 3}  # the model wrote nothing into the data


def test_linear_probe_silences_only_the_eval_mode_warning_of_its_frozen_backbone(image_tree):
    import warnings

    def eval_mode_warnings(model):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, image_tree, epochs=1, limit_train_batches=1, limit_val_batches=1)
        return [str(w.message) for w in caught if "in eval mode at the start of training" in str(w.message)]

    def probe():
        return Classification(num_classes=3, backbone=small_encoder(), mode="linear_probe")

    assert eval_mode_warnings(probe()) == []  # the frozen backbone is in eval mode on purpose
    model = probe()
    model.head.eval()  # not on purpose: the warning shows, counting every module in eval mode
    in_eval = sum(not module.training for module in model.modules())
    assert [m[:len(f"Found {in_eval} ")] for m in eval_mode_warnings(model)] == [f"Found {in_eval} "]
    assert not [f for f in warnings.filters if f[1] is not None and "in eval mode" in f[1].pattern]  # no filter left behind
