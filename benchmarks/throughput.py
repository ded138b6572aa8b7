"""Training throughput of every ptft task: samples (images or tokens) per second, model FLOPs per
step, achieved FLOP/s and, on a GPU, MFU.

Each task is built from its shipped YAML (through ``PtftCLI`` with ``run=False``: the parser and
instantiation the ``ptft`` command uses), with the data replaced by synthetic in-memory batches of
the same shape (so the data pipeline is not what is measured) and a fixed small size: 32 px images
and text blocks of 128 tokens. It trains through ``pytorch_lightning.Trainer.fit``; the first
``--warmup`` batches are excluded from the timing (with a device sync at both ends). FLOPs of one
whole training step (forward + backward, every network the step updates) come from
``torch.utils.flop_counter.FlopCounterMode``; MFU divides the achieved FLOP/s by the device's bf16
dense peak (table below; "n/a" on CPU or an unknown GPU). ``--compile`` also trains each task with
``model.torch_compile=true`` and reports the compiled/eager speed and the first (compiling) step.
Prints a table and writes the "throughput" section of benchmarks/RESULTS.md.

    python benchmarks/throughput.py [--warmup 3] [--steps 10] [--tasks ...] [--compile] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report  # noqa: E402

from ptft.data.spec import DataSpec  # noqa: E402

CONFIGS = ROOT / "configs"
IMAGE_SIZE = 32
BLOCK_SIZE = 128
# bf16 dense tensor-core peak FLOP/s (vendor data sheets), matched against torch.cuda.get_device_name()
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12, "RTX 4090": 165e12}
SMALL_VIT = ["--model.backbone.init_args.image_size=32", "--model.backbone.init_args.patch_size=4"]
SCRATCH_IMAGE = ["--model.pretrained=null", "--model.backbone=ptft.backbones.DCGANEncoder"]
# task -> (configs, extra args, kind)
TASKS = {
    "autoencoder": (["pretrain/autoencoder_imagenette.yaml"], [], "image"),
    "denoising_autoencoder": (["pretrain/autoencoder_imagenette.yaml", "pretrain/denoising_autoencoder_imagenette.yaml"], [], "image"),
    "gan": (["pretrain/gan_imagenette.yaml"], [], "image"),
    "mae": (["pretrain/mae_imagenette.yaml"], SMALL_VIT, "image"),
    "masked_lm": (["pretrain/mlm_wikitext2.yaml"], [], "lm"),
    "causal_lm": (["pretrain/clm_wikitext2.yaml"], [], "lm"),
    "finetune_image": (["finetune/imagenette_full.yaml"], SCRATCH_IMAGE, "image"),
    "finetune_text": (["finetune/sst2_scratch.yaml"], [], "text"),
}


class Batches(Dataset):
    """``length`` copies of one fixed batch item (made once, in memory)."""

    def __init__(self, item, length: int) -> None:
        self.item, self.length = item, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        return self.item


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer with ptft's six special tokens and ``vocab_size`` entries in all."""
    from tokenizers import Tokenizer, models

    from ptft.data.tokenizer import SPECIAL_TOKENS, TextTokenizer

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    return TextTokenizer(Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk"])))


class SyntheticData(pl.LightningDataModule):
    """Random batches shaped like ImageFolderDataModule's (float images in [-1, 1], channels_last,
    labels) or WikiTextDataModule's / TextClassificationDataModule's (token ids [, labels])."""

    def __init__(self, kind: str = "image", batch_size: int = 32, num_batches: int = 13, image_size: int = IMAGE_SIZE,
                 num_classes: int = 10, block_size: int = BLOCK_SIZE, vocab_size: int = 8192) -> None:
        super().__init__()
        self.kind, self.batch_size, self.num_batches = kind, batch_size, num_batches
        generator = torch.Generator().manual_seed(0)
        labels = [str(i) for i in range(num_classes)]
        if kind == "image":
            self.item = (torch.rand(3, image_size, image_size, generator=generator) * 2 - 1, 0)
            self.spec = DataSpec("image", num_classes=num_classes, label_names=labels, image_size=image_size)
        else:
            tokenizer = synthetic_tokenizer(vocab_size)
            length = block_size + 1 if kind == "lm" else block_size  # an LM example: block_size inputs and the next token
            tokens = torch.randint(len(tokenizer.special_ids), vocab_size, (length,), generator=generator)
            self.item = tokens if kind == "lm" else (tokens, 0)
            self.spec = DataSpec("text", tokenizer=tokenizer, max_length=block_size,
                                 **({} if kind == "lm" else {"num_classes": num_classes, "label_names": labels}))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.kind == "image":
            batch = (batch[0].contiguous(memory_format=torch.channels_last), batch[1])
        return batch

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Batches(self.item, self.num_batches * self.batch_size), batch_size=self.batch_size, drop_last=True)


