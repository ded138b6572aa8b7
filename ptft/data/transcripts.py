"""Transcripts as CTC targets: a configurable text normaliser, the character vocabulary of the
normalised training transcripts, and encoding that counts characters the vocabulary lacks.

The vocabulary is a character :class:`~ptft.data.tokenizer.TextTokenizer` (``train_char_tokenizer``),
so checkpoints and exports store it like a text model's tokenizer. Its pad id (0) is the CTC blank:
padding never occurs inside a target, so the same id serves both.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from ptft.data.tokenizer import SPECIAL_TOKENS, TextTokenizer, is_char_tokenizer, train_char_tokenizer
from ptft.errors import ConfigError

APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


@dataclass(frozen=True)
class TextNormaliser:
    """Unicode NFC, optionally lower case, optionally punctuation (Unicode category P, except the
    apostrophe of "don't" or Dutch "'t"; curly apostrophes become ``'``) replaced by spaces, then
    runs of whitespace collapsed to one space and the ends trimmed."""

    lowercase: bool = True
    strip_punctuation: bool = True

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        if self.lowercase:
            text = text.lower()
        if self.strip_punctuation:
            text = "".join(" " if c != "'" and unicodedata.category(c).startswith("P") else c for c in text.translate(APOSTROPHES))
        return " ".join(text.split())


def build_vocabulary(texts: Sequence[str]) -> TextTokenizer:
    """The character vocabulary of (normalised) ``texts``: the special tokens, then every character seen."""
    characters = set().union(*map(set, texts))
    return train_char_tokenizer(texts, vocab_size=len(SPECIAL_TOKENS) + len(characters))


def check_vocabulary(tokenizer: TextTokenizer, key: str) -> TextTokenizer:
    """``tokenizer`` if it is a character vocabulary, else an error naming ``key``."""
    if not is_char_tokenizer(json.loads(tokenizer.json)):
        raise ConfigError(f"{key}: the tokenizer is not a character vocabulary; speech transcripts need one "
                          "(a tokenizer.json of kind char, or the checkpoint of a model fine-tuned on speech)")
    return tokenizer


def encode_transcripts(tokenizer: TextTokenizer, texts: Sequence[str]) -> tuple[list[list[int]], Counter[str]]:
    """Character ids of each text, and how often each character missing from the vocabulary
    occurred (each is encoded as the unknown id)."""
    vocabulary = tokenizer.tokenizer.get_vocab()
    unknown = Counter(c for text in texts for c in text if c not in vocabulary)
    return tokenizer.encode_batch(texts), unknown
