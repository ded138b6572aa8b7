"""Shared fixtures: tiny generated image trees, the real data folder, quiet offline W&B."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))


def make_image_tree(root: Path, splits=("train", "val"), classes=("cat", "dog", "owl"), per_class=8, size=(40, 48)) -> Path:
    """``root/<split>/<class>/<i>.jpg``: images of a class share a colour, so they are separable."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(c * 97) % 256, (c * 57 + 80) % 256, (c * 23 + 160) % 256])
            for i in range(per_class):
                pixels = np.clip(base + rng.normal(0, 20, (*size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the river", "a small bird"]
VERBS = ["sees", "likes", "follows", "paints", "finds", "hates"]
OBJECTS = ["the moon", "a red ball", "the tall tree", "<unk>", "the city", "an apple"]


def make_corpus(path: Path, lines: int, seed: int = 0) -> Path:
    """A WikiText-style file: `` = Heading = `` lines, blank lines, sentences from a tiny grammar."""
    rng = np.random.default_rng(seed)
    pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
    out = []
    for i in range(lines):
        if i % 20 == 0:
            out += [" ", f" = Section {i // 20} = ", " "]
        out.append(" " + " . ".join(f"{pick(SUBJECTS)} {pick(VERBS)} {pick(OBJECTS)}" for _ in range(3)) + " . ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def make_sentiment_tsv(path: Path, rows: int, seed: int = 0) -> Path:
    """An SST-2-style TSV (``sentence<TAB>label``) whose label is given away by one word."""
    rng = np.random.default_rng(seed)
    lines = ["sentence\tlabel"]
    for _ in range(rows):
        label = int(rng.integers(2))
        words = ["great", "lovely", "superb"] if label else ["awful", "boring", "bad"]
        lines.append(f"{SUBJECTS[rng.integers(6)]} is {words[rng.integers(3)]} and {OBJECTS[rng.integers(6)]}\t{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_text_data(root: Path) -> Path:
    """``root/wikitext-2/wiki.{valid,test}.tokens`` and ``root/sst2/{train,dev,test}.tsv``, tiny."""
    make_corpus(root / "wikitext-2" / "wiki.valid.tokens", 300, seed=0)
    make_corpus(root / "wikitext-2" / "wiki.test.tokens", 60, seed=1)
    for name, rows, seed in (("train.tsv", 400, 0), ("dev.tsv", 80, 1), ("test.tsv", 80, 2)):
        make_sentiment_tsv(root / "sst2" / name, rows, seed)
    return root


GERMAN = {"the": "die", "a": "eine", "cat": "katze", "dog": "hund", "old": "alte", "man": "mann", "my": "meine", "sister": "schwester",
          "river": "fluss", "small": "kleine", "bird": "vogel", "sees": "sieht", "likes": "mag", "follows": "folgt", "paints": "malt",
          "finds": "findet", "hates": "hasst", "moon": "mond", "red": "rote", "ball": "ball", "tall": "hohe", "tree": "baum",
          "<unk>": "<unk>", "city": "stadt", "an": "einen", "apple": "apfel"}


def make_parallel_data(root: Path, sizes=(("train", 240), ("val", 32), ("test_2016_flickr", 32))) -> Path:
    """Multi30k-style line-aligned ``<split>.en`` / ``<split>.de`` files: sentences of the tiny
    grammar and their word-by-word "German", a mapping a tiny model learns in a few hundred steps."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in sizes:
        english = [" ".join(w for part in (SUBJECTS, VERBS, OBJECTS) for w in part[rng.integers(6)].split()) for _ in range(rows)]
        (root / f"{split}.en").write_text("".join(f"{e}\n" for e in english), encoding="utf-8")
        (root / f"{split}.de").write_text("".join(" ".join(GERMAN[w] for w in e.split()) + "\n" for e in english), encoding="utf-8")
    return root


def small_encoder():
    """A DCGAN encoder small enough for unit tests (stride 4)."""
    from ptft.backbones import DCGANEncoder

    return DCGANEncoder(base_width=8, num_layers=2)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    return make_image_tree(tmp_path / "images")


@pytest.fixture
def text_data(tmp_path: Path) -> Path:
    return make_text_data(tmp_path / "text")


def real_data(name: str, marker: str) -> Path:
    """``$PTFT_DATA/<name>`` when it holds ``marker``; else the test is skipped, saying what is missing."""
    data_dir = os.environ.get("PTFT_DATA")
    root = Path(data_dir) / name if data_dir else None
    if root is None or not (root / marker).exists():
        pytest.skip(f"real {name} not found: set PTFT_DATA to a folder holding {name}/{marker}")
    return root


@pytest.fixture
def imagenette() -> Path:
    """The real Imagenette copy in $PTFT_DATA (tests using it are skipped without it)."""
    return real_data("imagenette", "train")


@pytest.fixture
def fillets() -> Path:
    """The real fillets-nl speech in $PTFT_DATA (tests using it are skipped without it)."""
    return real_data("fillets-nl", "train.jsonl")
