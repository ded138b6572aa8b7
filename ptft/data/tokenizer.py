"""Subword and character tokenizers (HF ``tokenizers``): trained on a corpus or loaded from ``tokenizer.json``.

Every ptft tokenizer has six special roles: padding, unknown, class, separator, mask and end of
text. Tokenizers trained here name them ``<pad> <unk> <cls> <sep> <mask> <eos>`` (ids 0-5), so
WikiText's own ``<unk>`` is the unknown token; loaded ones may use BERT's ``[PAD]``... or GPT-2's
``<|endoftext|>`` names.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pytorch_lightning.utilities import rank_zero_warn
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from ptft.errors import ConfigError, MissingPathError

TokenizerKind = Literal["bpe", "wordpiece", "char"]
TOKENIZER_KINDS = ("bpe", "wordpiece", "char")
SPECIAL_TOKENS = {"pad": "<pad>", "unk": "<unk>", "cls": "<cls>", "sep": "<sep>", "mask": "<mask>", "eos": "<eos>"}
# Names a loaded tokenizer may use for each role, in order of preference.
ROLE_NAMES = {
    "pad": ("<pad>", "[PAD]"),
    "unk": ("<unk>", "[UNK]"),
    "cls": ("<cls>", "[CLS]", "<s>"),
    "sep": ("<sep>", "[SEP]", "</s>"),
    "mask": ("<mask>", "[MASK]"),
    "eos": ("<eos>", "<|endoftext|>", "</s>", "[SEP]"),
}
BYTE_LEVEL_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # every byte plus the special tokens: the smallest byte-level BPE


CHAR_PATTERN = r"[\s\S]"  # the character tokenizer's pre-tokenizer splits at every character


def is_char_tokenizer(spec: dict) -> bool:
    """Whether a ``tokenizer.json`` (parsed) is a character tokenizer trained by ptft."""
    pre = spec.get("pre_tokenizer") or {}
    return (spec.get("model") or {}).get("type") == "WordLevel" and pre.get("type") == "Split" and pre.get("pattern") == {"Regex": CHAR_PATTERN}


def check_tokenizer_settings(kind: str, vocab_size: int) -> None:
    """Raise a one-line ConfigError unless a ``kind`` tokenizer of at most ``vocab_size`` tokens can be trained."""
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"data.tokenizer_kind must be one of {', '.join(TOKENIZER_KINDS)}, got {kind!r}")
    if kind == "bpe" and vocab_size < BYTE_LEVEL_MIN_VOCAB:
        raise ConfigError(f"data.vocab_size {vocab_size} is below the smallest byte-level BPE, {BYTE_LEVEL_MIN_VOCAB} tokens (256 bytes + "
                          f"{len(SPECIAL_TOKENS)} special tokens); set data.vocab_size >= {BYTE_LEVEL_MIN_VOCAB}, or data.tokenizer_kind: char")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ConfigError(f"data.vocab_size must be larger than the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")


class TextTokenizer:
    """An HF ``tokenizers.Tokenizer`` with ptft's special roles resolved to ids.

    Attributes ``pad_id``, ``unk_id``, ``cls_id``, ``sep_id``, ``mask_id``, ``eos_id``;
    ``special_ids`` holds them all (never masked, never sampled as random replacements).
    A character tokenizer (:func:`train_char_tokenizer`'s, without a newline token) encodes a newline as the
    end-of-text token, as WikiText's line ends are, so text with newlines round-trips exactly.
    """

    def __init__(self, tokenizer: Tokenizer, source: str = "tokenizer") -> None:
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        ids = {}
        for role, names in ROLE_NAMES.items():
            found = next((vocab[n] for n in names if n in vocab), None)
            if found is None:
                raise ConfigError(f"{source}: no {role} token (looked for {', '.join(names)}); ptft needs all of {', '.join(ROLE_NAMES)}")
            ids[role] = found
        self.pad_id, self.unk_id, self.cls_id = ids["pad"], ids["unk"], ids["cls"]
        self.sep_id, self.mask_id, self.eos_id = ids["sep"], ids["mask"], ids["eos"]
        self.unk_token = tokenizer.id_to_token(self.unk_id)
        self.special_ids = sorted(set(ids.values()))
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.json = tokenizer.to_str()
        self.newline_is_eos = is_char_tokenizer(json.loads(self.json)) and "\n" not in vocab
        self.digest = hashlib.blake2b(self.json.encode(), digest_size=16).hexdigest()

    @classmethod
    def from_json(cls, text: str, source: str = "tokenizer") -> "TextTokenizer":
        try:
            return cls(Tokenizer.from_str(text), source)
        except Exception as error:  # tokenizers raises its own exception type
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"{source}: not a valid tokenizer.json ({str(error).splitlines()[0]})") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "TextTokenizer":
        path = Path(path)
        if not path.is_file():
            raise MissingPathError(f"tokenizer file {path} does not exist")
        return cls.from_json(path.read_text(encoding="utf-8"), str(path))

    def save(self, path: Path) -> None:
        path.write_text(self.json, encoding="utf-8")

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens added); WikiText's ``<unk>`` becomes the unknown token."""
        if self.unk_token != "<unk>":
            texts = [t.replace("<unk>", self.unk_token) for t in texts]
        if self.newline_is_eos and any("\n" in t for t in texts):
            return [self.encode_text(t) for t in texts]
        # encode_batch_fast skips the character offsets, which ptft never uses: about 20% fewer instructions
        return [encoding.ids for encoding in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode_text(self, text: str) -> list[int]:
        """Ids of ``text`` as a corpus file's lines are encoded for language modelling
        (``WikiTextDataModule``): each line's tokens, the end-of-text token for each newline."""
        lines = self.encode_batch(text.split("\n"))
        ids = lines[0]
        for line in lines[1:]:
            ids += [self.eos_id, *line]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; end-of-text tokens become newlines."""
        pieces, start = [], 0
        ids = list(ids)
        for i, token in enumerate(ids + [self.eos_id]):
            if token == self.eos_id:
                pieces.append(self.tokenizer.decode(ids[start:i], skip_special_tokens=False))
                start = i + 1
        return "\n".join(pieces)

    def same_as(self, other: "TextTokenizer") -> bool:
        return self.digest == other.digest


def train_tokenizer(texts: Iterable[str | list[str]], kind: TokenizerKind = "bpe", vocab_size: int = 8192, min_frequency: int = 2) -> TextTokenizer:
    """Train a byte-level BPE (exact round trip: GPT-2 style), a lower-casing WordPiece (BERT style)
    or a character tokenizer on an iterable of texts or batches of texts; the special tokens get ids 0-5.

    ``vocab_size`` is what BPE and WordPiece aim for (a warning says when the corpus gives another
    size) and an upper bound for ``char``: every character seen ``min_frequency`` times gets a token,
    the rest are unknown, and more characters than fit is an error naming the count."""
    check_tokenizer_settings(kind, vocab_size)
    specials = list(SPECIAL_TOKENS.values())
    if kind == "char":
        return train_char_tokenizer(texts, vocab_size, min_frequency)
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk"]))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    trained = TextTokenizer(tokenizer)
    if trained.vocab_size != vocab_size:
        rank_zero_warn(f"data.vocab_size is {vocab_size} but the {kind} tokenizer trained on this corpus has {trained.vocab_size} tokens")
    return trained


def train_char_tokenizer(texts: Iterable[str | list[str]], vocab_size: int, min_frequency: int = 1) -> TextTokenizer:
    """A character vocabulary (a WordLevel model over single characters) of the texts, after the six
    special tokens; WikiText's ``<unk>`` marks are not counted as characters, a newline is ``<eos>``."""
    counts: Counter[str] = Counter()
    for item in texts:
        for text in [item] if isinstance(item, str) else item:
            counts.update(text.replace(SPECIAL_TOKENS["unk"], ""))
    counts.pop("\n", None)
    chars = sorted(c for c, n in counts.items() if n >= min_frequency)
    specials = list(SPECIAL_TOKENS.values())
    if len(specials) + len(chars) > vocab_size:
        raise ConfigError(f"data.vocab_size {vocab_size} cannot hold the {len(chars)} distinct characters (seen >= {min_frequency} times) of the training text "
                          f"plus {len(specials)} special tokens; set data.vocab_size >= {len(chars) + len(specials)} or raise data.min_frequency")
    if not chars:
        raise ConfigError("the training text has no characters (an empty corpus): a character tokenizer needs some")
    vocab = {token: i for i, token in enumerate([*specials, *chars])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=SPECIAL_TOKENS["unk"]))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(CHAR_PATTERN), "isolated")  # every character alone, newlines included
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(specials)
    if len(vocab) < vocab_size:
        rank_zero_warn(f"data.vocab_size {vocab_size} is an upper bound for tokenizer_kind char: the training text has {len(chars)} characters, "
                       f"so the vocabulary has {len(vocab)} tokens")
    return TextTokenizer(tokenizer)


def tokenizer_settings(kind: str, vocab_size: int, min_frequency: int) -> str:
    """The settings a trained tokenizer depends on, as a cache-key fragment."""
    return json.dumps({"kind": kind, "vocab_size": vocab_size, "min_frequency": min_frequency}, sort_keys=True)


def load_tokenizer(source: str | Path, key: str) -> TextTokenizer:
    """The tokenizer in a ``tokenizer.json`` file, a ptft checkpoint or a ``ptft export`` folder."""
    from ptft.handoff import read_tokenizer  # handoff imports the backbones; keep this module light

    path = Path(source)
    if path.suffix == ".json":
        return TextTokenizer.from_file(path)
    text = read_tokenizer(path)
    if text is None:
        raise ConfigError(f"{key}: {path} holds no tokenizer (it was not trained on text); give a tokenizer.json or a text model's checkpoint")
    return TextTokenizer.from_json(text, str(path))
