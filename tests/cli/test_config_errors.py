"""A bad config value is one line, `ptft: error: KEY: ...` naming the key and what would be valid, exit
code 2, no traceback, and no run folder."""

import pytest

from helpers import CONFIGS
from ptft.cli import main, run_cli

AUTOENCODER = str(CONFIGS / "pretrain" / "autoencoder_imagenette.yaml")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ptft: error: ") and "Traceback" not in err and "usage:" not in err, err
    return err[len("ptft: error: "):]


@pytest.mark.parametrize("arg, expected", [
    ("--model.init_args.optimizer.init_args.lr=abc", "model.optimizer.init_args.lr: expected float, got 'abc'"),
    ("--data.batch_size=1.5", "data.batch_size: expected int, got '1.5'"),
    ("--data.init_args.batch_size=[1, 2]", "data.batch_size: expected int, got [1, 2]"),
    ("--trainer.max_steps=[1,2]", "trainer.max_steps: expected int, got [1, 2]"),
    ("--model.init_args.mask_ratio=abc", "model.mask_ratio: expected float, got 'abc'"),
    ("--model.init_args.bogus_key=1", "model.bogus_key: no such option of ptft.tasks.AutoencoderPretraining; valid: backbone, corruption, "),
    ("--model.backbone.init_args.base_widht=8", "model.backbone.base_widht: no such option of ptft.backbones.DCGANEncoder; did you mean base_width?"),
    ("--model.backbone=ptft.backbones.Nope",
     "model.backbone: cannot import ptft.backbones.Nope (module 'ptft.backbones' has no attribute 'Nope'); valid: ptft.backbones."),
    ("--model.backbone=ptft.backbones.DCGANEncodr", "model.backbone: cannot import ptft.backbones.DCGANEncodr "
                                                    "(module 'ptft.backbones' has no attribute 'DCGANEncodr'); did you mean ptft.backbones.DCGANEncoder?"),
    ("--trainer.logger=foo.Bar", "trainer.logger: cannot import foo.Bar (No module named 'foo'); expected null, a list of "
                                 "pytorch_lightning.loggers.logger.Logger class paths, a class path of pytorch_lightning.loggers.logger.Logger or true/false"),
    ("--trainer.callbacks.1.init_args.every_n_train_steps=5",
     "trainer.callbacks.1.init_args.every_n_train_steps: a list item cannot be chosen by its index on the command line; "
     "--trainer.callbacks.init_args.every_n_train_steps=... sets it on the last item, or give the whole list in a -c file"),
])
def test_a_wrong_value_on_the_command_line_is_one_line_naming_the_key(arg, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "-c", AUTOENCODER, arg, "--print_config"])
    assert exit_info.value.code == 2
    assert one_error_line(capsys).startswith(expected)


@pytest.mark.parametrize("yaml, expected", [
    ("data:\n  init_args:\n    batch_size: 1.5\n", "data.batch_size: expected int, got 1.5"),
    ("model:\n  init_args:\n    decoder_widht: 16\n",
     "model.decoder_widht: no such option of ptft.tasks.AutoencoderPretraining; did you mean decoder_width?"),
])
def test_a_wrong_value_in_a_yaml_file_is_one_line_naming_the_key(yaml, expected, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "-c", AUTOENCODER, "-c", str(bad), "--print_config"])
    assert exit_info.value.code == 2
    assert one_error_line(capsys).startswith(expected)


@pytest.mark.parametrize("arg, expected", [
    ("--model.optimizer.init_args.lr=-1.0", "model.optimizer.init_args.lr: the optimizer refuses it: Invalid learning rate: -1.0"),
    ("--trainer.max_steps=-5", "trainer.max_steps: `max_steps` must be a non-negative integer or -1 (infinite steps). You passed in -5."),
    ("--trainer.max_steps=0", "trainer.max_steps: 0 trains nothing; give a number >= 1, or -1 for no limit"),
    ("--data.batch_size=-3", "data.image_size and data.batch_size must be >= 1 and data.num_workers >= 0, got 16, -3, 0"),
])
def test_a_value_refused_when_the_run_is_built_is_one_line_exit_2_and_leaves_no_run_folder(arg, expected, image_tree, tmp_path, capsys):
    runs = tmp_path / "runs"  # the config's W&B logger writes here
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", AUTOENCODER, f"--data.root={image_tree}", "--data.image_size=16", "--data.num_workers=0",
              f"--trainer.logger.init_args.save_dir={runs}", f"--trainer.default_root_dir={runs}", arg])
    assert exit_info.value.code == 2
    assert one_error_line(capsys) == expected + "\n"
    assert not runs.exists()
