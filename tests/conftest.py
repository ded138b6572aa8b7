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


def small_encoder():
    """A DCGAN encoder small enough for unit tests (stride 4)."""
    from ptft.backbones import DCGANEncoder

    return DCGANEncoder(base_width=8, num_layers=2)


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    return make_image_tree(tmp_path / "images")


@pytest.fixture
def imagenette() -> Path:
    """The real Imagenette copy in $PTFT_DATA (tests using it are skipped without it)."""
    data_dir = os.environ.get("PTFT_DATA")
    root = Path(data_dir) / "imagenette" if data_dir else None
    if root is None or not (root / "train").is_dir():
        pytest.skip("real Imagenette not found: set PTFT_DATA to a folder holding imagenette/{train,val}")
    return root
