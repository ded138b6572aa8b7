"""Tokenize and pack a WikiText-style corpus: ptft's WikiTextDataModule vs HF ``datasets`` + run_mlm.py's recipe.

Both pipelines get the same tokenizer (a byte-level BPE of 8,192 tokens trained once on the corpus
beforehand, passed to both as a ``tokenizer.json``) and pack it into blocks of 128 tokens:

- **ptft**: ``WikiTextDataModule(tokenizer=tokenizer.json).prepare_data()`` + ``setup()``: the file is
  streamed, batch-encoded and written to a flat uint16 token file, then memory-mapped.
- **HF**: the recipe of transformers' ``run_mlm.py`` (not line-by-line): ``load_dataset("text")``,
  ``map`` of the fast tokenizer (``PreTrainedTokenizerFast``, batched, ``return_special_tokens_mask``)
  and a batched ``map`` that concatenates each batch of 1,000 lines and cuts it into blocks.

Corpora: 1x, 4x and 16x ``$PTFT_DATA/wikitext-2/wiki.valid.tokens`` (concatenated copies in a temp dir).
Each measurement runs in a fresh subprocess, cache cold (a fresh ptft cache dir; a fresh ``datasets``
cache dir), plus a second run served from the cache it left. Time: wall clock of the pipeline only
(imports excluded). Peak memory: the peak RSS (VmHWM, reset after the imports) minus the RSS after the imports.
Best of ``--repeats`` interleaved rounds for time, the largest of the rounds for memory.
Prints a table and writes the "text_pipeline" section of benchmarks/RESULTS.md.

    python benchmarks/text_pipeline.py [--scales 1 4 16] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

BLOCK_SIZE = 128
VOCAB_SIZE = 8192
HF_BATCH = 1000  # datasets' default map batch size, as run_mlm.py uses it


def status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM: the peak RSS) in MiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":")) / 1024


def start_memory() -> float:
    """Reset the peak RSS to the current RSS (Linux ``clear_refs`` 5: the imports' own peak is forgotten); the RSS now."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return status_mb("VmRSS")


def peak_rss_mb() -> float:
    return status_mb("VmHWM")


def cpu_seconds() -> float:
    """User + system time of this process, all its threads (the tokenizer's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_ptft(corpus: Path, tokenizer: Path, cache: Path) -> tuple[float, float, float, int]:
    from ptft.data import WikiTextDataModule

    start_rss, start_cpu, start = start_memory(), cpu_seconds(), time.perf_counter()
    # val_file is the same file: its token cache is keyed by content, so it is tokenized once
    dm = WikiTextDataModule(root=str(corpus.parent), train_file=corpus.name, val_file=corpus.name, test_file=None,
                            tokenizer=str(tokenizer), block_size=BLOCK_SIZE, cache_dir=str(cache))
    dm.prepare_data()
    dm.setup("fit")
    return time.perf_counter() - start, cpu_seconds() - start_cpu, peak_rss_mb() - start_rss, len(dm.datasets["train"])


def run_hf(corpus: Path, tokenizer: Path, cache: Path) -> tuple[float, float, float, int]:
    from datasets import load_dataset
    from transformers import PreTrainedTokenizerFast

    start_rss, start_cpu, start = start_memory(), cpu_seconds(), time.perf_counter()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer))
    raw = load_dataset("text", data_files={"train": str(corpus)}, cache_dir=str(cache))

    def tokenize(batch):
        return tok(batch["text"], return_special_tokens_mask=True)

    def group_texts(batch):
        # join the batch's sequences end to end, drop the ragged tail, cut into blocks (run_mlm's idea)
        joined = {key: list(chain.from_iterable(values)) for key, values in batch.items()}
        length = len(joined["input_ids"]) // BLOCK_SIZE * BLOCK_SIZE
        return {key: [values[i:i + BLOCK_SIZE] for i in range(0, length, BLOCK_SIZE)] for key, values in joined.items()}

    tokenized = raw.map(tokenize, batched=True, remove_columns=["text"])
    blocks = tokenized.map(group_texts, batched=True, batch_size=HF_BATCH)
    return time.perf_counter() - start, cpu_seconds() - start_cpu, peak_rss_mb() - start_rss, len(blocks["train"])


def worker(pipeline: str, corpus: Path, tokenizer: Path, cache: Path) -> None:
    seconds, cpu, peak, blocks = (run_ptft if pipeline == "ptft" else run_hf)(corpus, tokenizer, cache)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak, "blocks": blocks}))


def measure(pipeline: str, corpus: Path, tokenizer: Path, cache: Path) -> dict:
    """One pipeline run in a fresh interpreter (its imports done before the clock starts)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, __file__, "--worker", pipeline, str(corpus), str(tokenizer), str(cache)],
                            capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{pipeline} on {corpus.name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16], help="corpus sizes in copies of wiki.valid.tokens")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best time, largest peak")
    parser.add_argument("--quick", action="store_true", help="one round at 1x with a small vocabulary: a smoke test, not a result")
    parser.add_argument("--worker", nargs=4, metavar=("PIPELINE", "CORPUS", "TOKENIZER", "CACHE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        return worker(options.worker[0], *map(Path, options.worker[1:]))

    from ptft.data.paths import resolve_data_path
    from ptft.data.tokenizer import train_tokenizer
    from ptft.data.text_files import read_lines

    scales, repeats, vocab = ([1], 1, 512) if options.quick else (options.scales, options.repeats, VOCAB_SIZE)
    source = resolve_data_path("wikitext-2") / "wiki.valid.tokens"
    if not source.is_file():
        raise SystemExit(f"{source} not found: set PTFT_DATA to a folder holding wikitext-2/wiki.valid.tokens")
    with tempfile.TemporaryDirectory(prefix="ptft_text_pipeline_") as tmp:
        tmp = Path(tmp)
        text = source.read_bytes()
        corpora = {}
        for scale in scales:
            corpora[scale] = tmp / f"corpus_{scale}x.tokens"
            corpora[scale].write_bytes(text * scale)
        tokenizer = tmp / "tokenizer.json"
        train_tokenizer((piece for piece, _ in read_lines(source)), "bpe", vocab).save(tokenizer)

        runs: dict[tuple, list[dict]] = {}
        for round_ in range(repeats):
            for scale in scales:
                for pipeline in ("hf", "ptft"):
                    cache = tmp / f"cache_{pipeline}_{scale}x_{round_}"
                    cold = measure(pipeline, corpora[scale], tokenizer, cache)
                    warm = measure(pipeline, corpora[scale], tokenizer, cache)
                    shutil.rmtree(cache)
                    runs.setdefault((pipeline, scale, "cold"), []).append(cold)
                    runs.setdefault((pipeline, scale, "warm"), []).append(warm)
                    print(json.dumps({"round": round_, "pipeline": pipeline, "scale": scale, "cold": cold, "warm": warm}), flush=True)
        summarise(runs, scales, repeats, source, options.quick)


def summarise(runs: dict, scales: list[int], repeats: int, source: Path, quick: bool) -> None:
    best = {key: (min(r["seconds"] for r in rs), max(r["peak_mb"] for r in rs), rs[0]["blocks"], min(r["cpu_seconds"] for r in rs))
            for key, rs in runs.items()}
    size_mb = source.stat().st_size / 1e6
    lines = [
        "## Text pipeline: tokenize + pack WikiText (ptft WikiTextDataModule vs HF datasets + run_mlm.py's group_texts)",
        "",
        f"`python benchmarks/text_pipeline.py --scales {' '.join(map(str, scales))} --repeats {repeats}{' --quick' if quick else ''}`",
        "",
        f"Corpus: k concatenated copies of wiki.valid.tokens ({size_mb:.2f} MB each); the same byte-level BPE "
        f"tokenizer.json (vocabulary {VOCAB_SIZE if not quick else 512}, trained beforehand) for both; blocks of {BLOCK_SIZE} tokens. "
        "ptft: `WikiTextDataModule.prepare_data()` + `setup()` (streamed, batch-encoded, uint16 memmap cache). HF: "
        "`load_dataset('text')` + batched `map` of `PreTrainedTokenizerFast` + batched `map` of group_texts (run_mlm.py, "
        "not line by line). Each run in a fresh subprocess, imports excluded; cold = fresh cache dir (datasets' cache in a "
        "fresh temp dir too), warm = a second process on the cache the cold run left. Peak = peak RSS (VmHWM, reset with "
        f"`/proc/self/clear_refs` after the imports) minus the RSS after the imports. CPU = user + system seconds of the process (all threads): steadier than wall time "
        f"on shared cores. Best time / largest peak of {repeats} interleaved round(s). ptft's blocks also "
        "hold one end-of-text token per line; HF's group_texts drops a ragged tail per 1,000 lines."
        + (" **Quick mode: a smoke test, not a result.**" if quick else ""),
        "",
        "| corpus | MB | HF cold (s) | ptft cold (s) | speed-up | HF / ptft CPU (s) | CPU ratio | HF peak (MB) | ptft peak (MB) "
        "| HF warm (s) | ptft warm (s) | HF / ptft blocks |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for scale in scales:
        hf, pt = best[("hf", scale, "cold")], best[("ptft", scale, "cold")]
        hf_warm, pt_warm = best[("hf", scale, "warm")], best[("ptft", scale, "warm")]
        lines.append(f"| {scale}x | {size_mb * scale:.1f} | {hf[0]:.2f} | {pt[0]:.2f} | {hf[0] / pt[0]:.1f}x | {hf[3]:.1f} / {pt[3]:.1f} | "
                     f"{hf[3] / pt[3]:.1f}x | {hf[1]:.0f} | {pt[1]:.0f} | "
                     f"{hf_warm[0]:.2f} | {pt_warm[0]:.2f} | {hf[2]:,} / {pt[2]:,} |")
    from results import report

    report("text_pipeline", "\n".join(lines), quick)


if __name__ == "__main__":
    main()
