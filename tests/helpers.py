"""Helpers for tests that run the ``ptft`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TESTS

PTFT = str(Path(sys.executable).parent / "ptft")
CONFIGS = REPO / "configs"


def run_ptft(*args: str, cwd: Path, wandb_mode: str = "offline", timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed ``ptft`` console script; tests/ is importable (for test-only callbacks)."""
    env = {**os.environ, "WANDB_MODE": wandb_mode, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([PTFT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"ptft {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def checkpoint_from(result: subprocess.CompletedProcess) -> str:
    """The checkpoint path ``ptft fit`` reports."""
    return next(line.split(" ", 2)[2] for line in result.stdout.splitlines() if line.startswith("ptft: checkpoint "))


def tiny_text_model(block_size: int = 32) -> list[str]:
    """Overrides that shrink the text configs' TextTransformer and tokenizer for fast runs."""
    return [
        "--model.backbone.init_args.depth=1", "--model.backbone.init_args.width=32", "--model.backbone.init_args.heads=2",
        "--model.backbone.init_args.vocab_size=512", f"--model.backbone.init_args.max_length={block_size}",
    ]


def lm_args(config: str, data_root: Path, cache: Path, steps: int = 6) -> list[str]:
    """``ptft fit`` arguments for a short language-model run on a tiny generated corpus."""
    return [
        "fit", "-c", str(CONFIGS / "pretrain" / config), "-c", str(CONFIGS / "trainer/cpu.yaml"), *tiny_text_model(),
        f"--data.root={data_root / 'wikitext-2'}", "--data.train_file=wiki.valid.tokens", "--data.val_file=wiki.test.tokens",
        "--data.test_file=wiki.test.tokens", "--data.vocab_size=512", "--data.block_size=32", "--data.batch_size=8",
        f"--data.cache_dir={cache}", f"--trainer.max_steps={steps}", f"--trainer.val_check_interval={steps}", "--trainer.limit_val_batches=2",
        f"--model.lr_scheduler.init_args.total_steps={steps}", "--model.lr_scheduler.init_args.warmup_steps=1",
        "--trainer.enable_progress_bar=false",
    ]
