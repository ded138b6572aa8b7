"""nanoGPT's shakespeare_char CPU recipe through ptft: its validation loss, and ptft's tokens/s
against a hand-written PyTorch loop of the same model and batches.

1. **Quality.** The tiny Shakespeare text (``input.txt``: karpathy/char-rnn's, which nanoGPT's
   data/shakespeare_char/prepare.py downloads) is split 90/10 by characters into train.txt / val.txt,
   as nanoGPT does, and ``ptft fit -c configs/pretrain/clm_shakespeare_char.yaml`` trains on it
   (4 layers x 4 heads x width 128, context 64, batch 12, 2000 steps). Reported: the validation loss
   over all of val.txt at the end (nanoGPT's README: about 1.88; target <= 1.90).
2. **Tokens/s** (the benchmarks/overhead.py protocol): the config's task and Trainer built by the
   ``ptft`` CLI as ``ptft fit`` builds them, against a copy of the same freshly initialised model in a
   plain loop (the config's AdamW and weight-decay groups, the same warmup-cosine schedule, gradient
   clipping at 1.0, ``F.cross_entropy``), on the same pre-made batches of training blocks. The loops
   interleave step by step; the ratio is raw time / ptft time after the warm-up steps (target >= 0.98).
   Each pair runs in a fresh Python process: on a CPU the ratio moves by up to 3 points from one
   process to the next (1 point within one), so the reported ratio is the median over processes.

Writes the "nanogpt_recipe" section of benchmarks/RESULTS.md. ``--quick`` runs both on generated text.

    python benchmarks/nanogpt_recipe.py PATH/input.txt [--steps 2000] [--repeats 5] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import wandb  # noqa: E402
from overhead import DEVICE, InterleavedRawSteps, decays  # noqa: E402
from results import report  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ptft.cli import run_cli  # noqa: E402
from ptft.evaluation import fit  # noqa: E402
from ptft.schedules import WarmupCosine  # noqa: E402
from ptft.weight_decay import split_weight_decay  # noqa: E402

CONFIG = ROOT / "configs/pretrain/clm_shakespeare_char.yaml"
NANOGPT_VAL_LOSS, TARGET_LOSS, TARGET_RATIO = 1.88, 1.90, 0.98
PAIR_PREFIX = "tokens/s pair (raw, ptft seconds): "
RECIPE_SCHEDULE = {"warmup_steps": 100, "total_steps": 2000, "min_lr_ratio": 0.1}  # the config's WarmupCosine over 2000 steps


def split_text(source: Path, out: Path) -> Path:
    """train.txt (the first 90% of the characters) and val.txt (the rest) in ``out``, as nanoGPT splits."""
    text = source.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.txt").write_text(text[:cut], encoding="utf-8")
    (out / "val.txt").write_text(text[cut:], encoding="utf-8")
    return out


def generated_text(path: Path) -> Path:
    """A small made-up play for ``--quick``: a smoke test of the pipeline, not a result."""
    rng = random.Random(0)
    words = "thou art the king my lord good night sweet prince what say you to this fair lady".split()
    speeches = [f"{rng.choice(['KING', 'QUEEN', 'HAMLET'])}:\n{' '.join(rng.choices(words, k=12)).capitalize()}.\n" for _ in range(400)]
    path.write_text("\n".join(speeches), encoding="utf-8")
    return path


def cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    trainer = "gpu.yaml" if DEVICE.type == "cuda" else "cpu.yaml"
    return ["-c", str(CONFIG), "-c", str(ROOT / "configs/trainer" / trainer), f"--data.root={data}", f"--data.cache_dir={out / 'cache'}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={out}", f"--trainer.default_root_dir={out}", *extra]


def raw_loop(model: torch.nn.Module, lm_head: torch.nn.Module, optimizer_defaults: dict, scheduler: dict):
    """One step of nanoGPT's loop (forward, cross-entropy, backward, clip at 1.0, AdamW, schedule) and its optimizer."""
    model, lm_head = model.to(DEVICE).train(), lm_head.to(DEVICE).train()
    modules = torch.nn.ModuleList([model, lm_head])
    optimizer = torch.optim.AdamW(split_weight_decay([{"params": list(modules.parameters())}], modules),
                                  **{k: optimizer_defaults[k] for k in ("lr", "betas", "weight_decay", "fused")})
    schedule = WarmupCosine(optimizer, **scheduler)

    def step(batch: torch.Tensor) -> None:
        tokens = batch.to(DEVICE, non_blocking=True)
        logits = lm_head(model.hidden_states(tokens[:, :-1], padding=False), model.token_embedding.weight)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()
        schedule.step()

    return step, optimizer


