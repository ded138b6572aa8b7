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


def test_char_tokenizer_has_special_ids_0_to_5_and_round_trips_newlines_and_unicode():
    text = "Zoë's café — naïve 😀 test\n\n  two spaces\tand a tab\r\nend"
    with pytest.warns(UserWarning, match=r"data.vocab_size 1000 is an upper bound for tokenizer_kind char: the training text has \d+ characters"):
        tokenizer = train_tokenizer([text.replace("\n", " "), "<unk> only marks unknowns"], "char", vocab_size=1000, min_frequency=1)
    assert [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.eos_id] == list(range(6))
    assert [tokenizer.tokenizer.id_to_token(i) for i in range(6)] == list(SPECIAL_TOKENS.values())
    vocab = tokenizer.tokenizer.get_vocab()
    assert "😀" in vocab and "\n" not in vocab and tokenizer.vocab_size == 6 + len(set(text.replace("\n", "") + "only marks unknowns"))
    ids = tokenizer.encode_batch([text])[0]
    assert len(ids) == len(text) and ids.count(tokenizer.eos_id) == text.count("\n")  # a newline is <eos>, as WikiText's line ends
    assert tokenizer.decode(ids) == text
    assert tokenizer.encode_batch(["a<unk>"])[0] == [vocab["a"], tokenizer.unk_id]  # WikiText's <unk> is one token
    assert tokenizer.encode_batch(["Ω"])[0] == [tokenizer.unk_id]  # never seen


def test_char_vocab_size_is_an_upper_bound_and_more_characters_is_an_error():
    with pytest.raises(ConfigError, match=r"data.vocab_size 8 cannot hold the 4 distinct characters .* set data.vocab_size >= 10"):
        train_tokenizer(["abcd"], "char", vocab_size=8, min_frequency=1)
    tokenizer = train_tokenizer(["abcd"], "char", vocab_size=10, min_frequency=1)  # exactly full: no warning
    assert tokenizer.vocab_size == 10


def test_a_byte_level_bpe_below_262_is_refused_and_another_size_is_reported(corpus):
    with pytest.raises(ConfigError, match=r"^data.vocab_size 7 is below the smallest byte-level BPE, 262 tokens .*>= 262"):
        train_tokenizer(lines_of(corpus), "bpe", vocab_size=7)
    with pytest.warns(UserWarning, match=r"data.vocab_size is 5000 but the bpe tokenizer trained on this corpus has \d+ tokens"):
        tokenizer = train_tokenizer(lines_of(corpus), "bpe", vocab_size=5000)
    assert 262 <= tokenizer.vocab_size < 5000


def test_a_saved_char_tokenizer_reloads_with_newlines_as_eos_and_other_word_level_ones_do_not(tmp_path):
    tokenizer = train_tokenizer(["ab c"], "char", vocab_size=10, min_frequency=1)
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = TextTokenizer.from_file(tmp_path / "tokenizer.json")
    assert loaded.same_as(tokenizer) and loaded.encode_batch(["a\nb"])[0] == [loaded.tokenizer.token_to_id("a"), loaded.eos_id, loaded.tokenizer.token_to_id("b")]
    hf = Tokenizer(models.WordLevel({name: i for i, name in enumerate([*SPECIAL_TOKENS.values(), "a"])}, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    assert not TextTokenizer(hf).newline_is_eos
