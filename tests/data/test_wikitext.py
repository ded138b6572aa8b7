"""WikiTextDataModule: packing, the token cache, DDP shards, bad input."""

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

import ptft.data.wikitext as wikitext
from conftest import make_corpus
from ptft.data import WikiTextDataModule
from ptft.errors import ConfigError, MissingPathError


@pytest.fixture
def corpus_dir(tmp_path):
    make_corpus(tmp_path / "wiki" / "wiki.train.tokens", 200, seed=0)
    make_corpus(tmp_path / "wiki" / "wiki.valid.tokens", 40, seed=1)
    make_corpus(tmp_path / "wiki" / "wiki.test.tokens", 40, seed=2)
    return tmp_path / "wiki"


def module(root, tmp_path, **kw):
    kw = {"block_size": 16, "batch_size": 4, "vocab_size": 300, "cache_dir": str(tmp_path / "cache"), **kw}
    return WikiTextDataModule(root=str(root), **kw)


def prepared(root, tmp_path, **kw):
    dm = module(root, tmp_path, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_decoding_the_blocks_gives_back_the_text(corpus_dir, tmp_path):
    dm = prepared(corpus_dir, tmp_path)
    blocks = dm.datasets["val"]
    ids = [int(i) for b in range(len(blocks)) for i in blocks[b][:-1]]  # the contexts, each token once
    text = (corpus_dir / "wiki.valid.tokens").read_text()
    decoded = dm.tokenizer.decode(ids)
    assert len(blocks) == (len(dm.datasets["val"].tokens) - 1) // 16 and blocks[0].shape == (17,)
    assert text.startswith(decoded) and len(decoded) > 0.9 * len(text)  # only the last partial block is dropped
    assert dm.datasets["train"].tokens.dtype == np.uint16


@pytest.mark.parametrize("length", [49, 50, 64])
def test_examples_are_the_context_plus_the_next_token_so_every_token_but_the_first_is_a_target_once(length):
    blocks = wikitext.TokenBlocks(np.arange(length, dtype=np.uint16), 16)
    examples = [blocks[i] for i in range(len(blocks))]
    assert len(examples) == (length - 1) // 16 and all(x.shape == (17,) for x in examples)  # block_size inputs + 1
    inputs = [int(i) for x in examples for i in x[:-1]]
    targets = [int(i) for x in examples for i in x[1:]]
    assert inputs == list(range(len(examples) * 16))  # what an MLM reads: each token once
    assert targets == list(range(1, len(examples) * 16 + 1))  # what a causal LM predicts: each token once, all but the first
    with pytest.raises(IndexError):
        blocks[len(blocks)]


def test_the_spec_max_length_is_the_context_the_model_reads(corpus_dir, tmp_path):
    dm = prepared(corpus_dir, tmp_path)
    assert dm.spec.max_length == 16 and dm.datasets["train"][0][:-1].shape == (16,)


def test_second_run_is_served_from_the_cache_and_a_changed_file_is_tokenized_again(corpus_dir, tmp_path, monkeypatch):
    prepared(corpus_dir, tmp_path)
    calls = []
    real = wikitext.tokenize_file
    monkeypatch.setattr(wikitext, "tokenize_file", lambda path, *a: calls.append(path.name) or real(path, *a))
    train_tokenizer = wikitext.train_tokenizer
    monkeypatch.setattr(wikitext, "train_tokenizer", lambda *a, **k: calls.append("train tokenizer") or train_tokenizer(*a, **k))
    prepared(corpus_dir, tmp_path)
    assert calls == []  # cache hit: nothing trained or tokenized
    with open(corpus_dir / "wiki.valid.tokens", "a") as file:
        file.write(" one more line . \n")
    dm = prepared(corpus_dir, tmp_path)
    assert calls == ["wiki.valid.tokens"]  # only the changed split; the tokenizer depends on train only
    assert dm.tokenizer.decode(dm.datasets["val"].tokens.tolist()).endswith(" one more line . \n")
    prepared(corpus_dir, tmp_path, vocab_size=280)
    assert calls[1:] == ["train tokenizer", "wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"]  # new settings


def test_ddp_shards_are_disjoint_and_cover_the_blocks(corpus_dir, tmp_path):
    dataset = prepared(corpus_dir, tmp_path).datasets["train"]
    shards = [set(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=True, seed=0, drop_last=True)) for r in (0, 1)]
    assert not shards[0] & shards[1] and len(shards[0]) == len(shards[1]) == len(dataset) // 2


