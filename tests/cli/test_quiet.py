"""`ptft` output is clean: the library messages ptft knows to be harmless are silenced at their
source, and real warnings still show."""

import json
import logging
import subprocess
import warnings

from conftest import make_image_tree
from helpers import CONFIGS, NOISE, PTFT, ptft_env
from ptft import quiet


def test_fit_output_has_no_known_library_noise_and_keeps_real_warnings(tmp_path):
    tree = make_image_tree(tmp_path / "data", per_class=4)
    backbone = {"class_path": "ptft.backbones.DCGANEncoder", "init_args": {"base_width": 8, "num_layers": 2}}
    env = ptft_env("offline")
    env.pop("WANDB_SILENT", None)  # the tests' conftest sets it; a user's shell does not
    result = subprocess.run(
        [PTFT, "fit", "-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
         f"--data.root={tree}", "--data.image_size=16", "--data.batch_size=8", "--data.num_workers=0",
         "--model.pretrained=null", f"--model.backbone={json.dumps(backbone)}", "--trainer.max_epochs=1",
         "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp_path / 'runs' / 'probe'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "wandb: " in output  # W&B spoke: its harmless warnings were not silenced by silencing W&B
    assert not [message for message in NOISE if message in output], output[-5000:]
    # a real warning about an odd setting still shows: log_every_n_steps (20) > the 2 batches of an epoch
    assert "smaller than the logging interval" in output


def test_filters_match_only_the_known_messages():
    quiet.install()
    quiet.install()  # idempotent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet.install()
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning,
                               "_pytree.py", 21, module="pytorch_lightning.utilities._pytree")
        warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning,
                               "mine.py", 1, module="my_project.trees")  # not Lightning's: shows
        warnings.warn_explicit("something else is deprecated", FutureWarning, "_pytree.py", 22,
                               module="pytorch_lightning.utilities._pytree")
        warnings.warn_explicit("LightningCLI's args parameter is intended to run from within Python like ...", UserWarning,
                               "cli.py", 553, module="pytorch_lightning.cli")
    assert [str(w.message) for w in caught] == ["`isinstance(treespec, LeafSpec)` is deprecated, use ...", "something else is deprecated"]

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
        rank_zero_info("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert records == ["GPU available: False, used: False"]


def test_an_expected_eval_mode_warning_is_silenced_for_its_count_only():
    entry = quiet.expect_eval_mode_warning(15)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filters.insert(0, entry)  # catch_warnings copied the filters; ours goes first again
            for n in (15, 16, 1):
                warnings.warn(f"Found {n} module(s) in eval mode at the start of training. This may lead to ...")
        assert [str(w.message)[:8] for w in caught] == ["Found 16", "Found 1 "]
    finally:
        quiet.forget_warning(entry)
    assert entry not in warnings.filters
    quiet.forget_warning(entry)  # gone already: nothing happens
