"""Text pairs (translation, summarisation) as padded source / target token batches for seq2seq models."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from ptft.data.bucketing import bucketed_loader
from ptft.data.loaders import evaluation_loader
from ptft.data.seq2seq_batch import Seq2SeqBatch
from ptft.data.spec import DataSpec
from ptft.data.table_rows import Row, read_columns
from ptft.data.text_files import check_split_files, read_text, split_lines
from ptft.data.token_batches import encode_texts, pad_ids
from ptft.data.tokenizer import TextTokenizer, TokenizerKind, check_tokenizer_settings, load_tokenizer, train_tokenizer
from ptft.errors import ConfigError

SPLITS = ("train", "val", "test")
SIDES = ("source", "target")


class TextPair(NamedTuple):
    """A source text, its target text, and the references outputs are scored against (the target first)."""

    source: str
    target: str
    references: list[str]


def read_parallel(source: Path, target: Path, key: str) -> list[Row]:
    """``(source, target)`` lines of two line-aligned files (line ``i`` of one translates line ``i``
    of the other); files of different line counts are an error naming both and ``key``."""
    sources, targets = split_lines(read_text(source)), split_lines(read_text(target))
    if len(sources) != len(targets):
        raise ConfigError(f"{key}: {source} has {len(sources)} lines but {target} has {len(targets)}; "
                          "parallel files need one line per sentence pair")
    return [Row(line, pair) for line, pair in enumerate(zip(sources, targets), 1)]


class TextPairs(Dataset):
    """(source ids, target ids, references) triples."""

    def __init__(self, sources: list[list[int]], targets: list[list[int]], references: list[list[str]]) -> None:
        self.sources, self.targets, self.references = sources, targets, references

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[list[int], list[int], list[str]]:
        return self.sources[index], self.targets[index], self.references[index]


class Seq2SeqCollate:
    """Right-pads sources and targets with the padding id into a :class:`Seq2SeqBatch` (picklable,
    for worker processes)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[tuple[list[int], list[int], list[str]]]) -> Seq2SeqBatch:
        return Seq2SeqBatch(pad_ids([source for source, _, _ in batch], self.pad_id),
                            pad_ids([target for _, target, _ in batch], self.pad_id),
                            [references for _, _, references in batch])


