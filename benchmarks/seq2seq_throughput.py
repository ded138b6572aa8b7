"""Seq2seq training tokens/s of ptft against HF ``transformers``' BART at the same size and batch,
and generation tokens/s with and without the decoder's KV cache.

1. **Training.** ptft: ``Seq2SeqFineTuning`` on a ``Seq2SeqTransformer`` built by the ``ptft`` CLI from
   configs/finetune/multi30k_en_de.yaml exactly as ``ptft fit`` builds it (callbacks, logger, the
   config's fused AdamW and weight-decay groups; label smoothing and the schedule off, as HF's loss has
   neither). HF: ``BartForConditionalGeneration`` of the same width, depths, heads, MLP size,
   vocabulary and dropouts (0.1 on embeddings, attention outputs, the MLP's hidden layer and output,
   as ptft's blocks have; SDPA attention, tied embeddings; BART is post-LN, ptft pre-LN) in a plain
   loop (``zero_grad / forward with attention mask and labels / backward / AdamW(fused) step``). Both
   train on the same pre-made batches of random token ids, right-padded (each source and target
   holds between half of ``--length`` and ``--length`` tokens, as sentence pairs vary); the loops
   interleave step by step (the benchmarks/overhead.py protocol), so both see the same load.
   Tokens/s counts the real (unpadded) source and target tokens; the ratio is HF seconds / ptft seconds.
2. **Generation.** Greedy decoding and beam search (4 beams) of ``--gen-length`` tokens (the end
   token is never produced, so every input runs the full length) for a batch of 32 sources, by
   ``ptft.seq2seq_generation.generate`` with and without the cache.

Writes the "seq2seq_throughput" section of benchmarks/RESULTS.md.

    python benchmarks/seq2seq_throughput.py [--width 256 --depth 4 --batch 64 --length 32] [--steps 30] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import wandb  # noqa: E402
from overhead import DEVICE, InterleavedRawSteps, sync  # noqa: E402
from results import report  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from ptft.cli import run_cli  # noqa: E402
from ptft.data.seq2seq_batch import Seq2SeqBatch  # noqa: E402
from ptft.seq2seq_generation import GenerationSettings, generate  # noqa: E402

CONFIGS = ROOT / "configs"
VOCAB = 8192


def batches(steps: int, batch: int, length: int, distinct: int = 4) -> list[Seq2SeqBatch]:
    """``steps`` items cycling through a few batches of random ids, each source and target right-padded
    (id 0) after a random length in [length / 2, length]; targets start with id 2 (``<cls>``)."""
    generator = torch.Generator().manual_seed(0)
    made = []
    for _ in range(distinct):
        source = torch.randint(6, VOCAB, (batch, length), generator=generator)
        target = torch.randint(6, VOCAB, (batch, length + 1), generator=generator)
        target[:, 0] = 2
        for row in range(batch):
            source[row, int(torch.randint(length // 2, length + 1, (1,), generator=generator)):] = 0
            target[row, int(torch.randint(length // 2, length + 1, (1,), generator=generator)) + 1:] = 0
        made.append(Seq2SeqBatch(source, target, [[""]] * batch))
    return [made[i % distinct] for i in range(steps)]


def real_tokens(items: list[Seq2SeqBatch]) -> int:
    return sum(int((b.source != 0).sum() + (b.target != 0).sum()) for b in items)


def hf_bart(options: argparse.Namespace):
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=VOCAB, d_model=options.width, encoder_layers=options.depth, decoder_layers=options.depth,
                        encoder_attention_heads=options.heads, decoder_attention_heads=options.heads, encoder_ffn_dim=4 * options.width,
                        decoder_ffn_dim=4 * options.width, max_position_embeddings=options.length + 2, dropout=0.1, attention_dropout=0.0,
                        activation_dropout=0.1, activation_function="gelu", pad_token_id=0, bos_token_id=2, eos_token_id=3,
                        decoder_start_token_id=2, forced_eos_token_id=None, tie_word_embeddings=True)
    return BartForConditionalGeneration(config).to(DEVICE).train()


def hf_loop(model, defaults: dict):
    optimizer = torch.optim.AdamW(model.parameters(), **{k: defaults[k] for k in ("lr", "betas", "weight_decay", "fused")})

    def step(batch: Seq2SeqBatch) -> None:
        optimizer.zero_grad(set_to_none=True)
        labels = batch.target[:, 1:].masked_fill(batch.target[:, 1:] == 0, -100).contiguous()
        loss = model(input_ids=batch.source, attention_mask=(batch.source != 0).long(), decoder_input_ids=batch.target[:, :-1], labels=labels).loss
        loss.backward()
        optimizer.step()

    return step


def training(options: argparse.Namespace, out: Path, steps: int, warmup: int) -> tuple[float, float, int, int, int]:
    """Seconds of the timed steps (HF, ptft), the parameter counts (HF, ptft) and the real tokens of the timed steps."""
    for split in ("train", "val"):
        for side in ("en", "de"):
            (out / f"{split}.{side}").write_text("a b\n")
    size = [f"--model.backbone.init_args.{k}={v}" for k, v in (("width", options.width), ("heads", options.heads), ("encoder_depth", options.depth),
                                                              ("decoder_depth", options.depth), ("dropout", 0.1))]
    trainer = ["gpu.yaml", "bf16.yaml"] if DEVICE.type == "cuda" else ["cpu.yaml"]
    cli = run_cli(["-c", str(CONFIGS / "finetune/multi30k_en_de.yaml"), *[a for t in trainer for a in ("-c", str(CONFIGS / "trainer" / t))],
                   *size, f"--data.root={out}", "--data.test_file=null", "--model.label_smoothing=0", "--model.lr_scheduler=null",
                   f"--trainer.max_steps={steps}", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                   f"--trainer.logger.init_args.save_dir={out}", f"--trainer.default_root_dir={out}"], run=False)
    model = cli.model
    hf = hf_bart(options)
    defaults = model.optimizer(model.parameters()).defaults
    timer = InterleavedRawSteps(hf_loop(hf, defaults), warmup)
    cli.trainer.callbacks.append(timer)
    items = batches(steps, options.batch, options.length)
    cli.trainer.fit(model, train_dataloaders=DataLoader(items, batch_size=None, collate_fn=lambda b: b))
    wandb.finish()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return timer.raw_seconds, timer.ptft_seconds, count(hf), count(model.backbone), real_tokens(items[warmup:])


def generation(model, options: argparse.Namespace, beams: int, cache: bool) -> float:
    """Generated tokens per second for 32 random sources."""
    source = torch.randint(6, VOCAB, (32, options.length), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    settings = GenerationSettings(options.gen_length, beams, use_cache=cache)
    generate(model, source[:2], 2, -1, GenerationSettings(4, beams, use_cache=cache))  # warm-up
    start = sync()
    outputs = generate(model, source, 2, -1, settings)  # end id -1: never produced, every output has gen_length tokens
    seconds = sync() - start
    assert all(len(o) == options.gen_length for o in outputs)
    return len(source) * options.gen_length / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4, help="encoder and decoder blocks each")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=32, help="source and target tokens per example")
    parser.add_argument("--gen-length", type=int, default=48, help="tokens generated per input")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a tiny model and a few steps: a smoke test, not a result")
    options = parser.parse_args()
    if options.quick:
        options.width, options.depth, options.heads, options.batch, options.length, options.gen_length = 32, 1, 2, 4, 8, 6
    steps, warmup = (4, 1) if options.quick else (options.steps, options.warmup)
    with tempfile.TemporaryDirectory(prefix="ptft-seq2seq-") as temp:
        hf_seconds, ptft_seconds, hf_params, ptft_params, tokens = training(options, Path(temp), steps, warmup)
    from ptft.backbones import Seq2SeqTransformer

    model = Seq2SeqTransformer(VOCAB, options.length, options.gen_length + 1, options.depth, options.depth, options.width, options.heads).to(DEVICE)
    rates = {(beams, cache): generation(copy.deepcopy(model), options, beams, cache) for beams in (1, 4) for cache in (True, False)}
    device = f"GPU ({torch.cuda.get_device_name(0)}, bf16-mixed)" if DEVICE.type == "cuda" else f"CPU ({torch.get_num_threads()} threads, fp32)"
    size = f"width {options.width}, {options.depth}+{options.depth} blocks, {options.heads} heads, vocabulary {VOCAB}"
    table = "\n".join([
        f"### Seq2seq throughput: {size}, {device}", "",
        f"`python benchmarks/seq2seq_throughput.py --width {options.width} --depth {options.depth} --heads {options.heads} --batch {options.batch} "
        f"--length {options.length} --gen-length {options.gen_length} --steps {steps} --warmup {warmup}{' --quick' if options.quick else ''}`", "",
        f"Batch {options.batch} pairs of {options.length // 2}-{options.length} source and target tokens (right-padded); {steps - warmup} timed "
        f"steps after {warmup}, interleaved.",
        f"Parameters: ptft {ptft_params / 1e6:.2f} M, HF BART {hf_params / 1e6:.2f} M.", "",
        "| measurement | value |", "| --- | ---: |",
        f"| HF BART training, tokens/s | {tokens / hf_seconds:,.0f} |",
        f"| ptft `Seq2SeqFineTuning` training (`ptft fit` config), tokens/s | {tokens / ptft_seconds:,.0f} |",
        f"| ptft / HF (target >= 1.0) | {hf_seconds / ptft_seconds:.3f} |",
        *[f"| generation, {'greedy' if beams == 1 else f'beam {beams}'}, {'with' if cache else 'without'} KV cache, tokens/s "
          f"(32 inputs x {options.gen_length} tokens) | {rates[beams, cache]:,.0f} |" for beams in (1, 4) for cache in (True, False)],
        *[f"| KV cache speed-up, {'greedy' if beams == 1 else f'beam {beams}'} | {rates[beams, True] / rates[beams, False]:.2f}x |" for beams in (1, 4)],
    ])
    report(f"seq2seq_throughput{'_gpu' if DEVICE.type == 'cuda' else ''}", table, options.quick)


if __name__ == "__main__":
    main()
