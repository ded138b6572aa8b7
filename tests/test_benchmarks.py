"""Benchmark scripts in --quick mode on a tiny generated "Imagenette": they run end to end and
leave benchmarks/RESULTS.md alone (only full runs write results)."""

import os
import subprocess
import sys

from conftest import REPO, make_image_tree


def test_gan_linear_probe_quick(tmp_path):
    make_image_tree(tmp_path / "data" / "imagenette", per_class=6)
    results = REPO / "benchmarks/RESULTS.md"
    before = results.read_text() if results.exists() else None
    env = {**os.environ, "PTFT_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gan_linear_probe.py"), "--quick", "--seeds", "0", "--image-size", "16",
         "--width", "8", f"--out={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 0 |" in result.stdout and "probe: GAN trunk" in result.stdout
    assert (tmp_path / "run/gan_imagenette_seed0/backbone/backbone.safetensors").is_file()
    assert (results.read_text() if results.exists() else None) == before


def test_image_pretraining_quick(tmp_path):
    make_image_tree(tmp_path / "data" / "imagenette", per_class=6)
    results = REPO / "benchmarks/RESULTS.md"
    before = results.read_text() if results.exists() else None
    env = {**os.environ, "PTFT_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/image_pretraining.py"), "--quick", "--methods", "mae", "autoencoder", f"--out={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| mae | ViT |" in result.stdout and "| autoencoder | DCGANEncoder |" in result.stdout and result.stdout.count("| random init |") == 2
    (tmp_path / "run.log").write_text(result.stdout)
    rebuilt = subprocess.run([sys.executable, str(REPO / "benchmarks/image_pretraining.py"), "--quick", f"--report-from={tmp_path / 'run.log'}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    table = lambda out: [line for line in out.splitlines() if line.startswith("| ")]  # noqa: E731
    assert table(rebuilt.stdout) == table(result.stdout)
    assert (results.read_text() if results.exists() else None) == before
