"""The demo script end to end on a tiny generated "Imagenette" (the real one takes minutes)."""

import json
import os
import subprocess
import sys

from conftest import REPO, make_image_tree
from helpers import NOISE


def test_demo_writes_results(tmp_path):
    make_image_tree(tmp_path / "data" / "imagenette", per_class=6)
    env = {**os.environ, "PTFT_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    env.pop("WANDB_SILENT", None)  # as in a user's shell: W&B's own lines show, its harmless warnings must not
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/demo.py"), "--pretrain-steps=2", "--probe-epochs=1", f"--out={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert 0 <= results["pretrained"]["val_acc"] <= 1 and 0 <= results["random_init"]["val_acc"] <= 1
    assert results["pretrained"]["seconds"] > 0 and results["pretrain"]["seconds"] > 0
    assert results["margin"] == results["pretrained"]["val_acc"] - results["random_init"]["val_acc"]
    assert results["protocol"]["label_fraction"] == 0.1 and results["protocol"]["backbone"]["class_path"].endswith("DCGANEncoder")
    assert "linear probe on 10% of the train labels" in result.stdout and "pretrained - random init: " in result.stdout
    assert "probe: random init" in result.stdout
    assert (tmp_path / "run/backbone/backbone.safetensors").is_file()
    # progress: a line when each stage starts and ends, training lines with elapsed time (and ETA while running)
    for n, stage in enumerate(["pretrain", "export", "probe pretrained", "probe random init"], 1):
        assert f"stage {stage} ({n}/4): started" in result.stderr and f"stage {stage} ({n}/4): finished in " in result.stderr
    assert "stage pretrain: step 0/2 (0%), elapsed " in result.stderr and "stage pretrain: step 2/2 (100%), elapsed " in result.stderr
    # 10% of the labels (one image per class here) for as many steps as one epoch of all of them: 10 epochs of one batch
    assert "stage probe random init: step 10/10 (100%), elapsed " in result.stderr
    noise = [message for message in NOISE if message in result.stdout + result.stderr]
    assert not noise, result.stderr[-3000:]
