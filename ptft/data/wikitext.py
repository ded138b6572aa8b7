"""WikiText-style corpora as fixed-length blocks of tokens, for language-model pretraining.

``prepare_data`` (once per node, rank 0) trains or loads the tokenizer and tokenizes each split
once into a flat token array on disk (uint16, or uint32 for vocabularies over 65535). The cache is
keyed by the files' contents, the tokenizer and its settings, so a second run starts at once and a
changed file is tokenized again. Files are streamed in 1 MB chunks and encoded in batches: memory
stays flat in corpus size. Every line ends with the end-of-text token.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ptft.data.loaders import evaluation_loader
from ptft.data.resumable import resumable_loader
from ptft.data.text_files import check_split_files, default_cache_dir, file_digest, read_lines
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import TextTokenizer, TokenizerKind, check_tokenizer_settings, load_tokenizer, tokenizer_settings, train_tokenizer
from ptft.errors import ConfigError, MissingPathError
from ptft.temp_files import remove_stale_temp_files, temp_path

CACHE_VERSION = "1"
ENCODE_BATCH_BYTES = 1 << 20
SPLITS = ("train", "val", "test")


def text_batches(path: Path, batch_bytes: int = ENCODE_BATCH_BYTES):
    """Lists of ``(text, ends_line)`` pieces of ``path``, about ``batch_bytes`` of text each."""
    batch, size = [], 0
    for piece in read_lines(path):
        batch.append(piece)
        size += len(piece[0]) + 1
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def tokenize_file(path: Path, tokenizer: TextTokenizer, out: Path) -> int:
    """Write the token ids of ``path`` (an end-of-text token after each line) to ``out`` as a flat
    array; returns the number of tokens. Written under a temporary name, then renamed."""
    dtype = token_dtype(tokenizer.vocab_size)
    tmp = temp_path(out)
    count = text_tokens = 0
    with open(tmp, "wb") as file, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"tokenizing {path.name}", leave=False) as bar:
        for batch in text_batches(path):
            ids = []
            for encoded, (text, ends_line) in zip(tokenizer.encode_batch([text for text, _ in batch]), batch):
                ids += encoded
                if ends_line:
                    ids.append(tokenizer.eos_id)
            np.asarray(ids, dtype=dtype).tofile(file)
            count += len(ids)
            text_tokens += len(ids) - sum(ends_line for _, ends_line in batch)
            bar.update(sum(len(text.encode()) + ends_line for text, ends_line in batch))
    if not text_tokens:
        tmp.unlink()
        raise ConfigError(f"{path} holds no text (only blank lines): an empty corpus")
    os.replace(tmp, out)
    return count


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 2**16 else np.uint32


class TokenBlocks(Dataset):
    """Examples of ``block_size + 1`` tokens (int64 tensors) from a flat token array: example ``i``
    holds tokens ``i * block_size .. (i + 1) * block_size``, so consecutive examples share one token.
    A causal LM reads the first ``block_size`` (``x[:-1]``) and predicts the last ``block_size``
    (``x[1:]``): every token of the array but the first is a target exactly once, and the model is
    trained on all ``block_size`` positions it reads (nanoGPT / litgpt). A masked LM reads the first
    ``block_size`` tokens of each example: every token once per epoch (up to the last partial block)."""

    def __init__(self, tokens: np.ndarray, block_size: int) -> None:
        self.tokens = tokens
        self.block_size = block_size

    def __len__(self) -> int:
        return max(0, len(self.tokens) - 1) // self.block_size

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} of {len(self)}")
        start = index * self.block_size
        return torch.from_numpy(self.tokens[start:start + self.block_size + 1].astype(np.int64))


class WikiTextDataModule(pl.LightningDataModule):
    """Blocks of ``block_size`` tokens (the context length) from WikiText-style text files (``.tokens``,
    ``.raw`` or any UTF-8 text), for masked- and causal-LM pretraining. Each example holds
    ``block_size + 1`` tokens (:class:`TokenBlocks`): the causal LM's inputs and next-token targets. What the model needs is in ``spec``
    (:class:`~ptft.data.spec.DataSpec`); a trained tokenizer enters it in ``prepare_data`` / ``setup``.

    Args:
        root: folder holding the files (relative paths are also looked up under ``$PTFT_DATA``);
            not needed when every file path is absolute.
        train_file: training text, relative to ``root`` or absolute; the tokenizer is trained on it.
        val_file: validation text.
        test_file: test text (None: no test split).
        block_size: the context length: tokens the model reads per example (``spec.max_length``);
            examples hold one token more, the last target, which is the next example's first token.
        batch_size: blocks per batch (per device).
        num_workers: DataLoader worker processes.
        tokenizer: an existing ``tokenizer.json``, or a ptft checkpoint / export folder whose tokenizer
            to use; None trains one on ``train_file`` with the settings below.
        tokenizer_kind: ``bpe`` (byte-level, GPT-2 style), ``wordpiece`` (lower-cased, BERT style) or
            ``char`` (one token per character of the training text; line ends are ``<eos>``).
        vocab_size: size of a trained tokenizer's vocabulary: a warning says when the corpus gives
            another size; at least 262 for ``bpe``; for ``char`` an upper bound (more characters is an error).
        min_frequency: minimum count of a merge / word piece / character in the training text.
        cache_dir: where tokenizers and token arrays are cached (default ``$PTFT_CACHE`` or ``~/.cache/ptft``).
    """

    def __init__(
        self,
        root: str = "wikitext-2",
        train_file: str = "wiki.train.tokens",
        val_file: str = "wiki.valid.tokens",
        test_file: str | None = "wiki.test.tokens",
        block_size: int = 128,
        batch_size: int = 32,
        num_workers: int = 0,
        tokenizer: str | None = None,
        tokenizer_kind: TokenizerKind = "bpe",
        vocab_size: int = 8192,
        min_frequency: int = 2,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if block_size < 2:
            raise ConfigError(f"data.block_size must be >= 2, got {block_size}")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if tokenizer is None:
            check_tokenizer_settings(tokenizer_kind, vocab_size)
        self.save_hyperparameters()
        self.files = check_split_files(root, dict(zip(SPLITS, (train_file, val_file, test_file))))
        self.block_size = block_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.tokenizer_source = tokenizer
        self.settings = tokenizer_settings(tokenizer_kind, vocab_size, min_frequency)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir() / "text"
        self.spec = DataSpec("text", max_length=block_size)
        self.datasets: dict[str, TokenBlocks] = {}
        self._digests: dict[tuple, str] = {}

    @property
    def tokenizer(self) -> TextTokenizer | None:
        return self.spec.tokenizer

    def _digest(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(path)
        return self._digests[key]

    def _key(self, *parts: str) -> str:
        return hashlib.blake2b("\0".join((CACHE_VERSION, *parts)).encode(), digest_size=12).hexdigest()

    def _tokenizer_path(self) -> Path:
        return self.cache_dir / f"tokenizer-{self._key(self._digest(self.files['train']), self.settings)}.json"

    def _tokens_path(self, split: str) -> Path:
        return self.cache_dir / f"tokens-{self._key(self.tokenizer.digest, self._digest(self.files[split]))}.bin"

    def _load_or_train_tokenizer(self, train: bool) -> TextTokenizer:
        if self.tokenizer_source is not None:
            return load_tokenizer(self.tokenizer_source, "data.tokenizer")
        path = self._tokenizer_path()
        if path.is_file():
            return TextTokenizer.from_file(path)
        if not train:
            raise MissingPathError(f"tokenizer cache {path} is missing: prepare_data did not run on this node")
        batches = ([text for text, _ in batch] for batch in text_batches(self.files["train"]))
        tokenizer = train_tokenizer(batches, **json.loads(self.settings))
        tmp = temp_path(path)
        tokenizer.save(tmp)
        os.replace(tmp, path)
        return tokenizer

    def prepare_data(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.cache_dir)  # of a killed tokenization
        self.spec.tokenizer = self._load_or_train_tokenizer(train=True)
        for split in self.files:
            out = self._tokens_path(split)
            if not out.is_file():
                tokenize_file(self.files[split], self.tokenizer, out)

    def setup(self, stage: str | None = None) -> None:
        if self.spec.tokenizer is None:
            self.spec.tokenizer = self._load_or_train_tokenizer(train=False)
        for split in self.files:
            path = self._tokens_path(split)
            if not path.is_file():
                raise MissingPathError(f"token cache {path} for {self.files[split]} is missing: prepare_data did not run on this node")
            tokens = np.memmap(path, dtype=token_dtype(self.tokenizer.vocab_size), mode="r")
            if len(tokens) <= self.block_size:
                raise ConfigError(
                    f"data.block_size={self.block_size} is larger than data.{split}_file {self.files[split]}, "
                    f"which has {len(tokens)} tokens (a block needs block_size + 1); use a smaller block_size or a longer file"
                )
            self.datasets[split] = TokenBlocks(tokens, self.block_size)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise ConfigError(f"data.{split}_file is not set, so there is no {split} split")
        return evaluation_loader(self.datasets[split], self.batch_size, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        # Shuffled, sharded per DDP rank, and resumable mid-epoch (ptft/data/resumable.py).
        return resumable_loader(self.datasets["train"], self.batch_size, self.num_workers, self.trainer)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
