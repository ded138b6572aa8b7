"""Helpers for tests that run the ``ptft`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import REPO, TESTS

PTFT = str(Path(sys.executable).parent / "ptft")
CONFIGS = REPO / "configs"
AUTOENCODER = CONFIGS / "pretrain" / "autoencoder_imagenette.yaml"
# library messages ptft silences at their source (ptft/quiet.py): none may show in a run's output
NOISE = [
    "💡 Tip", "litlogger",                      # Lightning's advertisement
    "anonymous setting has no effect",           # W&B, about the anonymous=None Lightning passes
    "git root",                                  # W&B: "git root <save_dir> does not exist"
    "LeafSpec",                                  # torch's FutureWarning inside Lightning's _pytree.py
    "module(s) in eval mode",                    # Lightning, about the linear probe's frozen backbone
    "not recommended to provide both args",      # LightningCLI, when ptft.cli.run_cli runs in a script with arguments
]


def run_ptft(*args: str, cwd: Path, wandb_mode: str = "offline", timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed ``ptft`` console script; tests/ is importable (for test-only callbacks)."""
    result = subprocess.run([PTFT, *args], cwd=cwd, env=ptft_env(wandb_mode), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"ptft {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def ptft_env(wandb_mode: str = "offline") -> dict[str, str]:
    """The environment of a ``ptft`` subprocess: W&B mode set, tests/ importable."""
    paths = [str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]  # no empty entry: that would be the working folder
    return {**os.environ, "WANDB_MODE": wandb_mode, "PYTHONPATH": os.pathsep.join(paths)}


def sigterm_when_marked(*args: str, cwd: Path, mark: Path) -> subprocess.CompletedProcess:
    """Start ``ptft *args``, send it SIGTERM once ``mark`` exists (a callback writes it), and wait for it."""
    process = subprocess.Popen([PTFT, *args], cwd=cwd, env=ptft_env("disabled"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not mark.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def checkpoint_from(result: subprocess.CompletedProcess) -> str:
    """The checkpoint path ``ptft fit`` reports."""
    return next(line.split(" ", 2)[2] for line in result.stdout.splitlines() if line.startswith("ptft: checkpoint "))


def tiny_text_model(block_size: int = 32) -> list[str]:
    """Overrides that shrink the text configs' TextTransformer and tokenizer for fast runs."""
    return [
        "--model.backbone.init_args.depth=1", "--model.backbone.init_args.width=32", "--model.backbone.init_args.heads=2",
        "--model.backbone.init_args.vocab_size=512", f"--model.backbone.init_args.max_length={block_size}",
    ]


def tiny_seq2seq_model(length: int = 32) -> list[str]:
    """Overrides that shrink the seq2seq configs' Seq2SeqTransformer (one block each side) for fast runs."""
    return [f"--model.backbone.init_args.{key}={value}" for key, value in (
        ("encoder_depth", 1), ("decoder_depth", 1), ("width", 32), ("heads", 2), ("vocab_size", 512),
        ("max_source_length", length), ("max_target_length", length))]


def lm_args(config: str, data_root: Path, cache: Path, steps: int = 6, model: list[str] | None = None) -> list[str]:
    """``ptft fit`` arguments for a short text pretraining run on a tiny generated corpus (``model``:
    overrides of the backbone; :func:`tiny_text_model` by default)."""
    return [
        "fit", "-c", str(CONFIGS / "pretrain" / config), "-c", str(CONFIGS / "trainer/cpu.yaml"), *(model or tiny_text_model()),
        f"--data.root={data_root / 'wikitext-2'}", "--data.train_file=wiki.valid.tokens", "--data.val_file=wiki.test.tokens",
        "--data.test_file=wiki.test.tokens", "--data.vocab_size=512", "--data.block_size=32", "--data.batch_size=8",
        f"--data.cache_dir={cache}", f"--trainer.max_steps={steps}", f"--trainer.val_check_interval={steps}", "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
    ]


def write_sweep(folder: Path, **changes) -> Path:
    """A small valid sweep YAML, with top-level keys replaced (None removes one)."""
    config = {"name": "tiny", "method": "random", "metric": {"name": "val/loss", "goal": "minimize"},
              "parameters": {"model.optimizer.init_args.lr": {"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}},
              "command": ["ptft", "fit", "-c", str(AUTOENCODER), "${args}"]}
    config.update(changes)
    path = folder / f"{str(config.get('name') or 'sweep').replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    return path
