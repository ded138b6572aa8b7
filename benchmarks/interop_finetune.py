"""An imported Hugging Face BERT fine-tuned on SST-2 through ``ptft fit`` and through a plain
PyTorch loop over ``transformers``' own BertModel, at equal settings: accuracy and step time.

No public weights can be downloaded here, so the BERT is a randomly initialised
``BertForMaskedLM`` (``--width``, ``--depth``) with a WordPiece tokenizer trained on SST-2's
train split, saved as a Hugging Face folder (config.json, model.safetensors, tokenizer.json). ptft
imports it with ``--model.pretrained=FOLDER`` (configs/finetune/sst2_from_mlm.yaml: a linear head on
the [CLS] state, head dropout 0.1). The plain loop trains BertModel from the same folder with the
same head, initialisation seed, optimizer groups (AdamW, decay on Linear weights only), constant
learning rate and the very batches ptft trains on, in order; both are evaluated on dev.tsv and test.tsv.
The two loops alternate step by step (a plain step on each batch right after ptft's), so both
see the same machine load; step time is the mean over the steps after ``--warmup``: for ptft
everything between two of its steps, Lightning's and ptft's own work included.

    python benchmarks/interop_finetune.py [--sst2 ../shared/data/sst2] [--steps 600] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import wandb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from overhead import InterleavedRawSteps  # noqa: E402
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


def accuracy(predict, loader) -> float:
    correct = total = 0
    with torch.no_grad():
        for ids, labels in loader:
            correct += int((predict(ids).argmax(-1) == labels).sum())
            total += len(labels)
    return 100 * correct / total


class PlainLoop:
    """transformers' BertModel + a linear [CLS] head (dropout first, as ptft's head), AdamW over
    the same parameter groups as ptft's optimizer: one training step per call."""

    def __init__(self, folder: Path, optimizer_defaults: dict, pad_id: int, head_dropout: float, seed: int) -> None:
        from transformers import BertModel

        self.bert = BertModel.from_pretrained(folder, add_pooling_layer=False)
        torch.manual_seed(seed)
        self.head = torch.nn.Sequential(torch.nn.Dropout(head_dropout), torch.nn.Linear(self.bert.config.hidden_size, 2))
        self.modules = torch.nn.ModuleList([self.bert, self.head]).train()
        self.optimizer = torch.optim.AdamW(split_weight_decay([{"params": list(self.modules.parameters())}], self.modules),
                                           **{k: optimizer_defaults[k] for k in ("lr", "betas", "eps", "weight_decay")})
        self.pad_id = pad_id

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.bert(input_ids=ids, attention_mask=(ids != self.pad_id).long()).last_hidden_state[:, 0])

    def step(self, batch) -> None:
        ids, labels = batch
        loss = F.cross_entropy(self.logits(ids).float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def accuracy(self, loader) -> float:
        self.modules.eval()
        return accuracy(self.logits, loader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sst2", default=os.path.join(os.environ.get("PTFT_DATA", ROOT.parent / "shared/data"), "sst2"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=20, help="first steps left out of the step times")
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
    tokenizer = train_wordpiece(sst2, 400 if options.quick else 8000)
    save_bert(run_dir / "bert", tokenizer, options)

    cli = run_cli(["-c", str(CONFIGS / "finetune/sst2_from_mlm.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
                   f"--model.pretrained={run_dir / 'bert'}", f"--data.root={sst2}", "--data.max_length=64", "--data.batch_size=32",
                   f"--trainer.max_steps={options.steps}", f"--trainer.val_check_interval={options.steps}",
                   "--trainer.check_val_every_n_epoch=null", "--trainer.max_epochs=-1", "--model.lr_scheduler=null",
                   f"--model.optimizer.init_args.lr={options.lr}", "--model.optimizer.init_args.fused=false", f"--seed_everything={options.seed}",
                   f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.enable_progress_bar=false"], run=False)
    model = cli.model
    defaults = model.optimizer(model.parameters()).defaults
    plain = PlainLoop(run_dir / "bert", defaults, tokenizer.token_to_id("[PAD]"), model.hparams.head_dropout, options.seed)
    timer = InterleavedRawSteps(plain.step, options.warmup)  # a plain step after each ptft step, on the same batch
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(model, datamodule=cli.datamodule)
    ptft_acc = {"dev": 100 * float(cli.trainer.callback_metrics["val/acc"])}
    ptft_acc["test"] = 100 * cli.trainer.test(model, datamodule=cli.datamodule, verbose=False)[0]["test/acc"]
    wandb.finish()
    plain_acc = {split: plain.accuracy(loader()) for split, loader in
                 (("dev", cli.datamodule.val_dataloader), ("test", cli.datamodule.test_dataloader))}
    timed = options.steps - options.warmup
    ptft_step, plain_step = timer.ptft_seconds / timed, timer.raw_seconds / timed
    table = (
        f"Fine-tuning an imported Hugging Face BERT ({options.depth} layers, width {options.width}, random init, WordPiece "
        f"{tokenizer.get_vocab_size()} tokens trained on SST-2 train) on SST-2 for {options.steps} steps of batch 32 "
        f"(max 64 tokens), AdamW lr {options.lr:g} constant, weight decay {defaults['weight_decay']:g} on Linear weights, the same "
        "batches in the same order, one plain step after each ptft step (both see the same machine load). dev.tsv: the 6,735 "
        "held-out phrases; test.tsv: GLUE's 872 dev sentences.\n\n"
        "| loop | SST-2 dev acc (%) | test acc (%) | step (ms) | step time ptft / plain |\n| --- | ---: | ---: | ---: | ---: |\n"
        f"| ptft fit --model.pretrained=HF folder | {ptft_acc['dev']:.1f} | {ptft_acc['test']:.1f} | {1000 * ptft_step:.1f} | "
        f"{ptft_step / plain_step:.3f} |\n"
        f"| plain PyTorch loop, transformers BertModel | {plain_acc['dev']:.1f} | {plain_acc['test']:.1f} | {1000 * plain_step:.1f} | 1 |\n\n"
        f"`python benchmarks/interop_finetune.py --steps {options.steps} --width {options.width} --depth {options.depth} --lr {options.lr:g}`"
    )
    report("interop_finetune", table, options.quick)


if __name__ == "__main__":
    main()