def time_pair(data: Path, out: Path, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds of the timed steps: (raw loop, ptft), both from the same freshly initialised model."""
    # the recipe's schedule (2000 steps) in both loops, whatever the number of timed steps
    cli = run_cli(cli_args(data, out, f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
                                   f"--model.lr_scheduler.init_args.total_steps={RECIPE_SCHEDULE['total_steps']}"), run=False)
    model = cli.model
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    blocks = cli.datamodule.train_dataloader().dataset
    batch_size = cli.datamodule.batch_size
    batches = [torch.stack([blocks[(i * batch_size + j) % len(blocks)] for j in range(batch_size)]) for i in range(steps)]
    raw_step, raw_optimizer = raw_loop(copy.deepcopy(model.backbone), copy.deepcopy(model.lm_head),
                                       model.optimizer(model.parameters()).defaults, RECIPE_SCHEDULE)
    timer = InterleavedRawSteps(raw_step, warmup)
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    assert cli.trainer.global_step == steps, cli.trainer.global_step
    assert cli.trainer.gradient_clip_val == 1.0, "the raw loop clips at 1.0 like the config"
    schedule = cli.trainer.lr_scheduler_configs[0].scheduler
    assert {k: getattr(schedule, k) for k in RECIPE_SCHEDULE} == RECIPE_SCHEDULE, "the raw loop's schedule must match the config's"
    assert decays(cli.trainer.optimizers[0]) == decays(raw_optimizer), "the raw loop's optimizer groups must match ptft's"
    wandb.finish()
    return timer.raw_seconds, timer.ptft_seconds


def time_pair_in_new_process(data: Path, out: Path, steps: int, warmup: int) -> tuple[float, float]:
    """:func:`time_pair` in a fresh Python process with this one's torch threads."""
    command = [sys.executable, __file__, "--one-pair", str(data), str(out), str(steps), str(warmup), "--threads", str(torch.get_num_threads())]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    timings = [line for line in result.stdout.splitlines() if line.startswith(PAIR_PREFIX)]
    if result.returncode or not timings:
        raise RuntimeError(f"the tokens/s pair in {out} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    raw, ptft = json.loads(timings[-1][len(PAIR_PREFIX):])
    return raw, ptft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="?", help="the tiny Shakespeare input.txt (not needed with --quick)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps of the quality run (the recipe's 2000)")
    parser.add_argument("--speed-steps", type=int, nargs=2, default=(150, 30), metavar=("STEPS", "WARMUP"),
                        help="steps and warm-up steps of each tokens/s pair")
    parser.add_argument("--repeats", type=int, default=5, help="raw/ptft pairs, each in its own process")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default="runs/benchmarks/nanogpt_recipe", help="split text, caches and runs go here")
    parser.add_argument("--quick", action="store_true", help="generated text, a few steps: a smoke test, not a result")
    parser.add_argument("--one-pair", nargs=4, metavar=("DATA", "OUT", "STEPS", "WARMUP"), help=argparse.SUPPRESS)  # one process's pair
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    if options.one_pair:
        data, pair_out, pair_steps, pair_warmup = options.one_pair
        print(PAIR_PREFIX + json.dumps(time_pair(Path(data), Path(pair_out), int(pair_steps), int(pair_warmup))))
        return
    if not options.quick and not options.text:
        parser.error("give the path of the tiny Shakespeare input.txt (or --quick)")
    out = Path(options.out).resolve()
    with tempfile.TemporaryDirectory(prefix="ptft-nanogpt-") as temp:
        if options.quick:
            out = Path(temp)
        source = generated_text(out / "generated.txt") if options.quick else Path(options.text)
        if not source.is_file():
            parser.error(f"{source}: no such file")
        data = split_text(source, out / "shakespeare_char")
        steps, (speed_steps, warmup), repeats = ((120, (8, 2), 1) if options.quick
                                                 else (options.steps, options.speed_steps, options.repeats))
        run = fit(cli_args(data, out / "quality", f"--trainer.max_steps={steps}", f"--trainer.val_check_interval={steps}",
                           "--trainer.limit_val_batches=1.0"), stage="nanogpt recipe")
        val_loss = run["metrics"]["val/loss"]
        pairs = [time_pair_in_new_process(data, out / f"speed{repeat}", speed_steps, warmup) for repeat in range(repeats)]

    tokens = 12 * 64 * (speed_steps - warmup)
    raw_rate = statistics.median(tokens / raw for raw, _ in pairs)
    ptft_rate = statistics.median(tokens / ptft for _, ptft in pairs)
    ratio = statistics.median(raw / ptft for raw, ptft in pairs)
    threads = torch.get_num_threads()
    lines = [
        "## nanoGPT's shakespeare_char recipe through ptft",
        "",
        f"`python benchmarks/nanogpt_recipe.py input.txt --steps {steps} --repeats {repeats}"
        f"{f' --threads {options.threads}' if options.threads else ''}{' --quick' if options.quick else ''}`",
        "",
        f"configs/pretrain/clm_shakespeare_char.yaml on {'generated text (quick mode: a smoke test, not a result)' if options.quick else 'tiny Shakespeare (karpathy/char-rnn input.txt, 1,115,394 characters), split 90/10 by characters as nanoGPT does'}: "
        f"4 layers x 4 heads x width 128, context 64, batch 12, {steps} steps on the {DEVICE.type} ({threads} torch thread(s)). "
        "Validation loss over all of val.txt at the end (nanoGPT estimates it on 20 random batches). Tokens/s: the overhead.py "
        f"protocol, {speed_steps - warmup} timed steps after {warmup} warm-up steps, raw and ptft steps interleaved on the same "
        f"batches, median of {repeats} pairs, each in a fresh process; raw: the same model in a plain loop (AdamW groups, warmup-cosine, clipping as the config).",
        "",
        "| measure | ptft | reference | target | met |",
        "| --- | ---: | ---: | --- | --- |",
        f"| validation loss | {val_loss:.3f} | {NANOGPT_VAL_LOSS} (nanoGPT README) | <= {TARGET_LOSS:.2f} | {'yes' if val_loss <= TARGET_LOSS else 'no'} |",
        f"| training tokens/s | {ptft_rate:,.0f} | {raw_rate:,.0f} (raw loop) | ptft/raw >= {TARGET_RATIO} | "
        f"{'yes' if ratio >= TARGET_RATIO else 'no'} ({ratio:.3f}) |",
        "",
        f"Quality run: {run['seconds']:.0f} s for {run['steps']} steps. Pair ratios (raw time / ptft time): "
        + ", ".join(f"{raw / ptft:.3f}" for raw, ptft in pairs) + ".",
    ]
    report("nanogpt_recipe", "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
