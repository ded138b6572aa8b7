"""A config value of the wrong type is one line, `ptft: error: KEY: ...`, exit code 2, no traceback."""

import pytest

from helpers import CONFIGS
from ptft.cli import run_cli

AUTOENCODER = str(CONFIGS / "pretrain" / "autoencoder_imagenette.yaml")


@pytest.mark.parametrize("arg, expected", [
    ("--model.init_args.optimizer.init_args.lr=abc", "model.optimizer.init_args.lr: expected float, got 'abc'"),
    ("--data.batch_size=1.5", "data.batch_size: expected int, got '1.5'"),
    ("--data.init_args.batch_size=[1, 2]", "data.batch_size: expected int, got [1, 2]"),
    ("--trainer.max_steps=[1,2]", "trainer.max_steps: expected int, got [1, 2]"),
    ("--model.init_args.mask_ratio=abc", "model.mask_ratio: expected float, got 'abc'"),
    ("--model.init_args.bogus_key=1", "model.bogus_key: no such option of ptft.tasks.AutoencoderPretraining"),
])
def test_a_wrong_value_on_the_command_line_is_one_line_naming_the_key(arg, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "-c", AUTOENCODER, arg, "--print_config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ptft: error: {expected} ")
    assert "Traceback" not in err and "usage:" not in err


def test_a_wrong_value_in_a_yaml_file_is_one_line_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  init_args:\n    batch_size: 1.5\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "-c", AUTOENCODER, "-c", str(bad), "--print_config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ptft: error: data.batch_size: expected int, got 1.5")
