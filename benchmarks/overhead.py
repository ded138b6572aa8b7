"""Per-step cost of training through ptft vs a hand-written PyTorch loop, same model, data,
optimizer and number of steps.

ptft: the task and Trainer are built by the ``ptft`` CLI (``run_cli(..., run=False)``) from configs/pretrain/autoencoder_imagenette.yaml
(+ configs/trainer/cpu.yaml without a GPU, gpu.yaml with one) exactly as ``ptft fit`` builds them
(W&B offline logger every 20 steps, checkpoint callback, config saving), then ``trainer.fit`` runs
on a loader of pre-generated batches. Raw: a copy of the same freshly initialised encoder and
decoder (copied before ptft trains them), ``torch.optim.AdamW`` with the config's lr, weight decay and ``fused=True`` and ptft's
parameter groups (no weight decay on biases and norms: ``ptft.weight_decay``), ``zero_grad / forward / mse / backward / step`` over
the same loader. Batches are float images in [-1, 1], made before timing,
so the data pipeline is not what is measured. The loops interleave step by step (after each
ptft step, a callback runs one raw step on the same batch), so both see the same load from other
jobs; after the warm-up steps, the total time of each loop's steps is compared.

Two settings: the demo's (DCGAN encoder width 32, 4 layers, decoder width 32, batch 128, 32 px),
and a deliberately tiny model (width 4, 2 layers, batch 8, 8 px) where per-step framework cost shows.

    python benchmarks/overhead.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import wandb  # noqa: E402
from PIL import Image  # noqa: E402
from results import report  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from ptft.cli import run_cli  # noqa: E402
from ptft.weight_decay import split_weight_decay  # noqa: E402

CONFIGS = ROOT / "configs"
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SETTINGS = {  # name: (backbone width, layers, decoder width, batch size, image size, steps, warm-up steps)
    "demo config": (32, 4, 32, 128, 32, 50, 10),
    "tiny model": (4, 2, 4, 8, 8, 400, 50),
}
TARGET = 1.03


class Batches(Dataset):
    """``steps`` items cycling through a few pre-generated (images, labels) batches."""

    def __init__(self, batch_size: int, image_size: int, steps: int, distinct: int = 8) -> None:
        generator = torch.Generator().manual_seed(0)
        self.batches = [(torch.rand(batch_size, 3, image_size, image_size, generator=generator).mul(2).sub(1)
                         .contiguous(memory_format=torch.channels_last), torch.zeros(batch_size, dtype=torch.long))
                        for _ in range(distinct)]
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int):
        return self.batches[index % len(self.batches)]


def loader(dataset: Batches) -> DataLoader:
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=0, pin_memory=DEVICE.type == "cuda")


def sync() -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


class InterleavedRawSteps(pl.Callback):
    """After each ptft step, one step of the raw loop on the same batch, so that both loops see the
    same moment's machine load. Times (after ``warmup`` steps): ptft from the end of the raw step to
    the end of the next ptft step (everything Lightning and ptft do between steps included), raw
    from the end of a ptft step to the end of the raw step."""

    def __init__(self, raw_step, warmup: int) -> None:
        self.raw_step, self.warmup = raw_step, warmup
        self.ptft_seconds = self.raw_seconds = 0.0
        self.last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = sync()
        if self.last is not None:
            self.ptft_seconds += now - self.last
        self.raw_step(batch)
        self.last = sync()
        if batch_idx + 1 > self.warmup:
            self.raw_seconds += self.last - now
        else:
            self.last = None if batch_idx + 1 < self.warmup else self.last


def tiny_tree(root: Path) -> Path:
    """A one-class image folder: the CLI builds the configured DataModule, which these runs never read."""
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / split / "a" / "0.png")
    return root


def build_ptft(setting: tuple, steps: int, out: Path, extra: list[str]):
    width, layers, decoder_width, batch, size, _, _ = setting
    trainer_preset = "gpu.yaml" if DEVICE.type == "cuda" else "cpu.yaml"
    args = ["-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / f"trainer/{trainer_preset}"),
            f"--data.root={tiny_tree(out / 'data')}", f"--data.image_size={size}", f"--data.batch_size={batch}",
            f"--model.backbone.init_args.base_width={width}", f"--model.backbone.init_args.num_layers={layers}",
            f"--model.decoder_width={decoder_width}", f"--trainer.max_steps={steps}", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={out}", f"--trainer.default_root_dir={out}", *extra]
    return run_cli(args, run=False)


def time_pair(setting: tuple, steps: int, warmup: int, out: Path, extra: list[str]) -> tuple[float, float]:
    """Seconds of the timed steps: (raw loop, ptft), both from the same freshly initialised model."""
    cli = build_ptft(setting, steps, out, extra)
    raw_step, raw_optimizer = raw_loop(copy.deepcopy(cli.model.backbone), copy.deepcopy(cli.model.decoder))
    raw = InterleavedRawSteps(raw_step, warmup)
    cli.trainer.callbacks.append(raw)
    cli.trainer.fit(cli.model, train_dataloaders=loader(Batches(setting[3], setting[4], steps)))
    assert cli.trainer.global_step == steps, cli.trainer.global_step
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 2e-3 and optimizer.defaults["weight_decay"] == 0.05
    assert optimizer.defaults["fused"], "the raw loop's optimizer must match the config's"
    assert param_groups(optimizer) == param_groups(raw_optimizer), "the raw loop's weight-decay groups must match ptft's"
    wandb.finish()
    return raw.raw_seconds, raw.ptft_seconds


def param_groups(optimizer: torch.optim.Optimizer) -> list[tuple[float, list[torch.Size]]]:
    return [(group["weight_decay"], [p.shape for p in group["params"]]) for group in optimizer.param_groups]


def decays(optimizer: torch.optim.Optimizer) -> list[tuple[float, float, tuple[int, ...]]]:
    """(lr, weight decay, shape) of every parameter, sorted: the same for ptft's per-part groups and one raw loop's."""
    return sorted((group["lr"], group["weight_decay"], tuple(p.shape)) for group in optimizer.param_groups for p in group["params"])


def raw_loop(encoder: torch.nn.Module, decoder: torch.nn.Module):
    """One step of the loop a user would write (the config's optimizer, MSE reconstruction, no framework), and its optimizer."""
    encoder, decoder = encoder.to(DEVICE).train(), decoder.to(DEVICE).train()
    groups = split_weight_decay([{"params": [*encoder.parameters(), *decoder.parameters()]}], torch.nn.ModuleList([encoder, decoder]))
    optimizer = torch.optim.AdamW(groups, lr=2e-3, weight_decay=0.05, fused=True)

    def step(batch) -> None:
        images = batch[0].to(DEVICE, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(decoder(encoder.forward_features(images)), images)
        loss.backward()
        optimizer.step()

    return step, optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="raw/ptft pairs per setting")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default 1 on the CPU: with other jobs on the cores, 2 OpenMP "
                             "threads spin against them and small steps get ~10x slower, for both loops)")
    parser.add_argument("--demo-steps", type=int, nargs=2, default=None, metavar=("STEPS", "WARMUP"),
                        help=f"steps and warm-up steps per run at the demo config (default {SETTINGS['demo config'][5:]})")
    parser.add_argument("--quick", action="store_true", help="a few steps: a smoke test, not a result")
    options = parser.parse_args()
    if options.demo_steps:
        SETTINGS["demo config"] = (*SETTINGS["demo config"][:5], *options.demo_steps)
    threads = options.threads or (1 if DEVICE.type == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    variants = {  # what ptft runs with: as the config (progress bar on), as the demo runs it, without a logger
        "ptft (config: W&B offline, progress bar)": [],
        "ptft (demo: no progress bar)": ["--trainer.enable_progress_bar=false"],
        "ptft (no logger, no progress bar)": ["--trainer.enable_progress_bar=false", "--trainer.logger=false"],
    }
    if options.quick:  # the W&B path and the bare path, on the tiny model
        variants = {k: v for k, v in variants.items() if "config" in k or "no logger" in k}
        options.settings = ["tiny model"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptft-overhead-") as temp:
        for name in options.settings:
            setting = SETTINGS[name]
            steps, warmup = (6, 2) if options.quick else setting[5:]
            repeats = 1 if options.quick else options.repeats
            raw, ptft = [], {variant: [] for variant in variants}
            for repeat in range(repeats):
                for variant, extra in variants.items():
                    seconds = time_pair(setting, steps, warmup, Path(temp) / f"run{repeat}", extra)
                    raw.append(seconds[0])
                    ptft[variant].append(seconds[1])
            measured = steps - warmup
            raw_ms = statistics.median(raw) / measured * 1e3
            rows.append(f"| {name} | raw PyTorch loop | {raw_ms:.2f} | 1.000 | | |")
            for variant, seconds in ptft.items():
                pairs = [p / r for p, r in zip(seconds, raw[list(variants).index(variant)::len(variants)])]
                ratio = statistics.median(pairs)
                target = f"<= {TARGET}" if name == "demo config" else ""
                met = ("yes" if ratio <= TARGET else "no") if target else ""
                rows.append(f"| {name} | {variant} | {statistics.median(seconds) / measured * 1e3:.2f} | {ratio:.3f} | {target} | {met} |")
                print(rows[-1], " pair ratios:", ", ".join(f"{p:.3f}" for p in pairs), flush=True)

    width, layers, decoder_width, batch, size, steps, warmup = SETTINGS["demo config"]
    tiny = SETTINGS["tiny model"]
    table = "\n".join([
        "## Framework overhead: ptft vs a hand-written PyTorch loop (ms per training step)",
        "",
        f"`python benchmarks/overhead.py --repeats {options.repeats} --threads {threads}"
        f"{' --demo-steps ' + ' '.join(map(str, options.demo_steps)) if options.demo_steps else ''}`",
        "",
        f"Autoencoder pretraining (configs/pretrain/autoencoder_imagenette.yaml) on the {DEVICE.type} ({threads} torch thread(s)), pre-generated "
        f"batches. Demo config: DCGAN encoder width {width}, {layers} layers, decoder width {decoder_width}, batch {batch}, "
        f"{size} px, {steps - warmup} timed steps after {warmup} warm-up steps. Tiny model: width {tiny[0]}, {tiny[1]} layers, "
        f"batch {tiny[3]}, {tiny[4]} px, {tiny[5] - tiny[6]} timed steps. Steps interleave: after each ptft step "
        f"(Lightning Trainer, everything between steps included) one raw step runs on the same batch, so both see the "
        f"same load from other jobs; ratio: total ptft time / total raw time per run, median over {options.repeats} runs.",
        "",
        "| setting | loop | ms / step | ptft / raw | target | met |",
        "| --- | --- | ---: | ---: | --- | --- |",
        *rows,
    ])
    report("overhead", table, options.quick)


if __name__ == "__main__":
    main()
