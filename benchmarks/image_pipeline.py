"""Images per second delivered by ptft's ImageFolderDataModule vs the pipeline a user would write.

Baseline: torchvision ``ImageFolder`` with its default PIL loader and RandomResizedCrop(size,
scale=(0.25, 1)) + RandomHorizontalFlip + ToTensor + Normalize(0.5, 0.5) (the same crops and the
same [-1, 1] output as ptft's ``crop_flip``). ptft: the DataModule's train dataloader as training
uses it, with the batch conversion ``on_after_batch_transfer`` does on the device included,
(a) decoding the JPEGs (reduced-size decode, uint8) and (b) with ``decoded_cache=true``. Same
images, batch size and worker count; persistent workers for all three; each pipeline gets a
warm-up epoch, then epochs of the three are interleaved and the median counts.

Multi-view rows (``--views-size``, 64 px by default): two SimCLR/BYOL views per image (random-resized
crops of scale 0.08-1, flip, colour jitter with p 0.8, grayscale 0.2, Gaussian blur 1.0 / 0.1 and
solarize 0.0 / 0.2 for the first / second view) through ptft's ``data.views`` (``ptft.data.MultiView``
defaults), with the colour operations in the DataLoader workers or batched "on the device" (the
benchmark's device: the main process on a machine without a GPU), vs the same augmentations with
torchvision ``transforms.v2`` on PIL-decoded images (ImageFolder's loader, one decode per image,
two transformed views). Images/s counts source images (two views each). ptft crops from images decoded
at ``source_scale`` (1.25) x the view side, as ``crop_flip`` does; the baseline from full-size decodes,
so its small-scale crops are sharper.

    python benchmarks/image_pipeline.py [--sizes 64 128] [--views-size 64] [--workers 2] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from results import report  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from ptft.data import ImageFolderDataModule, MultiView  # noqa: E402
from ptft.data.decoding import CROP_SCALE  # noqa: E402
from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402
from ptft.data.views import blur_kernel_size  # noqa: E402

BASELINE = "torchvision ImageFolder (baseline)"
TARGETS = {"ptft (decode)": 1.8, "ptft (decoded cache)": 5.0}
VIEWS_BASELINE = "2 SimCLR views: torchvision v2 on PIL (baseline)"
VIEWS_TARGETS = {"2 SimCLR views: ptft, colour in workers": 2.0, "2 SimCLR views: ptft, colour on device": 2.0}
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def baseline_loader(root: Path, paths: list[str], size: int, batch_size: int, workers: int) -> DataLoader:
    """What a user writes with torchvision, restricted to the same files as ptft's."""
    transform = transforms.Compose([transforms.RandomResizedCrop(size, scale=CROP_SCALE), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    folder = datasets.ImageFolder(str(root / "train"), transform=transform)
    position = {path: i for i, (path, _) in enumerate(folder.samples)}
    return DataLoader(Subset(folder, [position[p] for p in paths]), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=DEVICE.type == "cuda")


class TwoViews:
    """Two differently augmented views of one decoded image."""

    def __init__(self, first, second) -> None:
        self.first, self.second = first, second

    def __call__(self, image):
        return [self.first(image), self.second(image)]


def simclr_v2(size: int, blur: float, solarize: float, defaults: MultiView) -> v2.Compose:
    """One view of ptft's MultiView defaults written with torchvision transforms v2 (on a PIL image)."""
    jitter = v2.ColorJitter(defaults.brightness, defaults.contrast, defaults.saturation, defaults.hue)
    return v2.Compose([v2.RandomResizedCrop(size, scale=defaults.global_scale), v2.RandomHorizontalFlip(defaults.flip),
                       v2.RandomApply([jitter], p=defaults.jitter), v2.RandomGrayscale(defaults.grayscale),
                       v2.RandomApply([v2.GaussianBlur(blur_kernel_size(size), sigma=defaults.blur_sigma)], p=blur),
                       v2.RandomSolarize(128, p=solarize),  # a PIL image: threshold 128 of 255 (ptft: 0.5)
                       v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])


def views_baseline_loader(root: Path, paths: list[str], size: int, batch_size: int, workers: int) -> DataLoader:
    """Two SimCLR/BYOL views per image with torchvision v2, restricted to the same files as ptft's."""
    defaults = MultiView()
    transform = TwoViews(simclr_v2(size, defaults.blur[0], defaults.solarize[0], defaults),
                         simclr_v2(size, defaults.blur[1], defaults.solarize[1], defaults))
    folder = datasets.ImageFolder(str(root / "train"), transform=transform)
    position = {path: i for i, (path, _) in enumerate(folder.samples)}
    return DataLoader(Subset(folder, [position[p] for p in paths]), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=DEVICE.type == "cuda")


def ptft_datamodule(root: Path, fraction: float, size: int, batch_size: int, workers: int, cache_dir: str | None,
                    views: MultiView | None = None) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root=str(root), image_size=size, batch_size=batch_size, num_workers=workers,
                               label_fraction=fraction, train_augment="crop_flip", decoded_cache=cache_dir is not None,
                               cache_dir=cache_dir, views=views)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def cpu_seconds(loader: DataLoader) -> float:
    """CPU time so far of this process and of the loader's (persistent) worker processes (Linux /proc)."""
    total = time.process_time()
    for worker in getattr(getattr(loader, "_iterator", None), "_workers", []):
        try:
            fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def to_device(batch):
    """Tensors, or lists and tuples of them (multi-view batches), on the device."""
    if isinstance(batch, torch.Tensor):
        return batch.to(DEVICE, non_blocking=True)
    return type(batch)(to_device(item) for item in batch)


def epoch(loader: DataLoader, convert=None) -> tuple[int, float, float]:
    """Images delivered to the device in one epoch, the seconds it took, and the CPU seconds it cost
    (a multi-view batch counts its source images)."""
    count, start, cpu_start = 0, time.perf_counter(), cpu_seconds(loader)
    for batch in loader:
        batch = to_device(batch)
        if convert is not None:
            batch = convert(batch, 0)
        count += len(batch[1])
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return count, time.perf_counter() - start, cpu_seconds(loader) - cpu_start


def measure(size: int, loaders: dict[str, DataLoader], converts: dict, baseline: str, targets: dict[str, float],
            repeats: int) -> list[str]:
    """Table rows of ``loaders`` (one of them ``baseline``): a warm-up epoch each, then ``repeats``
    rounds of one epoch per loader, back to back."""
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    cpu: dict[str, list[float]] = {name: [] for name in loaders}
    for name, loader in loaders.items():  # warm-up: worker start, page cache
        epoch(loader, converts.get(name))
    for _ in range(repeats):
        for name, loader in loaders.items():
            count, seconds, cpu_used = epoch(loader, converts.get(name))
            rates[name].append(count / seconds)
            cpu[name].append(cpu_used / count * 1e3)
    rows = []
    for name, values in rates.items():
        # the ratio within each round, then the median over rounds: load from other jobs cancels out
        ratio = statistics.median(v / b for v, b in zip(values, rates[baseline]))
        cpu_ratio = statistics.median(b / c for c, b in zip(cpu[name], cpu[baseline]))
        target = targets.get(name)
        met = ("yes" if ratio >= target else "no") if target else ""
        rows.append(f"| {size} | {name} | {statistics.median(values):,.0f} | {ratio:.2f}x | {statistics.median(cpu[name]):.2f} | "
                    f"{cpu_ratio:.2f}x | {f'>= {target}x' if target else ''} | {met} |")
        print(rows[-1], " per round:", ", ".join(f"{v:,.0f}" for v in values), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 128], help="single-view image sizes (none: only the multi-view rows)")
    parser.add_argument("--views-size", type=int, default=64, help="side of the two SimCLR views of the multi-view rows (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (--quick: 8)")
    parser.add_argument("--repeats", type=int, default=None, help="measured epochs per pipeline, interleaved (default 5, --quick: 1)")
    parser.add_argument("--images", type=int, default=None, help="train images to use (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process, which runs ptft's float "
                        "conversion (on 2 cores beside 2 busy workers, more threads spin rather than help)")
    parser.add_argument("--cache-dir", default=None, help="where the decoded cache goes (default: a temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a few hundred images, 1 repeat: a smoke test, not a result")
    options = parser.parse_args()
    if options.quick:
        options.images = options.images or 300
    options.repeats = options.repeats or (1 if options.quick else 5)
    options.batch_size = options.batch_size or (8 if options.quick else 128)

    torch.set_num_threads(options.threads)
    root = find_or_download_imagenette()
    total = len(datasets.ImageFolder(str(root / "train")).samples)
    fraction = min(1.0, options.images / total) if options.images else 1.0
    temp = tempfile.TemporaryDirectory(prefix="ptft-image-pipeline-")
    cache_dir = options.cache_dir or temp.name
    rows = []
    for size in options.sizes:
        loaders, converts = {}, {}
        build_start = time.perf_counter()
        cached = ptft_datamodule(root, fraction, size, options.batch_size, options.workers, cache_dir)
        build_seconds = time.perf_counter() - build_start
        decode = ptft_datamodule(root, fraction, size, options.batch_size, options.workers, None)
        paths = [path for path, _ in decode.samples["train"]]
        loaders[BASELINE] = baseline_loader(root, paths, size, options.batch_size, options.workers)
        loaders["ptft (decode)"] = decode.train_dataloader()
        converts["ptft (decode)"] = decode.on_after_batch_transfer
        loaders["ptft (decoded cache)"] = cached.train_dataloader()
        converts["ptft (decoded cache)"] = cached.on_after_batch_transfer
        rows += measure(size, loaders, converts, BASELINE, TARGETS, options.repeats)
        print(f"{size} px: decoded cache built (init + prepare_data + setup) in {build_seconds:.1f} s", flush=True)
        rows.append(f"| {size} | (decoded cache: first build, {len(paths)} images) | {len(paths) / build_seconds:,.0f} | | | | | |")
        del loaders
    if options.views_size:
        size = options.views_size
        loaders, converts = {}, {}
        for name, on_device in zip(VIEWS_TARGETS, (False, True)):
            dm = ptft_datamodule(root, fraction, size, options.batch_size, options.workers, None, MultiView(color_on_device=on_device))
            loaders[name], converts[name] = dm.train_dataloader(), dm.on_after_batch_transfer
        paths = [path for path, _ in dm.samples["train"]]
        loaders = {VIEWS_BASELINE: views_baseline_loader(root, paths, size, options.batch_size, options.workers), **loaders}
        rows += measure(size, loaders, converts, VIEWS_BASELINE, VIEWS_TARGETS, options.repeats)
        del loaders

    table = "\n".join([
        "## Image pipeline: ptft ImageFolderDataModule vs torchvision ImageFolder (images/s)",
        "",
        f"`python benchmarks/image_pipeline.py --sizes {' '.join(map(str, options.sizes))} --views-size {options.views_size} "
        f"--workers {options.workers} "
        f"--repeats {options.repeats} --threads {options.threads}{f' --images {options.images}' if options.images else ''}`",
        "",
        f"Imagenette train JPEGs (224 px), {len(paths)} images, batch {options.batch_size}, {options.workers} DataLoader workers "
        f"for every pipeline, delivered to the {DEVICE.type} (ptft's uint8 -> float [-1, 1] conversion included, in the main "
        f"process with {options.threads} torch thread(s)). Baseline: "
        "torchvision ImageFolder (PIL loader) + RandomResizedCrop(scale 0.25-1) + flip + ToTensor + Normalize. "
        "After a warm-up epoch each, rounds of one epoch per pipeline; images/s: median over rounds; vs baseline: median of the "
        "per-round ratios. CPU ms / image: CPU time of the main process and its DataLoader workers per delivered image "
        "(robust to other jobs on the machine; throughput follows it when the workers are the bottleneck).",
        *([f"Multi-view rows ({options.views_size} px): images/s of source images, two views each (ptft.data.MultiView "
           "defaults: scale 0.08-1, flip, jitter 0.8, grayscale 0.2, blur 1.0/0.1, solarize 0.0/0.2), vs torchvision "
           "transforms v2 on PIL images with the same augmentations; 'colour on device' runs jitter, grayscale, blur and "
           f"solarize batched on the {DEVICE.type} after the transfer. ptft crops from images decoded at 1.25x the view "
           "side, the baseline from full-size decodes."] if options.views_size else []),
        "",
        "| image size | pipeline | images/s | vs baseline | CPU ms / image | vs baseline (CPU) | target (images/s) | met |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |",
        *rows,
    ])
    report("image_pipeline", table, options.quick)
    temp.cleanup()


if __name__ == "__main__":
    main()
