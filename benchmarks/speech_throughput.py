"""Speech training throughput, ptft's per-step cost against a hand-written loop, and the real-time
factor of ``ptft transcribe``.

1. **Overhead** (the benchmarks/overhead.py protocol): CTC training of the configs' encoder
   (configs/finetune/fillets_ctc_scratch.yaml, stacked with ``--backbone``'s YAML) built by the ``ptft``
   CLI exactly as ``ptft fit`` builds it, against a copy of the same freshly initialised encoder and
   CTC head in a plain loop (the config's AdamW and weight-decay groups, gradient clipping at 1.0,
   ``F.ctc_loss``), on the same pre-computed log-mel batches (batch 16, 4 s utterances). The loops
   interleave step by step; the ratio is total ptft time / total raw time after the warm-up steps.
   The schedule is off in both (the raw loop has none).
2. **Throughput** of a real ``ptft fit`` through the whole pipeline (fillets-nl clips decoded, resampled
   to 16 kHz, log-mel and SpecAugment on the device, bucketed batches of 16): audio seconds trained per
   wall-clock second, after the warm-up steps.
3. **Real-time factor** of ``ptft transcribe`` (processing seconds per audio second, reading the files
   included) over the fillets-nl test split, with the checkpoint of run 2.

Writes the "speech_throughput" section of benchmarks/RESULTS.md (``speech_throughput_gpu`` on a GPU).

    python benchmarks/speech_throughput.py [--backbone conformer] [--steps 60] [--warmup 10] [--quick] [overrides...]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from overhead import DEVICE, InterleavedRawSteps, decays, sync  # noqa: E402
from results import report  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ptft.backbones.base import SequenceFeatures  # noqa: E402
from ptft.cli import run_cli  # noqa: E402
from ptft.data.paths import resolve_data_path  # noqa: E402
from ptft.data.speech_batch import SpeechBatch  # noqa: E402
from ptft.transcribe import Transcriber  # noqa: E402
from ptft.weight_decay import split_weight_decay  # noqa: E402

CONFIGS = ROOT / "configs"


def cli_args(options: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    trainer = ["gpu.yaml", "bf16.yaml"] if DEVICE.type == "cuda" else ["cpu.yaml"]
    return ["-c", str(CONFIGS / "finetune/fillets_ctc_scratch.yaml"), "-c", str(CONFIGS / f"speech/{options.backbone}.yaml"),
            *[a for preset in trainer for a in ("-c", str(CONFIGS / "trainer" / preset))], f"--data.root={resolve_data_path('fillets-nl')}",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.init_args.save_dir={out}", f"--trainer.default_root_dir={out}", *options.overrides, *extra]


def synthetic_batches(steps: int, batch: int, frames: int, n_mels: int, vocabulary: int, distinct: int = 4) -> list[SpeechBatch]:
    """``steps`` items cycling through a few batches of random log-mel frames and transcripts (one per 3 output frames)."""
    generator = torch.Generator().manual_seed(0)
    made = []
    for _ in range(distinct):
        states = torch.randn(batch, frames, n_mels, generator=generator)
        targets = torch.randint(6, vocabulary, (batch, frames // 12), generator=generator)
        made.append(SpeechBatch(SequenceFeatures(states, torch.ones(batch, frames, dtype=torch.bool)), torch.full((batch,), frames),
                                targets, torch.full((batch,), targets.shape[1])))
    return [made[i % distinct] for i in range(steps)]


def raw_loop(backbone: torch.nn.Module, head: torch.nn.Module, defaults: dict, blank: int):
    """One step of the loop a user would write: forward, CTC loss, backward, clip, AdamW step; and its optimizer."""
    backbone, head = backbone.to(DEVICE).train(), head.to(DEVICE).train()
    modules = torch.nn.ModuleList([backbone, head])
    optimizer = torch.optim.AdamW(split_weight_decay([{"params": list(modules.parameters())}], modules),
                                  **{k: defaults[k] for k in ("lr", "betas", "weight_decay", "fused")})
    autocast = torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=DEVICE.type == "cuda")

    def step(batch: SpeechBatch) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            log_probs = head(backbone.forward_features(batch.inputs).states)
        loss = F.ctc_loss(log_probs.transpose(0, 1), batch.targets, backbone.output_lengths(batch.input_lengths), batch.target_lengths,
                          blank=blank)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(modules.parameters(), 1.0)
        optimizer.step()

    return step, optimizer


def overhead(options: argparse.Namespace, out: Path, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds of the timed steps: (raw loop, ptft)."""
    cli = run_cli([*cli_args(options, out / "overhead", f"--trainer.max_steps={steps}", "--model.lr_scheduler=null")],
                  run=False)
    model = cli.model
    optimizer_defaults = model.optimizer(model.parameters()).defaults
    raw_step, raw_optimizer = raw_loop(copy.deepcopy(model.backbone), copy.deepcopy(model.ctc_head), optimizer_defaults, model.blank)
    timer = InterleavedRawSteps(raw_step, warmup)
    cli.trainer.callbacks.append(timer)
    batches = synthetic_batches(steps, 16, 400, model.backbone.n_mels, model.vocabulary.vocab_size)
    cli.trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    assert decays(cli.trainer.optimizers[0]) == decays(raw_optimizer), "the raw loop's weight decay must match ptft's, parameter by parameter"
    return timer.raw_seconds, timer.ptft_seconds