def test_missing_split_file_names_the_key(corpus_dir, tmp_path):
    with pytest.raises(MissingPathError, match=r"data.train_file: .*wiki.train.raw does not exist"):
        module(corpus_dir, tmp_path, train_file="wiki.train.raw")


def test_absolute_file_paths_need_no_root_folder_but_relative_ones_do(corpus_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PTFT_DATA", raising=False)
    files = {f"{split}_file": str(corpus_dir / f"wiki.{name}.tokens") for split, name in (("train", "train"), ("val", "valid"), ("test", "test"))}
    dm = module("wikitext-2", tmp_path, **files)  # the config's default root, which does not exist here
    assert dm.files == {"train": corpus_dir / "wiki.train.tokens", "val": corpus_dir / "wiki.valid.tokens", "test": corpus_dir / "wiki.test.tokens"}
    with pytest.raises(MissingPathError, match=r"^data.root: wikitext-2 is not a folder$"):
        module("wikitext-2", tmp_path, **{**files, "test_file": "wiki.test.tokens"})


def test_empty_and_blank_corpora_are_refused(corpus_dir, tmp_path):
    (corpus_dir / "empty.txt").write_text("")
    with pytest.raises(ConfigError, match=r"data.val_file: .*empty.txt is empty"):
        module(corpus_dir, tmp_path, val_file="empty.txt")
    (corpus_dir / "blank.txt").write_text("\n\n\n")
    with pytest.raises(ConfigError, match=r"blank.txt holds no text"):
        prepared(corpus_dir, tmp_path, val_file="blank.txt")


def test_non_utf8_corpus_names_the_byte_offset(corpus_dir, tmp_path):
    (corpus_dir / "bad.txt").write_bytes(b" fine line \n caf\xe9 \n")
    with pytest.raises(ConfigError, match=r"bad.txt is not UTF-8 text: byte offset 16"):
        prepared(corpus_dir, tmp_path, val_file="bad.txt")


def test_block_size_larger_than_a_split_is_refused(corpus_dir, tmp_path):
    (corpus_dir / "short.txt").write_text(" a dog . \n")
    with pytest.raises(ConfigError, match=r"data.block_size=16 is larger than data.val_file .*short.txt, which has \d+ tokens"):
        prepared(corpus_dir, tmp_path, val_file="short.txt")


def test_a_character_tokenizer_run_decodes_back_to_the_text(corpus_dir, tmp_path):
    with pytest.warns(UserWarning, match="upper bound for tokenizer_kind char"):
        dm = prepared(corpus_dir, tmp_path, tokenizer_kind="char", min_frequency=1)
    blocks = dm.datasets["val"]
    ids = [int(i) for b in range(len(blocks)) for i in blocks[b][:-1]]
    text = (corpus_dir / "wiki.valid.tokens").read_text()
    assert dm.tokenizer.vocab_size < 300 and dm.spec.tokenizer is dm.tokenizer
    assert text.startswith(dm.tokenizer.decode(ids)) and len(ids) > 0.9 * len(text)  # one token per character, <eos> per line
    assert int(next(iter(dm.train_dataloader())).max()) < dm.tokenizer.vocab_size
    with pytest.raises(ConfigError, match=r"data.vocab_size 7 is below the smallest byte-level BPE, 262"):
        module(corpus_dir, tmp_path, vocab_size=7)
