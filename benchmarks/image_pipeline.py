"""Images per second delivered by ptft's ImageFolderDataModule vs the pipeline a user would write.

Baseline: torchvision ``ImageFolder`` with its default PIL loader and RandomResizedCrop(size,
scale=(0.25, 1)) + RandomHorizontalFlip + ToTensor + Normalize(0.5, 0.5) (the same crops and the
same [-1, 1] output as ptft's ``crop_flip``). ptft: the DataModule's train dataloader as training
uses it, with the batch conversion ``on_after_batch_transfer`` does on the device included,
(a) decoding the JPEGs (reduced-size decode, uint8) and (b) with ``decoded_cache=true``. Same
images, batch size and worker count; persistent workers for all three; each pipeline gets a
warm-up epoch, then epochs of the three are interleaved and the median counts.

    python benchmarks/image_pipeline.py [--sizes 64 128] [--workers 2] [--repeats 5] [--quick]
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

from ptft.data import ImageFolderDataModule  # noqa: E402
from ptft.data.decoding import CROP_SCALE  # noqa: E402
from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402

BASELINE = "torchvision ImageFolder (baseline)"
TARGETS = {"ptft (decode)": 1.8, "ptft (decoded cache)": 5.0}
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def baseline_loader(root: Path, paths: list[str], size: int, batch_size: int, workers: int) -> DataLoader:
    """What a user writes with torchvision, restricted to the same files as ptft's."""
    transform = transforms.Compose([transforms.RandomResizedCrop(size, scale=CROP_SCALE), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])
    folder = datasets.ImageFolder(str(root / "train"), transform=transform)
    position = {path: i for i, (path, _) in enumerate(folder.samples)}
    return DataLoader(Subset(folder, [position[p] for p in paths]), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=DEVICE.type == "cuda")


def ptft_datamodule(root: Path, fraction: float, size: int, batch_size: int, workers: int, cache_dir: str | None) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root=str(root), image_size=size, batch_size=batch_size, num_workers=workers,
                               label_fraction=fraction, train_augment="crop_flip", decoded_cache=cache_dir is not None,
                               cache_dir=cache_dir)
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


def epoch(loader: DataLoader, convert=None) -> tuple[int, float, float]:
    """Images delivered to the device in one epoch, the seconds it took, and the CPU seconds it cost."""
    count, start, cpu_start = 0, time.perf_counter(), cpu_seconds(loader)
    for images, labels in loader:
        images, labels = images.to(DEVICE, non_blocking=True), labels.to(DEVICE, non_blocking=True)
        if convert is not None:
            images, labels = convert((images, labels), 0)
        count += len(images)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return count, time.perf_counter() - start, cpu_seconds(loader) - cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
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
        rates: dict[str, list[float]] = {name: [] for name in loaders}
        cpu: dict[str, list[float]] = {name: [] for name in loaders}
        for name, loader in loaders.items():  # warm-up: worker start, page cache
            epoch(loader, converts.get(name))
        for _ in range(options.repeats):  # one round = one epoch of each, back to back
            for name, loader in loaders.items():
                count, seconds, cpu_used = epoch(loader, converts.get(name))
                rates[name].append(count / seconds)
                cpu[name].append(cpu_used / count * 1e3)
        for name, values in rates.items():
            # the ratio within each round, then the median over rounds: load from other jobs cancels out
            ratio = statistics.median(v / b for v, b in zip(values, rates[BASELINE]))
            cpu_ratio = statistics.median(b / c for c, b in zip(cpu[name], cpu[BASELINE]))
            target = TARGETS.get(name)
            met = ("yes" if ratio >= target else "no") if target else ""
            rows.append(f"| {size} | {name} | {statistics.median(values):,.0f} | {ratio:.2f}x | {statistics.median(cpu[name]):.2f} | "
                        f"{cpu_ratio:.2f}x | {f'>= {target}x' if target else ''} | {met} |")
            print(rows[-1], " per round:", ", ".join(f"{v:,.0f}" for v in values), flush=True)
        print(f"{size} px: decoded cache built (init + prepare_data + setup) in {build_seconds:.1f} s", flush=True)
        rows.append(f"| {size} | (decoded cache: first build, {len(paths)} images) | {len(paths) / build_seconds:,.0f} | | | | | |")
        del loaders

    table = "\n".join([
        "## Image pipeline: ptft ImageFolderDataModule vs torchvision ImageFolder (images/s)",
        "",
        f"`python benchmarks/image_pipeline.py --sizes {' '.join(map(str, options.sizes))} --workers {options.workers} "
        f"--repeats {options.repeats} --threads {options.threads}{f' --images {options.images}' if options.images else ''}`",
        "",
        f"Imagenette train JPEGs (224 px), {len(paths)} images, batch {options.batch_size}, {options.workers} DataLoader workers "
        f"for every pipeline, delivered to the {DEVICE.type} (ptft's uint8 -> float [-1, 1] conversion included, in the main "
        f"process with {options.threads} torch thread(s)). Baseline: "
        "torchvision ImageFolder (PIL loader) + RandomResizedCrop(scale 0.25-1) + flip + ToTensor + Normalize. "
        "After a warm-up epoch each, rounds of one epoch per pipeline; images/s: median over rounds; vs baseline: median of the "
        "per-round ratios. CPU ms / image: CPU time of the main process and its DataLoader workers per delivered image "
        "(robust to other jobs on the machine; throughput follows it when the workers are the bottleneck).",
        "",
        "| image size | pipeline | images/s | vs baseline | CPU ms / image | vs baseline (CPU) | target (images/s) | met |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |",
        *rows,
    ])
    report("image_pipeline", table, options.quick)
    temp.cleanup()


if __name__ == "__main__":
    main()