class Seq2SeqDataModule(pl.LightningDataModule):
    """Sequence-to-sequence text (translation, summarisation) from line-aligned parallel files
    (Multi30k, WMT: ``train.en`` + ``train.de``) or from TSV / CSV / JSONL tables with a source and
    a target column. Batches are :class:`~ptft.data.seq2seq_batch.Seq2SeqBatch`: ``<cls> text <sep>``
    ids of sources and targets, each truncated to its maximum length (counted in ``truncated`` and
    reported) and padded per batch, and the reference texts: the target, then any extra references
    of val/test tables (``reference_columns``). Texts lose surrounding whitespace; an empty source or
    target is an error naming its file and line (``skip_empty``: skipped and counted in ``skipped``).
    Training batches hold pairs of similar length, resume mid-epoch and are sharded per DDP rank;
    val/test batches keep the file order. The tokenizer is a given one (the ``ptft`` CLI gives the
    pretrained model's: ``model.pretrained``) or one trained on the training sources and targets
    together (one vocabulary for both sides). What the model needs is in ``spec``.

    Args:
        root: folder holding the files (relative paths are also looked up under ``$PTFT_DATA``);
            not needed when every file path is absolute.
        train_file: training file, relative to ``root`` or absolute: the common name of the two
            parallel files (``train`` with the suffixes ``.en`` / ``.de``: ``train.en`` and ``train.de``),
            or a ``.tsv``, ``.csv`` or ``.jsonl`` table when the suffixes are null.
        val_file: validation file(s), likewise.
        test_file: test file(s), likewise (None: no test split; predictions read the test split).
        src_suffix: suffix of the parallel source files (``.en``); null: the files are tables.
        tgt_suffix: suffix of the parallel target files (``.de``); null together with ``src_suffix``.
        source_column: tables: column name (with a header, or JSON key) or 0-based index of the
            source text (with ``has_header: false``, digits are an index).
        target_column: tables: column name or index of the target text.
        reference_columns: tables: columns of extra reference texts read from the val/test files
            (AESLC's ``[ann0, ann1, ann2]``), each needed in every val/test file; an empty one is
            left out. None: the target is the only reference.
        has_header: the first TSV/CSV row names the columns.
        delimiter: TSV/CSV field separator (None: tab for ``.tsv``, comma otherwise).
        max_source_length: tokens per source, ``<cls>`` and ``<sep>`` included; longer sources are truncated.
        max_target_length: tokens per target, ``<cls>`` and ``<sep>`` included; longer targets are truncated.
        skip_empty: skip pairs with an empty source or target (counted and reported) instead of
            stopping at the first one.
        batch_size: pairs per batch (per device).
        num_workers: DataLoader worker processes.
        tokenizer: a ``tokenizer.json``, or a ptft checkpoint / export folder whose tokenizer to use;
            None: the ``ptft`` CLI sets it to ``model.pretrained`` when the model has one, else one
            is trained on the training sources and targets.
        tokenizer_kind: kind of a tokenizer trained here: ``bpe``, ``wordpiece`` or ``char``
            (see :class:`~ptft.data.wikitext.WikiTextDataModule`).
        vocab_size: vocabulary size of a tokenizer trained here (an upper bound for ``char``).
        min_frequency: how often a token must occur in the training text to get its own id.
    """

    def __init__(
        self,
        root: str = "multi30k",
        train_file: str = "train",
        val_file: str = "val",
        test_file: str | None = "test_2016_flickr",
        src_suffix: str | None = ".en",
        tgt_suffix: str | None = ".de",
        source_column: str | int = "source",
        target_column: str | int = "target",
        reference_columns: list[str | int] | None = None,
        has_header: bool = True,
        delimiter: str | None = None,
        max_source_length: int = 128,
        max_target_length: int = 128,
        skip_empty: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        tokenizer: str | None = None,
        tokenizer_kind: TokenizerKind = "bpe",
        vocab_size: int = 8192,
        min_frequency: int = 2,
    ) -> None:
        super().__init__()
        if min(max_source_length, max_target_length) < 3:
            raise ConfigError(f"data.max_source_length and data.max_target_length must be >= 3 (<cls>, a token, <sep>), "
                              f"got {max_source_length} and {max_target_length}")
        if batch_size < 1 or num_workers < 0:
            raise ConfigError(f"data.batch_size must be >= 1 and data.num_workers >= 0, got {batch_size} and {num_workers}")
        if (src_suffix is None) != (tgt_suffix is None):
            raise ConfigError(f"data.src_suffix and data.tgt_suffix must both be set (parallel files) or both be null (tables), "
                              f"got {src_suffix!r} and {tgt_suffix!r}")
        self.parallel = src_suffix is not None
        if self.parallel and reference_columns:
            raise ConfigError("data.reference_columns needs table files (TSV / CSV / JSONL): set data.src_suffix and data.tgt_suffix to null")
        if tokenizer is None:
            check_tokenizer_settings(tokenizer_kind, vocab_size)
        self.files = self._split_files(root, {"train": train_file, "val": val_file, "test": test_file}, src_suffix, tgt_suffix)
        self.skipped: dict[str, int] = {}
        self.pairs: dict[str, list[TextPair]] = {}
        for split in self.files:
            extra = list(reference_columns or []) if split != "train" else []
            rows = self._read(split, [source_column, target_column, *extra], has_header, delimiter)
            self.pairs[split] = self._pairs(split, rows, skip_empty)
        self.max_lengths = {"source": max_source_length, "target": max_target_length}
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.tokenizer_settings = {"kind": tokenizer_kind, "vocab_size": vocab_size, "min_frequency": min_frequency}
        self.spec = DataSpec("text", max_length=max_source_length, max_target_length=max_target_length, extra_references=bool(reference_columns),
                             tokenizer=load_tokenizer(tokenizer, "data.tokenizer") if tokenizer is not None else None)
        self.truncated: dict[str, dict[str, int]] = {}
        self.datasets: dict[str, TextPairs] = {}

    @property
    def tokenizer(self) -> TextTokenizer | None:
        return self.spec.tokenizer

    @staticmethod
    def _split_files(root: str, names: dict[str, str | None], src_suffix: str | None, tgt_suffix: str | None) -> dict[str, tuple[Path, Path]]:
        """``{split: (source file, target file)}``; a table is both."""
        if src_suffix is None or tgt_suffix is None:
            return {split: (path, path) for split, path in check_split_files(root, names).items()}
        sources = check_split_files(root, {s: n + src_suffix for s, n in names.items() if n is not None}, "data.{split}_file + data.src_suffix")
        targets = check_split_files(root, {s: n + tgt_suffix for s, n in names.items() if n is not None}, "data.{split}_file + data.tgt_suffix")
        return {split: (sources[split], targets[split]) for split in sources}

    def _read(self, split: str, columns: list[str | int], has_header: bool, delimiter: str | None) -> list[Row]:
        if self.parallel:
            return read_parallel(*self.files[split], f"data.{split}_file")
        keys = ["data.source_column", "data.target_column"] + ["data.reference_columns"] * (len(columns) - 2)
        return read_columns(self.files[split][0], columns, keys, has_header, delimiter)

    def _pairs(self, split: str, rows: list[Row], skip_empty: bool) -> list[TextPair]:
        """The pairs of ``rows``; an empty source or target stops here, or with ``skip_empty`` is skipped and counted."""
        pairs = []
        for line, (source, target, *extra) in rows:
            source, target = source.strip(), target.strip()
            if source and target:
                pairs.append(TextPair(source, target, [target, *(text.strip() for text in extra if text.strip())]))
            elif not skip_empty:
                side = 0 if not source else 1
                raise ConfigError(f"{self.files[split][side]}:{line}: empty {SIDES[side]}; set data.skip_empty: true to skip such pairs")
        self.skipped[split] = len(rows) - len(pairs)
        if self.skipped[split]:
            rank_zero_warn(f"data: skipped {self.skipped[split]} of {len(rows)} {split} pairs with an empty source or target (data.skip_empty=true)")
        if not pairs:
            raise ConfigError(f"data.{split}_file: {self.files[split][0]} has no pairs")
        return pairs

    def setup(self, stage: str | None = None) -> None:
        if self.spec.tokenizer is None:  # one vocabulary for both sides
            train = self.pairs["train"]
            self.spec.tokenizer = train_tokenizer([[p.source for p in train], [p.target for p in train]], **self.tokenizer_settings)
        for split, pairs in self.pairs.items():
            if split not in self.datasets:
                self.datasets[split] = self._encode(split, pairs)

    def _encode(self, split: str, pairs: list[TextPair]) -> TextPairs:
        """Token ids of a split's sources and targets; truncations are counted in ``truncated`` and reported."""
        ids, notes = {}, []
        self.truncated[split] = {}
        for side in SIDES:
            limit = self.max_lengths[side]
            ids[side], truncated, longest = encode_texts(self.tokenizer, [getattr(p, side) for p in pairs], limit)
            self.truncated[split][side] = truncated
            if truncated:
                notes.append(f"{truncated} of {len(pairs)} {split} {side}s longer than data.max_{side}_length={limit} tokens "
                             f"were truncated (longest {longest})")
        if notes:
            rank_zero_warn("data: " + "; ".join(notes))
        return TextPairs(ids["source"], ids["target"], [p.references for p in pairs])

    def _collate(self) -> Seq2SeqCollate:
        return Seq2SeqCollate(self.tokenizer.pad_id)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise ConfigError(f"data.{split}_file is not set, so there is no {split} split")
        return evaluation_loader(self.datasets[split], self.batch_size, self.num_workers, self._collate())

    def train_dataloader(self) -> DataLoader:
        # Length-bucketed, sharded per DDP rank, resumable mid-epoch (ptft/data/bucketing.py).
        train = self.datasets["train"]
        lengths = [len(source) + len(target) for source, target in zip(train.sources, train.targets)]
        return bucketed_loader(train, lengths, self.batch_size, self.num_workers, self.trainer, self._collate())

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
