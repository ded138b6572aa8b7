"""An imported Hugging Face BERT fine-tuned on SST-2 through ``ptft fit`` and through a plain
PyTorch loop over ``transformers``' own BertModel, at equal settings: accuracy and step time.

No public weights can be downloaded here, so the BERT is a randomly initialised
``BertForMaskedLM`` (``--width``, ``--depth``) with a WordPiece tokenizer trained on SST-2's
train split, saved as a Hugging Face folder (config.json, model.safetensors, tokenizer.json). ptft
imports it with ``--model.pretrained=FOLDER`` (configs/finetune/sst2_from_mlm.yaml: a linear head on
the [CLS] state, head dropout 0.1). The plain loop trains BertModel from the same folder with the
same head, initialisation seed, optimizer groups (AdamW, decay on Linear weights only), constant
learning rate and the very batches ptft trained on, recorded in order; both validate on dev.tsv.
Step time is the median over the steps after ``--warmup``.

    python benchmarks/interop_finetune.py [--sst2 ../shared/data/sst2] [--steps 600] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import wandb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report  # noqa: E402

from ptft.cli import run_cli  # noqa: E402
from ptft.evaluation import new_run_dir  # noqa: E402
from ptft.weight_decay import split_weight_decay  # noqa: E402

CONFIGS = ROOT / "configs"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(sst2: Path, vocab_size: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    lines = [line.split("\t")[0] for line in (sst2 / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    tokenizer.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL))
    return tokenizer


def save_bert(folder: Path, tokenizer, options: argparse.Namespace) -> None:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(options.seed)
    config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=options.width, num_hidden_layers=options.depth,
                        num_attention_heads=options.width // 64, intermediate_size=4 * options.width, max_position_embeddings=128,
                        pad_token_id=tokenizer.token_to_id("[PAD]"))
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))


class StepTimes(pl.Callback):
    """Wall seconds of each training step, and the batches in the order they were trained on."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.batches: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(copy.deepcopy(batch))
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def accuracy(predict, loader) -> float:
    correct = total = 0
    with torch.no_grad():
        for ids, labels in loader:
            correct += int((predict(ids).argmax(-1) == labels).sum())
            total += len(labels)
    return 100 * correct / total


def plain_loop(folder: Path, batches: list, optimizer_defaults: dict, pad_id: int, head_dropout: float, seed: int, val_loader):
    """transformers' BertModel + a linear [CLS] head, trained on ``batches``: (accuracy, step seconds)."""
    from transformers import BertModel

    bert = BertModel.from_pretrained(folder, add_pooling_layer=False)
    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Dropout(head_dropout), torch.nn.Linear(bert.config.hidden_size, 2))
    modules = torch.nn.ModuleList([bert, head])
    optimizer = torch.optim.AdamW(split_weight_decay([{"params": list(modules.parameters())}], modules),
                                  **{k: optimizer_defaults[k] for k in ("lr", "betas", "eps", "weight_decay")})

    def logits(ids):
        return head(bert(input_ids=ids, attention_mask=(ids != pad_id).long()).last_hidden_state[:, 0])

    modules.train()
    seconds = []
    for ids, labels in batches:
        start = time.perf_counter()
        loss = F.cross_entropy(logits(ids).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    modules.eval()
    return accuracy(logits, val_loader), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", default=os.path.join(os.environ.get("PTFT_DATA", ROOT.parent / "shared/data"), "sst2"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the median step time")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny model for a few steps (give a tiny --sst2): a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/interop_finetune")
    options = parser.parse_args()
    if options.quick:
        options.steps, options.warmup, options.width, options.depth = 6, 1, 64, 1
    torch.set_num_threads(min(os.cpu_count() or 1, 2))
    sst2, run_dir = Path(options.sst2), new_run_dir(options.out)
    save_bert(run_dir / "bert", train_wordpiece(sst2, 400 if options.quick else 8000), options)

    timer = StepTimes()
    cli = run_cli(["fit", "-c", str(CONFIGS / "finetune/sst2_from_mlm.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
                   f"--model.pretrained={run_dir / 'bert'}", f"--data.root={sst2}", "--data.max_length=64", "--data.batch_size=32",
                   f"--trainer.max_steps={options.steps}", f"--trainer.val_check_interval={options.steps}", "--trainer.max_epochs=-1",
                   "--model.lr_scheduler=null", f"--model.optimizer.init_args.lr={options.lr}", "--model.optimizer.init_args.fused=false",
                   f"--seed_everything={options.seed}", f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.enable_progress_bar=false"],
                  callbacks=[timer])
    wandb.finish()
    ptft_acc = 100 * float(cli.trainer.callback_metrics["val/acc"])
    defaults = cli.trainer.optimizers[0].defaults
    plain_acc, plain_seconds = plain_loop(run_dir / "bert", timer.batches, defaults, cli.datamodule.tokenizer.pad_id,
                                          cli.model.hparams.head_dropout, options.seed, cli.datamodule.val_dataloader())
    ptft_step, plain_step = (statistics.median(s[options.warmup:]) for s in (timer.seconds, plain_seconds))
    table = (
        f"Fine-tuning an imported Hugging Face BERT ({options.depth} layers, width {options.width}, random init, WordPiece "
        f"{cli.datamodule.tokenizer.vocab_size} tokens trained on SST-2 train) on SST-2 for {options.steps} steps of batch 32 "
        f"(max 64 tokens), AdamW lr {options.lr:g} constant, weight decay {defaults['weight_decay']:g} on Linear weights, the same "
        "batches in the same order:\n\n"
        "| loop | SST-2 dev accuracy (%) | median step (ms) | step time ptft / plain |\n| --- | ---: | ---: | ---: |\n"
        f"| ptft fit --model.pretrained=HF folder | {ptft_acc:.1f} | {1000 * ptft_step:.1f} | {ptft_step / plain_step:.3f} |\n"
        f"| plain PyTorch loop, transformers BertModel | {plain_acc:.1f} | {1000 * plain_step:.1f} | 1 |\n\n"
        f"`python benchmarks/interop_finetune.py --steps {options.steps} --width {options.width} --depth {options.depth} --lr {options.lr:g}`"
    )
    report("interop_finetune", table, options.quick)


if __name__ == "__main__":
    main()
