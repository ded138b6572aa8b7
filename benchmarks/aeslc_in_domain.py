"""AESLC subject lines from BART pretraining on AESLC's own training e-mails (in-domain, unlabelled)
against random init, at an equal fine-tuning budget, with AESLC's two extractive baselines.

- **BART on the e-mails**: configs/pretrain/bart_wikitext2.yaml pretrains the Seq2SeqTransformer on the
  bodies of AESLC's training e-mails (their subject lines unused; dev bodies validate), with a BPE
  trained on those bodies; the export is fine-tuned with configs/finetune/aeslc.yaml.
- **random init**: the same backbone, randomly initialised, fine-tuned identically with a BPE trained on
  the task's e-mails and subject lines (the from-scratch recipe).
- **baselines**: the first sentence and the first 10 words of each dev e-mail.

Both read the first ``--length`` tokens of each e-mail. Scored with ROUGE-1/2/L F1 on all 1,960 dev
e-mails, beam search (4 beams) after the last epoch: the best of the subject line and the three human
ones, and against the original subject line alone. Prints one JSON line per part and writes the "aeslc_in_domain" section of
benchmarks/RESULTS.md ("aeslc_in_domain-copy" with ``--copy-attention``, which gives the model copy
attention in pretraining and fine-tuning, and "-gpu" after it with ``--gpu``: one GPU, bf16-mixed;
``--report-from`` a log rebuilds it).

    python benchmarks/aeslc_in_domain.py [--steps 2000 --epochs 6 --length 64 --width 256 --depth 2] [--copy-attention] [--gpu] [--quick]
                                         [--pretrained-export RUN/bart_emails/backbone]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report, rows_from_logs, trainer_args  # noqa: E402
from seq2seq_recipes import extractive_baselines  # noqa: E402

from ptft.data.paths import resolve_data_path  # noqa: E402
from ptft.data.table_rows import read_columns  # noqa: E402
from ptft.evaluation import new_run_dir, pretrain_then_evaluate  # noqa: E402
from ptft.handoff import read_backbone  # noqa: E402

CONFIGS = ROOT / "configs"
SCORES = ("test/rouge1", "test/rouge2", "test/rougeL")
TARGET_SCORES = tuple(f"{key}_target" for key in SCORES)  # against the original subject line alone


def cells(metrics: dict) -> str:
    """The best-of-4 and the original-subject scores (n/a in logs from before the latter were logged)."""
    return " | ".join(f"{metrics[k]:.2f}" if k in metrics else "n/a" for k in SCORES + TARGET_SCORES)


def beaten(best: dict, baselines: dict, keys: tuple[str, ...]) -> list[str]:
    """The scores of ``keys`` on which ``best`` beats every baseline."""
    return [k.split("/")[1] for k in keys if k in best and best[k] > max(result[k] for result in baselines.values())]


def write_email_text(out: Path) -> Path:
    """The bodies of AESLC's train and dev e-mails as ``out/train.txt`` and ``out/valid.txt``, one
    e-mail per line (whitespace runs, newlines included, become one space), a blank line between."""
    out.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.txt"), ("dev", "valid.txt")):
        rows = read_columns(resolve_data_path("aeslc") / f"{split}.jsonl", ["email_body"], ["email_body"], True, None)
        (out / name).write_text("".join(" ".join(row.values[0].split()) + "\n\n" for row in rows), encoding="utf-8")
    return out


def check_export(export: Path, options: argparse.Namespace) -> None:
    """Stop, naming the key, when ``export``'s backbone is not the one the options describe."""
    found = read_backbone(export)[0]["init_args"]
    wanted = {"width": options.width, "heads": options.heads, "encoder_depth": options.depth, "decoder_depth": options.depth,
              "max_source_length": options.length, "copy_attention": options.copy_attention}
    for key, value in wanted.items():
        if found.get(key) != value:
            raise SystemExit(f"{export}: backbone {key} is {found.get(key)!r}, but the options ask for {value!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="pretraining steps (batch 32 x --length tokens)")
    parser.add_argument("--lr", type=float, default=1e-3, help="pretraining peak learning rate")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs (451 steps each at batch 32)")
    parser.add_argument("--length", type=int, default=64, help="tokens of each e-mail read (pretraining blocks and fine-tuning sources)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2, help="encoder and decoder blocks")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--copy-attention", action="store_true", help="the Seq2SeqTransformer copies source tokens too (pointer-generator), "
                        "in pretraining and fine-tuning")
    parser.add_argument("--pretrained-export", type=Path, metavar="DIR", help="fine-tune this export of an earlier run's BART pretraining "
                        "(run_dir/bart_emails/backbone) instead of pretraining again; its shape must match the options")
    parser.add_argument("--gpu", action="store_true", help="one GPU, bf16-mixed (configs/trainer/gpu.yaml + bf16.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/aeslc_in_domain", help="each run writes into a new folder OUT/<time>")
    parser.add_argument("--report-from", nargs="+", metavar="LOG", help="only write the table from the JSON lines an earlier run printed")
    options = parser.parse_args()
    if options.quick:
        options.steps, options.epochs, options.length, options.width, options.depth, options.heads = 4, 1, 32, 32, 1, 2
    if options.report_from:
        return summarise(rows_from_logs(*options.report_from), options)
    if options.pretrained_export:
        check_export(options.pretrained_export, options)
    run_dir = new_run_dir(Path(options.out))
    common = [f"--seed_everything={options.seed}", *trainer_args(options.gpu), "--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false"]
    backbone = [f"--model.backbone.init_args.{k}={v}" for k, v in (("width", options.width), ("heads", options.heads), ("encoder_depth", options.depth),
                                                                   ("decoder_depth", options.depth), ("max_source_length", options.length),
                                                                   ("max_target_length", options.length), *((("vocab_size", 512),) if options.quick else ()),
                                                                   *((("copy_attention", "true"),) if options.copy_attention else ()))]
    vocab = ["--data.vocab_size=512"] if options.quick else []  # the tokenizers of both starts
    quick = ["--trainer.limit_train_batches=4", "--trainer.limit_test_batches=1", "--trainer.num_sanity_val_steps=0", "--data.max_target_length=16",
             "--model.beam_size=1", "--model.max_generate_length=4"] if options.quick else []
    pretrain = ["-c", str(CONFIGS / "pretrain/bart_wikitext2.yaml"), *common, *backbone, f"--data.root={write_email_text(run_dir / 'emails')}",
                "--data.train_file=train.txt", "--data.val_file=valid.txt", "--data.test_file=null", f"--data.block_size={options.length}",
                f"--model.optimizer.init_args.lr={options.lr}", "--model.lr_scheduler.init_args.warmup_fraction=0.05",
                f"--trainer.max_steps={options.steps}", f"--trainer.val_check_interval={min(250, options.steps)}", "--trainer.limit_val_batches=20",
                "--data.cache_dir", str(run_dir / "cache"), *vocab]
    aeslc = ["-c", str(CONFIGS / "finetune/aeslc.yaml"), *common, *backbone, f"--trainer.max_epochs={options.epochs}", "--data.test_file=dev.jsonl",
             f"--data.max_source_length={options.length}", *vocab, *quick]
    rows = {"bart_emails": pretrain_then_evaluate(pretrain, {"aeslc": {"args": aeslc, "test": True}}, run_dir / "bart_emails",
                                                  export=options.pretrained_export)}
    print(json.dumps(rows), flush=True)
    rows["baselines"] = extractive_baselines(50 if options.quick else None)
    print(json.dumps({"baselines": rows["baselines"]}), flush=True)
    summarise(rows, options)


def summarise(rows: dict, options: argparse.Namespace) -> None:
    """The table, and whether the best start beats both extractive baselines on every score."""
    runs = rows["bart_emails"]
    starts = [("random init (own BPE of the task's text)", runs["random_init"]["aeslc"]), ("BART on AESLC's training e-mails", runs["pretrained"]["aeslc"])]
    baselines = rows["baselines"]
    lines = [
        "## AESLC subject lines from in-domain BART pretraining (the training e-mails) vs random init"
        + (", with copy attention" if options.copy_attention else ""), "",
        f"`python benchmarks/aeslc_in_domain.py --steps {options.steps} --lr {options.lr:g} --epochs {options.epochs} --length {options.length} "
        f"--width {options.width} --depth {options.depth} --heads {options.heads}{' --copy-attention' if options.copy_attention else ''}"
        f"{' --gpu' if options.gpu else ''}"
        f"{' --quick' if options.quick else ''}`", "",
        f"Seq2SeqTransformer{' with copy attention' if options.copy_attention else ''}, width {options.width}, {options.depth}+{options.depth} "
        f"blocks, {options.heads} heads, reading the first "
        f"{options.length} tokens of each e-mail. Pretraining: BART's denoising (configs/pretrain/bart_wikitext2.yaml) for {options.steps} steps "
        f"of 32 x {options.length} tokens of the 14,436 training e-mails' bodies (no subject lines; AdamW {options.lr:g}), "
        + (f"{runs['pretrain']['seconds'] / 60:.0f} min" if runs["pretrain"] else "the export of an earlier run (--pretrained-export)")
        + f". Fine-tuning, identical for both starts: configs/finetune/aeslc.yaml for {options.epochs} "
        "epoch(s) (batch 32, AdamW 5e-4, warmup + cosine, label smoothing 0.1). ROUGE F1 on all 1,960 dev e-mails, beam 4: the best of the 4 "
        "references (the protocol of the target), and against the original subject line alone (the single-reference protocol of published AESLC "
        f"results such as PEGASUS's). {'One GPU, bf16-mixed' if options.gpu else '2 CPU cores, fp32'}. One seed." + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""), "",
        "| start | ROUGE-1 | ROUGE-2 | ROUGE-L | vs subject: ROUGE-1 | ROUGE-2 | ROUGE-L | fine-tune (min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {label} | {cells(run['metrics'])} | {run['seconds'] / 60:.0f} |" for label, run in starts),
        *(f"| extractive: {name} | {cells(result)} | |" for name, result in baselines.items()),
    ]
    best = max((run for _, run in starts), key=lambda run: run["metrics"]["test/rougeL"])["metrics"]
    won = beaten(best, baselines, SCORES)
    lines += ["", f"Target (the best start beats both extractive baselines on ROUGE-1, -2 and -L, best of 4 references): "
              f"{'met' if len(won) == len(SCORES) else 'missed'}; the best start beats both on {', '.join(won) or 'none'}."]
    if all(k in best for k in TARGET_SCORES):
        won = beaten(best, baselines, TARGET_SCORES)
        lines.append(f"Against the original subject line alone, the best start beats both on {', '.join(won) or 'none'} (of 3).")
    report("aeslc_in_domain" + ("-copy" if options.copy_attention else "") + ("-gpu" if options.gpu else ""), "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