class StepTimer(pl.Callback):
    """FLOPs (``count_flops``) and wall time of the first training step; wall time of the batches
    after the warm-up."""

    def __init__(self, warmup: int, count_flops: bool = True) -> None:
        self.warmup, self.count_flops, self.flops, self.seconds, self.timed = warmup, count_flops, 0, 0.0, 0
        self.first_step_seconds = 0.0
        self.counter: FlopCounterMode | None = None

    def _sync(self, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self._sync(module)
            self.first_start = time.perf_counter()
            if self.count_flops:
                self.counter = FlopCounterMode(display=False)
                self.counter.__enter__()
        if batch_idx == self.warmup:
            self._sync(module)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            if self.count_flops:
                self.counter.__exit__(None, None, None)
                self.flops = self.counter.get_total_flops()
            self._sync(module)
            self.first_step_seconds = time.perf_counter() - self.first_start
        if batch_idx >= self.warmup:
            self._sync(module)
            self.seconds = time.perf_counter() - self.start
            self.timed = batch_idx - self.warmup + 1


def build(task: str, batch_size: int, num_batches: int, extra_args: tuple[str, ...] = ()):
    """The task's LightningModule as its YAML builds it, and synthetic data of the same shape."""
    from ptft.cli import PtftCLI

    configs, extra, kind = TASKS[task]
    # every init arg given: keys of the YAML's own data section with the same name would be kept otherwise
    data = {"class_path": "throughput.SyntheticData", "init_args": {"kind": kind, "batch_size": batch_size, "num_batches": num_batches,
                                                                    "image_size": IMAGE_SIZE, "block_size": BLOCK_SIZE, "vocab_size": 8192}}
    args = [a for c in configs for a in ("-c", str(CONFIGS / c))]
    args += [*extra, *extra_args, f"--data={json.dumps(data)}", "--trainer.logger=false", "--trainer.callbacks=[]",
             "--trainer.enable_checkpointing=false"]
    sys.argv = sys.argv[:1]  # LightningCLI warns when it sees this script's own options
    cli = PtftCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                  save_config_callback=None, auto_configure_optimizers=False, run=False, args=args)
    cli.model.check_data(cli.datamodule.spec)
    return cli.model, cli.datamodule, kind


def peak_flops() -> tuple[str, float | None]:
    if not torch.cuda.is_available():
        return "CPU", None
    name = torch.cuda.get_device_name(0)
    return name, next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def measure(task: str, batch_size: int, warmup: int, steps: int, compiled: bool = False) -> dict:
    model, data, kind = build(task, batch_size, warmup + steps, ("--model.torch_compile=true",) if compiled else ())
    timer = StepTimer(warmup, count_flops=not compiled)  # FLOPs are the eager run's
    gpu = torch.cuda.is_available()
    trainer = pl.Trainer(max_epochs=1, max_steps=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], accelerator="auto", devices=1, limit_val_batches=0,
                         precision="bf16-mixed" if gpu else "32-true")
    trainer.fit(model, datamodule=data)
    per_sample = BLOCK_SIZE if kind in ("lm", "text") else 1
    per_second = timer.timed * batch_size / timer.seconds
    return {"unit": "tokens/s" if per_sample > 1 else "images/s", "samples_per_s": per_second * per_sample,
            "step_flops": timer.flops, "flops_per_s": timer.flops * timer.timed / timer.seconds,
            "params": sum(p.numel() for p in model.parameters()), "batch": batch_size, "first_step_s": timer.first_step_seconds}


