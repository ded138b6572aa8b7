"""Tokenizers trained on a corpus or loaded from tokenizer.json."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from conftest import make_corpus
from ptft.data.text_files import read_lines
from ptft.data.tokenizer import SPECIAL_TOKENS, TextTokenizer, train_tokenizer
from ptft.errors import ConfigError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "wiki.train.tokens", 200)


def lines_of(path):
    return [text for text, _ in read_lines(path)]


def test_trained_bpe_has_the_special_tokens_first_and_round_trips_exactly(corpus):
    tokenizer = train_tokenizer(lines_of(corpus), "bpe", vocab_size=300)
    assert [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.eos_id] == list(range(6))
    assert tokenizer.tokenizer.id_to_token(1) == SPECIAL_TOKENS["unk"] == "<unk>"
    ids = tokenizer.encode_batch([" the cat sees <unk> . "])[0]
    assert tokenizer.unk_id in ids  # WikiText's own <unk> is the unknown token, not five characters
    text = corpus.read_text()
    encoded = [i for line in tokenizer.encode_batch(text.split("\n")[:-1]) for i in [*line, tokenizer.eos_id]]
    assert tokenizer.decode(encoded) == text  # byte-level BPE: exact, spaces and headings included


def test_wordpiece_lowercases_and_keeps_unk(corpus):
    tokenizer = train_tokenizer(lines_of(corpus), "wordpiece", vocab_size=200)
    ids = tokenizer.encode_batch(["The CAT sees <unk>"])[0]
    assert tokenizer.unk_id in ids and tokenizer.decode(ids) == "the cat sees <unk>"


def test_a_loaded_tokenizer_with_bert_names_resolves_its_roles(tmp_path):
    vocab = {name: i for i, name in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"])}
    hf = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    hf.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    hf.save(str(tmp_path / "tokenizer.json"))
    tokenizer = TextTokenizer.from_file(tmp_path / "tokenizer.json")
    assert (tokenizer.pad_id, tokenizer.mask_id, tokenizer.eos_id) == (0, 4, 3)  # end of text falls back to [SEP]
    assert tokenizer.encode_batch(["the <unk> cat"])[0] == [5, 1, 6]  # WikiText's <unk> maps to [UNK]


def test_a_tokenizer_without_a_mask_token_is_refused(tmp_path):
    hf = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "the": 2}, unk_token="<unk>"))
    hf.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match=r"tokenizer.json: no cls token .*ptft needs all of"):
        TextTokenizer.from_file(tmp_path / "tokenizer.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json: not a valid tokenizer.json"):
        TextTokenizer.from_file(tmp_path / "broken.json")
