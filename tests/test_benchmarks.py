"""Benchmark scripts in --quick mode on a tiny generated "Imagenette": they run end to end and
leave benchmarks/RESULTS.md alone (only full runs write results)."""

import os
import subprocess
import sys

from conftest import REPO, make_image_tree

RESULTS = REPO / "benchmarks/RESULTS.md"


def run_quick(tmp_path, script, *args, timeout=600):
    """Run ``benchmarks/<script> --quick`` on tiny data; check that RESULTS.md was left as it was."""
    if not (tmp_path / "data").exists():
        make_image_tree(tmp_path / "data" / "imagenette", per_class=6)
    before = RESULTS.read_text() if RESULTS.exists() else None
    env = {**os.environ, "PTFT_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (RESULTS.read_text() if RESULTS.exists() else None) == before
    return result


def table(output):
    return [line for line in output.splitlines() if line.startswith("| ")]


def test_gan_linear_probe_quick(tmp_path):
    result = run_quick(tmp_path, "gan_linear_probe.py", "--seeds", "0", "--image-size", "16", "--width", "8", f"--out={tmp_path / 'run'}")
    assert "| 0 |" in result.stdout and "probe: GAN trunk" in result.stdout
    assert (tmp_path / "run/gan_imagenette_seed0/backbone/backbone.safetensors").is_file()


def test_image_pretraining_quick_and_its_table_rebuilt_from_the_log(tmp_path):
    result = run_quick(tmp_path, "image_pretraining.py", "--methods", "mae", "autoencoder", f"--out={tmp_path / 'run'}")
    assert "| mae | ViT |" in result.stdout and "| autoencoder | DCGANEncoder |" in result.stdout and result.stdout.count("| random init |") == 2
    (tmp_path / "run.log").write_text(result.stdout)
    rebuilt = run_quick(tmp_path, "image_pretraining.py", f"--report-from={tmp_path / 'run.log'}", timeout=120)
    assert table(rebuilt.stdout) == table(result.stdout)


def test_text_pipeline_quick(tmp_path):
    from conftest import make_text_data

    make_text_data(tmp_path / "data")
    result = run_quick(tmp_path, "text_pipeline.py")
    rows = table(result.stdout)
    assert rows[0].startswith("| corpus |") and [row.split(" | ")[0] for row in rows[2:]] == ["| 1x"]
