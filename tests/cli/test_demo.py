"""The demo script end to end on a tiny generated "Imagenette" (the real one takes minutes)."""

import json
import os
import subprocess
import sys

from conftest import REPO, make_image_tree


def test_demo_writes_results(tmp_path):
    make_image_tree(tmp_path / "data" / "imagenette", per_class=6)
    env = {**os.environ, "PTFT_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/demo.py"), "--pretrain-steps=2", "--probe-epochs=1", f"--out={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run/results.json").read_text())
    assert 0 <= results["pretrained"]["val_acc"] <= 1 and 0 <= results["random_init"]["val_acc"] <= 1
    assert results["pretrained"]["seconds"] > 0 and results["pretrain"]["seconds"] > 0
    assert "probe: random init" in result.stdout
    assert (tmp_path / "run/backbone/backbone.safetensors").is_file()
