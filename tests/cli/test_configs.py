"""Every shipped LightningCLI YAML parses against the code it configures (--print_config); sweep YAMLs: tests/test_sweep.py."""

import pytest
import yaml

from helpers import CONFIGS
from ptft.cli import main, run_cli

AUTOENCODER = CONFIGS / "pretrain" / "autoencoder_imagenette.yaml"
STACKS = {
    "pretrain/denoising_autoencoder_imagenette.yaml": [AUTOENCODER],
    **{f"trainer/{p.name}": [AUTOENCODER] for p in (CONFIGS / "trainer").glob("*.yaml")},
    # a speech encoder YAML replaces the backbone of a speech config it is stacked after
    **{f"speech/{p.name}": [CONFIGS / "pretrain/speech_bestrq_fillets.yaml"] for p in (CONFIGS / "speech").glob("*.yaml")},
    "pretrain/joint_embedding_vit.yaml": [CONFIGS / "pretrain/dino_imagenette.yaml"],  # the ViT overlay of SimCLR/BYOL/DINO
    "pretrain/joint_embedding_cpu.yaml": [CONFIGS / "pretrain/simclr_imagenette.yaml"],  # the demo's CPU overlay of them
}


def print_config(capsys, *configs):
    args = ["fit"] + [a for c in configs for a in ("-c", str(c))] + ["--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    assert exit_info.value.code in (None, 0)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("name", sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml") if p.parent.name != "sweeps"))
def test_every_config_parses(name, capsys):
    config = print_config(capsys, *STACKS.get(name, []), CONFIGS / name)
    assert config["model"]["class_path"].startswith("ptft.tasks.")
    assert config["data"]["class_path"].startswith("ptft.data.")
    if name.startswith("trainer/"):
        own = yaml.safe_load((CONFIGS / name).read_text())["trainer"]
        assert all(config["trainer"][k] == v for k, v in own.items())
    if name.startswith("speech/"):
        own = yaml.safe_load((CONFIGS / name).read_text())["model"]["init_args"]["backbone"]
        assert config["model"]["init_args"]["backbone"] == own  # the class and only its own arguments


def test_denoising_config_stacks_on_the_plain_one(capsys):
    config = print_config(capsys, AUTOENCODER, CONFIGS / "pretrain/denoising_autoencoder_imagenette.yaml")
    assert config["model"]["init_args"]["corruption"] == "mask"
    assert config["model"]["init_args"]["backbone"]["class_path"] == "ptft.backbones.DCGANEncoder"
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs/denoising_autoencoder_imagenette"


def test_the_mae_fine_tuning_config_takes_the_pretrained_vit_and_overrides_only_drop_path(capsys):
    config = print_config(capsys, CONFIGS / "finetune/imagenette_from_mae.yaml")["model"]["init_args"]
    assert config["backbone"] is None and config["backbone_overrides"] == {"drop_path": 0.1}


def test_unknown_key_is_rejected_naming_it(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "-c", str(AUTOENCODER), "--model.init_args.bogus_key=1", "--print_config"])
    assert exit_info.value.code == 2
    assert "bogus_key" in capsys.readouterr().err


def test_wrong_type_is_rejected_naming_the_key(capsys):
    with pytest.raises(SystemExit):
        run_cli(["fit", "-c", str(AUTOENCODER), "--data.init_args.image_size=big", "--print_config"])
    assert "image_size" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize("task", ["ptft.tasks.Classification", "ptft.tasks.MaskedLMPretraining"])
def test_the_shared_options_are_declared_once_and_listed_for_every_task(task, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", task])
    listed = capsys.readouterr().out
    for option in ("optimizer", "lr_scheduler", "lr_scheduler_interval", "on_nonfinite", "exclude_from_weight_decay", "torch_compile"):
        assert f"--model.{option} " in listed, option
    assert ("--model.layer_decay " in listed) == (task == "ptft.tasks.Classification")  # FineTuningTask's, through Classification's **kwargs


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_the_vit_overlay_swaps_the_backbone_and_optimizer_of_each_joint_embedding_config(method, capsys):
    config = print_config(capsys, CONFIGS / f"pretrain/{method}_imagenette.yaml", CONFIGS / "pretrain/joint_embedding_vit.yaml")
    assert config["model"]["init_args"]["backbone"]["class_path"] == "ptft.backbones.ViT"
    assert config["model"]["init_args"]["optimizer"]["class_path"] == "torch.optim.AdamW"
    assert "momentum" not in config["model"]["init_args"]["optimizer"]["init_args"]
    assert config["data"]["init_args"]["views"]["init_args"]["global_crops"] == 2


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_the_cpu_overlay_sizes_each_joint_embedding_config_for_the_demo(method, capsys):
    config = print_config(capsys, CONFIGS / f"pretrain/{method}_imagenette.yaml", CONFIGS / "pretrain/joint_embedding_cpu.yaml")
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    assert model["backbone"] == {"class_path": "ptft.backbones.DCGANEncoder", "init_args": {"in_channels": 3, "base_width": 32, "num_layers": 4,
                                                                                            "max_width": 512, "norm": "batch", "dropout": 0.0}}
    assert model["optimizer"]["class_path"] == "torch.optim.SGD" and model["optimizer"]["init_args"]["lr"] == 0.06  # 0.06 x batch / 128
    assert (data["image_size"], data["batch_size"], data["decoded_cache"]) == (32, 128, True)
    assert data["views"]["init_args"]["local_size"] == 16 and config["trainer"]["max_steps"] == 3000
