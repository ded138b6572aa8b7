"""Labelled texts from TSV / CSV / JSONL files, as padded token batches for fine-tuning."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from ptft.data.loaders import evaluation_loader
from ptft.data.resumable import resumable_loader
from ptft.data.text_files import check_split_files
from ptft.data.spec import DataSpec
from ptft.data.table_rows import read_columns
from ptft.data.token_batches import encode_texts, pad_ids
from ptft.data.tokenizer import TextTokenizer, TokenizerKind, check_tokenizer_settings, load_tokenizer, train_tokenizer
from ptft.errors import ConfigError

SPLITS = ("train", "val", "test")


def read_rows(path: Path, text_column: str | int, label_column: str | int, has_header: bool, delimiter: str | None) -> list[tuple[str, str]]:
    """``(text, label)`` of every row of a TSV/CSV or JSONL file (:func:`~ptft.data.table_rows.read_columns`);
    an empty label is an error naming its line."""
    rows = []
    for line, (text, label) in read_columns(path, [text_column, label_column], ["data.text_column", "data.label_column"], has_header, delimiter):
        if not label.strip():
            raise ConfigError(f"{path}:{line}: empty label")
        rows.append((text, label.strip()))
    return rows


def label_order(labels: set[str]) -> list[str]:
    """Label names in id order: numerically when all are integers (SST-2's 0/1), else alphabetically."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


class EncodedTexts(Dataset):
    """(token ids, label id) pairs."""

    def __init__(self, ids: list[list[int]], labels: list[int]) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[list[int], int]:
        return self.ids[index], self.labels[index]


class PadCollate:
    """Right-pads a batch of id lists with the padding id (picklable, for worker processes)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_ids([ids for ids, _ in batch], self.pad_id), torch.tensor([label for _, label in batch])


class TextClassificationDataModule(pl.LightningDataModule):
    """Text classification from TSV / CSV / JSONL files: ``<cls> text <sep>`` token ids, truncated
    to ``max_length`` and padded per batch. Label names map to ids (``label_names``, saved in
    checkpoints); a val/test label never seen in training is an error. The tokenizer is a given
    one (the ``ptft`` CLI gives the pretrained model's: ``model.pretrained``), or one trained on the
    training texts. What the model needs is in ``spec`` (:class:`~ptft.data.spec.DataSpec`).

    Args:
        root: folder holding the files (relative paths are also looked up under ``$PTFT_DATA``);
            not needed when every file path is absolute.
        train_file: training file, relative to ``root`` or absolute; ``.tsv``, ``.csv`` or ``.jsonl``.
        val_file: validation file.
        test_file: test file (None: no test split).
        text_column: column name (with a header, or JSON key) or 0-based index of the text (with
            ``has_header: false``, digits are an index: ``--data.text_column=0``).
        label_column: column name or index of the label.
        has_header: the first TSV/CSV row names the columns.
        delimiter: field separator (None: tab for ``.tsv``, comma otherwise).
        max_length: tokens per text, ``<cls>`` and ``<sep>`` included; longer texts are truncated.
        batch_size: texts per batch (per device).
        num_workers: DataLoader worker processes.
        tokenizer: a ``tokenizer.json``, or a ptft checkpoint / export folder whose tokenizer to use;
            None: the ``ptft`` CLI sets it to ``model.pretrained`` when the model has one, else one
            is trained on ``train_file``.
        tokenizer_kind, vocab_size, min_frequency: settings of a tokenizer trained here (``bpe``,
            ``wordpiece`` or ``char``; see :class:`~ptft.data.wikitext.WikiTextDataModule`).
    """

    def __init__(
        self,
        root: str = "sst2",
        train_file: str = "train.tsv",
        val_file: str = "dev.tsv",
        test_file: str | None = "test.tsv",
        text_column: str | int = "sentence",
        label_column: str | int = "label",
        has_header: bool = True,
        delimiter: str | None = None,
        max_length: int = 128,
        batch_size: int = 64,
        num_workers: int = 0,
        tokenizer: str | None = None,
        tokenizer_kind: TokenizerKind = "bpe",
        vocab_size: int = 8192,
        min_frequency: int = 2,
    ) -> None:
        super().__init__()
        if max_length < 3:
            raise ConfigError(f"data.max_length must be >= 3 (<cls>, a token, <sep>), got {max_length}")
        self.files = check_split_files(root, dict(zip(SPLITS, (train_file, val_file, test_file))))
        self.rows = {split: read_rows(path, text_column, label_column, has_header, delimiter) for split, path in self.files.items()}
        for split, rows in self.rows.items():
            if not rows:
                raise ConfigError(f"data.{split}_file: {self.files[split]} has no rows")
        self.label_names = label_order({label for _, label in self.rows["train"]})
        if len(self.label_names) < 2:
            raise ConfigError(f"data.train_file: {self.files['train']} has a single label ({self.label_names[0]!r}); classification needs two or more")
        known = set(self.label_names)
        for split in ("val", "test"):
            unseen = sorted({label for _, label in self.rows.get(split, []) if label not in known})
            if unseen:
                raise ConfigError(
                    f"data.{split}_file: {self.files[split]} has label(s) {', '.join(map(repr, unseen[:5]))} never seen in "
                    f"{self.files['train']} (training labels: {', '.join(map(repr, self.label_names))})"
                )
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        if tokenizer is None:
            check_tokenizer_settings(tokenizer_kind, vocab_size)
        self.tokenizer_settings = {"kind": tokenizer_kind, "vocab_size": vocab_size, "min_frequency": min_frequency}
        self.spec = DataSpec("text", num_classes=len(self.label_names), label_names=self.label_names, max_length=max_length,
                             tokenizer=load_tokenizer(tokenizer, "data.tokenizer") if tokenizer is not None else None)
        self.datasets: dict[str, EncodedTexts] = {}

    @property
    def tokenizer(self) -> TextTokenizer | None:
        return self.spec.tokenizer

    def setup(self, stage: str | None = None) -> None:
        if self.spec.tokenizer is None:
            self.spec.tokenizer = train_tokenizer((text for text, _ in self.rows["train"]), **self.tokenizer_settings)
        ids = {name: i for i, name in enumerate(self.label_names)}
        for split, rows in self.rows.items():
            tokens, _, _ = encode_texts(self.tokenizer, [text for text, _ in rows], self.max_length)
            self.datasets[split] = EncodedTexts(tokens, [ids[label] for _, label in rows])

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise ConfigError(f"data.{split}_file is not set, so there is no {split} split")
        return evaluation_loader(self.datasets[split], self.batch_size, self.num_workers, collate_fn=PadCollate(self.tokenizer.pad_id))

    def train_dataloader(self) -> DataLoader:
        # Shuffled, sharded per DDP rank, and resumable mid-epoch (ptft/data/resumable.py).
        return resumable_loader(self.datasets["train"], self.batch_size, self.num_workers, self.trainer,
                                collate_fn=PadCollate(self.tokenizer.pad_id))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
