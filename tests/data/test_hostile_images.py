"""Hostile image inputs: each is a one-line ``ptft.errors`` error naming the file, a counted skip
with ``skip_corrupt=true``, or (odd modes, tiny images) simply works."""

import os
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from conftest import make_image_tree
from helpers import CONFIGS, run_ptft
from ptft.data.decoding import load_rgb, open_image
from ptft.data.images import ImageFolderDataModule
from ptft.errors import CorruptImageError, MissingPathError, PtftError, one_line


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit ``side`` x ``side`` PNG of ~50 KB that would decode to ``side**2`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row = zlib.compressobj(9), bytes(1 + side // 8)
    block = row * 400
    idat = b"".join(compressor.compress(block) for _ in range(side // 400)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # header intact, pixel data cut
    return path


def tree(tmp_path: Path) -> Path:
    return make_image_tree(tmp_path / "images", per_class=4, size=(32, 32))


@pytest.mark.parametrize("make_bad, message", [
    (lambda d: (d / "text.png").write_text("this is text, not a PNG"), r"text.png: cannot read image \(cannot identify image file"),
    (lambda d: (d / "empty.jpg").write_bytes(b""), r"empty.jpg: cannot read image \(empty file \(0 bytes\)\)"),
    (lambda d: png_bomb(d / "bomb.png"), r"bomb.png: .*refusing to decode .*limit of 89,478,485 pixels \(PIL.Image.MAX_IMAGE_PIXELS"),
    (lambda d: (os.symlink(d / "b.jpg", d / "a.jpg"), os.symlink(d / "a.jpg", d / "b.jpg")), r"[ab].jpg: cannot read image \(symlink loop"),
    (lambda d: os.symlink(d, d / "again"), r"dog/again: symlink loop \(it points back to a folder above it\)"),
], ids=["text_png", "zero_byte", "png_bomb", "file_symlink_loop", "folder_symlink_loop"])
def test_bad_files_fail_at_init_with_one_line_naming_the_file(tmp_path, make_bad, message):
    root = tree(tmp_path)
    make_bad(root / "train" / "dog")
    start = time.perf_counter()
    with pytest.raises(PtftError, match=message) as info:
        ImageFolderDataModule(root=str(root), num_workers=0)
    assert "\n" not in str(info.value) and "skip_corrupt=true" in str(info.value)
    assert time.perf_counter() - start < 5  # the bomb is refused from its header, never allocated


def test_skip_corrupt_skips_and_counts_every_bad_file_and_loops(tmp_path):
    root = tree(tmp_path)
    dog = root / "train" / "dog"
    (dog / "text.png").write_text("not a PNG")
    (dog / "empty.jpg").write_bytes(b"")
    png_bomb(dog / "bomb.png")
    truncate(dog / "0.jpg")
    os.symlink(dog, dog / "again")  # followed, it would repeat the folder's images until the path is too long
    dm = ImageFolderDataModule(root=str(root), num_workers=0, skip_corrupt=True)
    assert len(dm.skipped_files) == 5 and len(dm.samples["train"]) == 11  # 12 good images, one truncated
    assert all("again" not in path for path, _ in dm.samples["train"])


@pytest.mark.parametrize("link, target", [("loop", "../.."), ("loop", ".."), ("leak.jpg", "../../val/dog/0.jpg")],
                         ids=["to_the_root", "to_the_split", "file_to_another_split"])
def test_a_symlink_out_of_its_class_folder_never_contributes_samples(tmp_path, link, target):
    root = tree(tmp_path)
    cat = root / "train" / "cat"
    (cat / "sub").mkdir()
    os.symlink("../0.jpg", cat / "sub" / "again.jpg")  # links that stay inside the class folder are followed
    os.symlink(target, cat / link)
    with pytest.raises(PtftError, match=rf"train/cat/{re.escape(link)}: symlink to .*, outside its folder .*train/cat; "
                                        r"remove the link, or set data.skip_corrupt=true") as info:
        ImageFolderDataModule(root=str(root), num_workers=0)
    assert "\n" not in str(info.value)
    dm = ImageFolderDataModule(root=str(root), num_workers=0, skip_corrupt=True)
    cats = sorted(os.path.relpath(path, cat) for path, label in dm.samples["train"] if label == 0)
    assert cats == ["0.jpg", "1.jpg", "2.jpg", "3.jpg", "sub/again.jpg"]
    assert len(dm.samples["train"]) == 13 and len(dm.samples["val"]) == 12
    assert len(dm.skipped_files) == 1 and re.fullmatch(rf".*train/cat/{re.escape(link)}: symlink to .*, outside its folder .*",
                                                       dm.skipped_files[0])


def test_a_class_folder_without_images_is_named(tmp_path):
    root = tree(tmp_path)
    for image in (root / "val" / "owl").iterdir():
        image.unlink()
    (root / "val" / "owl" / "readme.txt").write_text("no images here")
    with pytest.raises(MissingPathError, match=r"data.val_split: class folder .*val/owl has no images"):
        ImageFolderDataModule(root=str(root), num_workers=0)


def test_pixel_limit_applies_where_pil_only_warns(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: PIL warns up to 2x its limit
    with pytest.raises(CorruptImageError, match=r"big.png: refusing to decode a 40x30 image \(1,200 pixels\), over the limit of 1,000"):
        open_image(str(path))


def _save_modes(folder: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("L").save(folder / "gray.jpg")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.dstack([rgb, np.full((20, 24), 128, np.uint8)])).save(folder / "rgba.png")
    palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.save(folder / "palette.png", transparency=0)
    Image.fromarray(np.full((20, 24), 65535, np.uint16)).save(folder / "gray16.png")
    Image.fromarray(rgb).convert("1").save(folder / "bits.png")
    Image.new("L", (1, 1), 200).save(folder / "one_pixel.png")


def test_odd_modes_and_1x1_images_become_rgb_batches(tmp_path):
    root = tree(tmp_path)
    _save_modes(root / "train" / "cat")
    assert load_rgb(str(root / "train" / "cat" / "gray16.png"), 8).min() == 255  # 16-bit white stays white
    assert load_rgb(str(root / "train" / "cat" / "one_pixel.png"), 8).shape == (1, 1, 3)
    for augment in ("crop_flip", "flip"):
        dm = ImageFolderDataModule(root=str(root), image_size=16, batch_size=19, num_workers=0, train_augment=augment)
        dm.setup("fit")
        images, _ = next(iter(DataLoader(dm.datasets["train"], batch_size=19)))
        assert images.shape == (19, 3, 16, 16) and images.dtype == torch.uint8
    one = [p for p, _ in dm.samples["train"]].index(str(root / "train" / "cat" / "one_pixel.png"))
    assert torch.all(dm.datasets["train"][one][0] == 200)  # 1x1 grey: upscaled to a flat 16x16 image


def test_an_error_in_a_dataloader_worker_is_still_one_line_naming_the_file(tmp_path):
    root = tree(tmp_path)
    bad = truncate(root / "train" / "cat" / "1.jpg")
    dm = ImageFolderDataModule(root=str(root), image_size=16, batch_size=4, num_workers=1)
    dm.setup("fit")
    with pytest.raises(CorruptImageError) as info:
        list(DataLoader(dm.datasets["train"], batch_size=4, num_workers=1))
    assert "Traceback" in str(info.value)  # what torch re-raises: the worker's whole traceback
    line = one_line(info.value)
    assert line.startswith(f"{bad}: cannot decode image") and "skip_corrupt=true" in line and "Traceback" not in line


def test_cli_prints_one_error_line_for_a_truncated_jpeg_found_in_a_worker(tmp_path):
    root = tree(tmp_path)
    bad = truncate(root / "train" / "owl" / "2.jpg")
    result = run_ptft("fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"),
                      f"--data.root={root}", "--data.image_size=16", "--data.batch_size=4", "--data.num_workers=1",
                      "--model.backbone.init_args.num_layers=2", "--model.backbone.init_args.base_width=4", "--model.decoder_width=4",
                      "--trainer.max_steps=6", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
                      f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}", cwd=tmp_path, wandb_mode="disabled", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ptft: error: ")]
    assert len(errors) == 1 and re.match(rf"ptft: error: {re.escape(str(bad))}: cannot decode image \(.*truncated", errors[0]), result.stderr[-3000:]
