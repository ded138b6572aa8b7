"""Translation (Multi30k en->de) and summarisation (AESLC) from three starts at an equal fine-tuning
budget: random init, BART pretraining on WikiText-2, and an MLM encoder (BERT2BERT); plus AESLC's
two extractive baselines.

- **scratch**: the Seq2SeqTransformer of the fine-tuning configs, randomly initialised, fine-tuned with
  configs/finetune/multi30k_en_de.yaml and configs/finetune/aeslc.yaml; its tokenizer is trained on the
  task's sources and targets (the from-scratch recipe).
- **bart**: configs/pretrain/bart_wikitext2.yaml pretrains the same Seq2SeqTransformer (trains on
  wiki.valid.tokens); its export is fine-tuned identically, encoding the data with its WikiText-2 tokenizer.
- **mlm**: configs/pretrain/mlm_wikitext2.yaml pretrains a TextTransformer of the same width and
  depth; the fine-tuning builds the same Seq2SeqTransformer from it (BERT2BERT) and trains it identically.
- **baselines**: the first sentence and the first 10 words of each AESLC dev e-mail.

Multi30k is scored on test_2016_flickr (1,000 sentences), AESLC on all of dev (1,960 e-mails, best
of the subject line and the three human ones), both with beam search (4 beams) after the last epoch.
Prints one JSON line per part and writes the "seq2seq_recipes" section of benchmarks/RESULTS.md once
all parts are in (run parts in separate processes, then ``--report-from`` their logs). ``--report-from``
the logs of some parts only (a longer run of one start) writes a section of its own, named by them.

    python benchmarks/seq2seq_recipes.py [--steps 400 --mt-epochs 2 --aeslc-epochs 1 --width 256 --depth 2] [--quick]
    (or in parts: --parts bart baselines > a.log; --parts mlm scratch > b.log; then --report-from a.log b.log)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report, rows_from_logs  # noqa: E402

from ptft.data.paths import resolve_data_path  # noqa: E402
from ptft.evaluation import fit, new_run_dir, pretrain_then_evaluate  # noqa: E402
from ptft.tasks.seq2seq import metric_references, scores, text_metrics  # noqa: E402

CONFIGS = ROOT / "configs"
PARTS = ["scratch", "bart", "mlm", "baselines"]
TASKS = {"multi30k": ("test/bleu", "test/chrf"), "aeslc": ("test/rouge1", "test/rouge2", "test/rougeL")}


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+|\n", text.strip(), maxsplit=1)[0]


def first_words(text: str, count: int = 10) -> str:
    return " ".join(text.split()[:count])


def extractive_baselines(limit: int | None) -> dict:
    """ROUGE-1/2/L of the first sentence and the first 10 words of each AESLC dev e-mail: the best
    over the four references (``test/rouge1``, ...) and against the original subject line alone
    (``test/rouge1_target``, ...), as ``Seq2SeqFineTuning`` logs them."""
    rows = [json.loads(line) for line in (resolve_data_path("aeslc") / "dev.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    references = [[r["subject_line"], *(r[k] for k in ("ann0", "ann1", "ann2") if r.get(k))] for r in rows]
    results = {}
    for name, extract in (("first sentence", first_sentence), ("first 10 words", first_words)):
        results[name] = {}
        for metric_name, metric in text_metrics("summarization").items():
            metric.update([extract(r["email_body"]) for r in rows], metric_references(metric_name, references))
            results[name].update({f"test/{k}": float(v) for k, v in scores(metric_name, metric.compute()).items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400, help="pretraining steps (batch 32 x 128 tokens)")
    parser.add_argument("--mt-epochs", type=int, default=2, help="Multi30k fine-tuning epochs (454 steps each at batch 64)")
    parser.add_argument("--aeslc-epochs", type=int, default=1, help="AESLC fine-tuning epochs (451 steps each at batch 32)")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2, help="encoder blocks (the MLM's depth) and decoder blocks")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/seq2seq_recipes", help="each run writes into a new folder OUT/<time>")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS)
    parser.add_argument("--report-from", nargs="+", metavar="LOG", help="only write the table from the JSON lines earlier runs printed")
    options = parser.parse_args()
    if options.quick:
        options.steps, options.mt_epochs, options.aeslc_epochs, options.width, options.depth, options.heads = 4, 1, 1, 32, 1, 2
    if options.report_from:
        return summarise(rows_from_logs(*options.report_from), options)
    out = Path(options.out)
    run_dir = new_run_dir(out)
    length = 32 if options.quick else 128
    common = [f"--seed_everything={options.seed}", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false"]
    pretrain = [*common, f"--trainer.max_steps={options.steps}", f"--trainer.val_check_interval={options.steps}", "--trainer.limit_val_batches=4",
                "--data.cache_dir", str(out / "cache"), *(["--data.block_size=32", "--data.vocab_size=512"] if options.quick else [])]
    seq2seq = [f"--model.backbone.init_args.{k}={v}" for k, v in (("width", options.width), ("heads", options.heads), ("encoder_depth", options.depth),
                                                                  ("decoder_depth", options.depth), ("max_source_length", length),
                                                                  ("max_target_length", length), *((("vocab_size", 512),) if options.quick else ()))]
    quick = ["--trainer.limit_train_batches=4", "--trainer.limit_test_batches=1", "--trainer.num_sanity_val_steps=0", "--data.vocab_size=512",
             "--model.beam_size=1", "--model.max_generate_length=4"] if options.quick else []
    evaluations = {
        "multi30k": {"args": ["-c", str(CONFIGS / "finetune/multi30k_en_de.yaml"), *common, *seq2seq, *quick, f"--trainer.max_epochs={options.mt_epochs}",
                              *(["--data.max_source_length=32", "--data.max_target_length=32"] if options.quick else [])], "test": True},
        "aeslc": {"args": ["-c", str(CONFIGS / "finetune/aeslc.yaml"), *common, *seq2seq, *quick, f"--trainer.max_epochs={options.aeslc_epochs}",
                           "--data.test_file=dev.jsonl", *(["--data.max_source_length=32", "--data.max_target_length=16"] if options.quick else [])],
                  "test": True},
    }
    rows = {}
    if "scratch" in options.parts:
        rows["scratch"] = {}
        for name, evaluation in evaluations.items():
            run = fit([*evaluation["args"], f"--trainer.logger.init_args.save_dir={run_dir / f'scratch_{name}'}"], test=True, stage=f"{name} scratch")
            rows["scratch"][name] = {"metrics": run["metrics"], "seconds": run["seconds"]}
        print(json.dumps({"scratch": rows["scratch"]}), flush=True)
    if "bart" in options.parts:
        rows["bart"] = pretrain_then_evaluate(["-c", str(CONFIGS / "pretrain/bart_wikitext2.yaml"), *pretrain, *seq2seq], evaluations, run_dir / "bart",
                                              random_init=False)
        print(json.dumps({"bart": rows["bart"]}), flush=True)
    if "mlm" in options.parts:
        text = [f"--model.backbone.init_args.{k}={v}" for k, v in (("width", options.width), ("heads", options.heads), ("depth", options.depth),
                                                                   ("max_length", length), *((("vocab_size", 512),) if options.quick else ()))]
        rows["mlm"] = pretrain_then_evaluate(["-c", str(CONFIGS / "pretrain/mlm_wikitext2.yaml"), *pretrain, *text], evaluations, run_dir / "mlm",
                                             random_init=False)
        print(json.dumps({"mlm": rows["mlm"]}), flush=True)
    if "baselines" in options.parts:
        rows["baselines"] = extractive_baselines(50 if options.quick else None)
        print(json.dumps({"baselines": rows["baselines"]}), flush=True)
    if set(rows) == set(PARTS):
        summarise(rows, options)


def summarise(rows: dict, options: argparse.Namespace) -> None:
    """The table of the parts in ``rows``: section "seq2seq_recipes" when all are in, else a section
    named by the parts (a longer run of one start, say), which the full table does not overwrite."""
    parts = [part for part in PARTS if part in rows]
    starts = [(label, run) for label, run in (("random init (own BPE of the task's text)", rows.get("scratch")),
                                              ("BART on WikiText-2", rows.get("bart", {}).get("pretrained")),
                                              ("MLM on WikiText-2 (BERT2BERT)", rows.get("mlm", {}).get("pretrained"))) if run]
    complete = parts == PARTS
    cell = lambda run, task, key: f"{run[task]['metrics'][key]:.2f}"  # noqa: E731
    pretrained = [f"{name}: {rows[part]['pretrain']['seconds'] / 60:.0f} min" for part, name in (("bart", "BART"), ("mlm", "MLM")) if part in rows]
    lines = [
        "## Seq2seq: translation and summarisation from scratch, from BART and from an MLM (BERT2BERT)"
        + ("" if complete else f" ({', '.join(parts)} only; {options.mt_epochs} Multi30k and {options.aeslc_epochs} AESLC epochs)"), "",
        f"`python benchmarks/seq2seq_recipes.py{'' if complete else ' --parts ' + ' '.join(parts)}{f' --steps {options.steps}' if pretrained else ''} "
        f"--mt-epochs {options.mt_epochs} --aeslc-epochs {options.aeslc_epochs} "
        f"--width {options.width} --depth {options.depth} --heads {options.heads}{' --quick' if options.quick else ''}`", "",
        f"Seq2SeqTransformer, width {options.width}, {options.depth}+{options.depth} blocks, {options.heads} heads. "
        + (f"Pretraining: {options.steps} steps of 32 x 128 tokens on wiki.valid.tokens ({', '.join(pretrained)}). " if pretrained else "")
        + f"Fine-tuning, identical for every start: Multi30k {options.mt_epochs} epoch(s) (batch 64), AESLC {options.aeslc_epochs} epoch(s) "
        "(batch 32, e-mails cut to 128 tokens), AdamW 5e-4, warmup + cosine, label smoothing 0.1; beam 4. Multi30k: SacreBLEU (13a) and chrF "
        "on test_2016_flickr; AESLC: ROUGE F1 on all 1,960 dev e-mails, best of the 4 references. One seed each."
        + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""), "",
        "| start | Multi30k BLEU | chrF | fine-tune (min) | AESLC ROUGE-1 | ROUGE-2 | ROUGE-L | fine-tune (min) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, run in starts:
        lines.append(f"| {label} | {cell(run, 'multi30k', 'test/bleu')} | {cell(run, 'multi30k', 'test/chrf')} | {run['multi30k']['seconds'] / 60:.0f} "
                     f"| {cell(run, 'aeslc', 'test/rouge1')} | {cell(run, 'aeslc', 'test/rouge2')} | {cell(run, 'aeslc', 'test/rougeL')} "
                     f"| {run['aeslc']['seconds'] / 60:.0f} |")
    for name, result in rows.get("baselines", {}).items():
        lines.append(f"| extractive: {name} | | | | {result['test/rouge1']:.2f} | {result['test/rouge2']:.2f} | {result['test/rougeL']:.2f} | |")
    report("seq2seq_recipes" + ("" if complete else "-" + "-".join(parts)), "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
