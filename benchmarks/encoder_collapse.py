"""Does the decoder read the e-mail? Encoder collapse on AESLC, ptft against HF BART.

Trains HF ``BartForConditionalGeneration`` and ptft's ``Seq2SeqTransformer`` of the same size from
random init (and, with ``--pretrained``, ptft from an export) in one plain loop on the same AESLC
batches of configs/finetune/aeslc.yaml (AdamW 5e-4, betas 0.9/0.98, weight decay 0.01, 5% warmup then
cosine, label smoothing 0.1). Every ``--every`` steps, on the first dev batch (32 e-mails), it reports:

- **spread**: the mean distance of the encoder's output states (real positions) from their mean, over
  their mean norm; about 0.9 at random init, near 0 when the encoder says the same for every token
  of every e-mail (collapsed);
- **gap**: the teacher-forced loss with each e-mail's subject scored against another e-mail's body
  minus the loss against its own; 0 when the decoder ignores the source.

Writes the "encoder_collapse" section of benchmarks/RESULTS.md.

    python benchmarks/encoder_collapse.py [--steps 300 --every 75 --pretrained EXPORT] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report  # noqa: E402

from ptft.cli import run_cli  # noqa: E402
from ptft.pretext.collapse import state_spread  # noqa: E402


def build(options: argparse.Namespace, pretrained: str | None):
    """The ptft task's backbone (random or ``pretrained``) and its AESLC data module, set up."""
    cli = run_cli(["-c", str(ROOT / "configs/finetune/aeslc.yaml"), "-c", str(ROOT / "configs/trainer/cpu.yaml"), f"--seed_everything={options.seed}",
                   f"--data.max_source_length={options.length}", "--trainer.logger=false", "--trainer.callbacks=[]",
                   *[f"--model.backbone.init_args.{k}={v}" for k, v in (("max_source_length", options.length), ("max_target_length", options.length),
                                                                        ("encoder_depth", options.depth), ("decoder_depth", options.depth),
                                                                        ("width", options.width), ("heads", options.heads))],
                   *(["--data.vocab_size=512", "--model.backbone.init_args.vocab_size=512"] if options.quick else []),
                   *([f"--model.pretrained={pretrained}"] if pretrained else [])], run=False)
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    return cli.model.backbone, cli.datamodule


def hf_bart(backbone, tokenizer):
    """HF BART with ``backbone``'s vocabulary, width, depths, heads, MLP size and dropouts."""
    from transformers import BartConfig, BartForConditionalGeneration

    encoder = backbone.encoder
    width, heads = backbone.out_dim, encoder.blocks[0].heads
    config = BartConfig(vocab_size=backbone.vocab_size, d_model=width, encoder_layers=len(encoder.blocks), decoder_layers=len(backbone.decoder.blocks),
                        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=encoder.blocks[0].mlp_out.in_features,
                        decoder_ffn_dim=encoder.blocks[0].mlp_out.in_features, max_position_embeddings=encoder.max_length + 2, dropout=0.1,
                        attention_dropout=0.0, activation_dropout=0.1, activation_function="gelu", pad_token_id=tokenizer.pad_id,
                        bos_token_id=tokenizer.cls_id, eos_token_id=tokenizer.sep_id, decoder_start_token_id=tokenizer.cls_id,
                        forced_eos_token_id=None, tie_word_embeddings=True)
    model = BartForConditionalGeneration(config)
    return (model, lambda s, t: model(input_ids=s, attention_mask=(s != tokenizer.pad_id).long(), decoder_input_ids=t).logits,
            lambda s: model.model.encoder(input_ids=s, attention_mask=(s != tokenizer.pad_id).long()).last_hidden_state)


def trajectory(model, logits, encode, datamodule, options: argparse.Namespace) -> list[tuple[int, float, float]]:
    """``(step, spread, gap)`` at step 0 and every ``--every`` steps of training ``model``."""
    pad = datamodule.spec.tokenizer.pad_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, options.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, options.steps) / options.steps)))
    probe = next(iter(datamodule.val_dataloader()))
    source, target = probe.source, probe.target

    def measure(step: int) -> tuple[int, float, float]:
        model.eval()
        with torch.no_grad():
            states = encode(source)[source != pad]
            spread = state_spread(states).item()
            loss = lambda s: F.cross_entropy(logits(s, target[:, :-1]).flatten(0, 1), target[:, 1:].flatten(), ignore_index=pad).item()  # noqa: E731
            gap = loss(source.roll(1, 0)) - loss(source)
        model.train()
        return step, spread, gap

    points = [measure(0)]
    model.train()
    batches = itertools.chain.from_iterable(itertools.repeat(datamodule.train_dataloader()))
    for step, batch in zip(range(1, options.steps + 1), batches):
        out = logits(batch.source, batch.target[:, :-1])
        loss = F.cross_entropy(out.flatten(0, 1), batch.target[:, 1:].flatten(), ignore_index=pad, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % options.every == 0:
            points.append(measure(step))
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=75)
    parser.add_argument("--length", type=int, default=64, help="tokens of each e-mail read")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2, help="encoder and decoder blocks")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrained", help="also train ptft from this export (e.g. benchmarks/aeslc_in_domain.py's BART on the e-mails)")
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model: a smoke test, not a result")
    options = parser.parse_args()
    if options.quick:
        options.steps, options.every, options.length, options.width, options.depth, options.heads = 4, 2, 32, 32, 1, 2
    rows = {}
    for name, pretrained in (("HF BART, random init", None), ("ptft Seq2SeqTransformer, random init", None),
                             *((("ptft Seq2SeqTransformer from --pretrained", options.pretrained),) if options.pretrained else ())):
        torch.manual_seed(options.seed)
        backbone, datamodule = build(options, pretrained)
        if name.startswith("HF"):
            torch.manual_seed(options.seed)
            model, logits, encode = hf_bart(backbone, datamodule.spec.tokenizer)
        else:
            model, logits, encode = backbone, backbone.teacher_forced_logits, lambda s, b=backbone: b.encode(s).states
        rows[name] = trajectory(model, logits, encode, datamodule, options)
        print(name, rows[name], flush=True)
    steps = [step for step, _, _ in next(iter(rows.values()))]
    lines = [
        "## Encoder collapse on AESLC from random init: ptft against HF BART", "",
        f"`python benchmarks/encoder_collapse.py --steps {options.steps} --every {options.every}{' --pretrained EXPORT' if options.pretrained else ''}"
        f"{' --quick' if options.quick else ''}`", "",
        f"Width {options.width}, {options.depth}+{options.depth} blocks, {options.heads} heads, the first {options.length} tokens of each e-mail, "
        "configs/finetune/aeslc.yaml's batches and optimizer in a plain loop. Each cell: encoder spread (about 0.9 at init, 0 = the same "
        "state for every token of every e-mail) / loss gap (another e-mail's body minus the own; 0 = the source is ignored), on 32 dev e-mails."
        + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""), "",
        "| model | " + " | ".join(f"step {step}" for step in steps) + " |",
        "| --- |" + " ---: |" * len(steps),
        *(f"| {name} | " + " | ".join(f"{spread:.3f} / {gap:.3f}" for _, spread, gap in points) + " |" for name, points in rows.items()),
    ]
    report("encoder_collapse", "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