def rate(row: dict) -> str:
    return f"{row['samples_per_s']:,.0f}" if row["samples_per_s"] >= 100 else f"{row['samples_per_s']:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3, help="batches trained before the clock starts")
    parser.add_argument("--steps", type=int, default=10, help="timed batches")
    parser.add_argument("--compile", action="store_true", help="also train every task with model.torch_compile=true")
    parser.add_argument("--quick", action="store_true", help="batch 4, 1 warm-up + 2 timed batches: a smoke test, not a result")
    options = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    batch, warmup, steps = (4, 1, 2) if options.quick else (options.batch_size, options.warmup, options.steps)
    torch.manual_seed(0)
    device, peak = peak_flops()
    rows, compiled = {}, {}
    for task in options.tasks:
        rows[task] = measure(task, batch, warmup, steps)
        print(task, rows[task], flush=True)
        if options.compile:
            torch._dynamo.reset()  # each task compiles from scratch (inductor's on-disk cache may still serve kernels)
            compiled[task] = measure(task, batch, warmup, steps, compiled=True)
            print(task, "compiled", compiled[task], flush=True)

    lines = [
        "## Training throughput per task (synthetic in-memory batches, Lightning Trainer)",
        "",
        f"`python benchmarks/throughput.py --batch-size {batch} --warmup {warmup} --steps {steps} --tasks {' '.join(options.tasks)}"
        f"{' --compile' if options.compile else ''}{' --quick' if options.quick else ''}`",
        "",
        f"Each task from its shipped YAML (PtftCLI, `run=False`) at {IMAGE_SIZE} px / {BLOCK_SIZE}-token blocks, batch {batch}, "
        f"{'bf16-mixed' if peak is not None or device != 'CPU' else 'float32'} on {device}; "
        f"{warmup} warm-up batches, then {steps} timed. MAE: its ViT at 32 px with patch 4; fine-tuning from scratch "
        "(image: DCGANEncoder, imagenette_full.yaml; text: sst2_scratch.yaml). FLOPs per step: FlopCounterMode over one "
        "whole training step (forward + backward of every network it trains; the GAN: discriminator and generator "
        "updates). MFU = achieved FLOP/s / bf16 dense peak."
        + (" Compiled: the same run with `model.torch_compile=true` (regional torch.compile, default mode); first step: "
           "wall time of the first batch (eager: start-up; compiled: mostly compilation)." if options.compile else "")
        + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""),
        "",
        "| task | params (M) | throughput | GFLOP / step | achieved TFLOP/s | MFU |"
        + (" compiled throughput | compiled / eager | first step, eager / compiled (s) |" if options.compile else ""),
        "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if options.compile else ""),
    ]
    for task, row in rows.items():
        mfu = f"{row['flops_per_s'] / peak:.1%}" if peak else "n/a"
        line = (f"| {task} | {row['params'] / 1e6:.2f} | {rate(row)} {row['unit']} | {row['step_flops'] / 1e9:.2f} | "
                f"{row['flops_per_s'] / 1e12:.3f} | {mfu} |")
        if task in compiled:
            fast = compiled[task]
            line += (f" {rate(fast)} {fast['unit']} | {fast['samples_per_s'] / row['samples_per_s']:.2f}x | "
                     f"{row['first_step_s']:.1f} / {fast['first_step_s']:.1f} |")
        lines.append(line)
    report("throughput", "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