class AudioSeconds(pl.Callback):
    """Audio seconds of the training batches after ``warmup`` steps, and the wall-clock time they took."""

    def __init__(self, warmup: int, hop_seconds: float) -> None:
        self.warmup, self.hop_seconds = warmup, hop_seconds
        self.audio = self.seconds = 0.0
        self.start: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            self.start = sync()
        elif self.start is not None:
            self.audio += float(batch.input_lengths.sum()) * self.hop_seconds
            self.seconds = sync() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="conformer", choices=["conformer", "deepspeech2"])
    parser.add_argument("--steps", type=int, default=60, help="training steps of each measurement")
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing starts")
    parser.add_argument("--quick", action="store_true", help="a few steps: a smoke test, not a result")
    parser.add_argument("overrides", nargs="*", help="more ptft options for the runs, e.g. --data.num_workers=8 --data.cache=true")
    options = parser.parse_args()
    steps, warmup = (4, 1) if options.quick else (options.steps, options.warmup)
    with tempfile.TemporaryDirectory(prefix="ptft-speech-") as temp:
        out = Path(temp)
        raw, ptft = overhead(options, out, steps, warmup)
        counter = AudioSeconds(warmup, 0.01)
        cli = run_cli([*cli_args(options, out / "fit", f"--trainer.max_steps={steps + 1}", "--trainer.limit_val_batches=0")], run=False)
        counter.hop_seconds = cli.datamodule.spec.audio.hop_ms / 1000
        cli.trainer.callbacks.append(counter)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        transcriber = Transcriber(cli.trainer.checkpoint_callback.last_model_path, str(DEVICE))
        test = [json.loads(line) for line in (resolve_data_path("fillets-nl") / "test.jsonl").read_text().splitlines()]
        paths = [str(resolve_data_path("fillets-nl") / row["audio_filepath"]) for row in test if row["duration"] > 0][: 8 if options.quick else None]
        start = time.perf_counter()
        _, audio = transcriber.transcribe_files(paths)
        rtf = (time.perf_counter() - start) / audio
    timed = steps - warmup
    device = f"GPU ({torch.cuda.get_device_name(0)}, bf16-mixed)" if DEVICE.type == "cuda" else f"CPU ({torch.get_num_threads()} threads, fp32)"
    table = "\n".join([
        f"### Speech throughput: {options.backbone}, {device}", "",
        f"`python benchmarks/speech_throughput.py --backbone {options.backbone} --steps {steps} --warmup {warmup}"
        f"{' ' + ' '.join(options.overrides) if options.overrides else ''}`", "",
        "| measurement | value |", "| --- | ---: |",
        f"| raw PyTorch loop, ms per CTC step (batch 16 x 4 s, pre-computed features) | {raw / timed * 1e3:.1f} |",
        f"| ptft (`ptft fit` config, CTC task, callbacks), ms per step | {ptft / timed * 1e3:.1f} |",
        f"| ptft / raw | {ptft / raw:.3f} |",
        f"| training throughput through the whole pipeline (fillets-nl, batch 16), audio s per s | {counter.audio / max(counter.seconds, 1e-9):.1f} |",
        f"| `ptft transcribe` real-time factor ({len(paths)} test clips, {audio / 60:.1f} min, files read included) | {rtf:.4f} |",
    ])
    report(f"speech_throughput_{options.backbone}{'_gpu' if DEVICE.type == 'cuda' else ''}", table, options.quick)


if __name__ == "__main__":
    main()
