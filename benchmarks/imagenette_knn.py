"""kNN accuracy on Imagenette of SimCLR and DINO (ResNet-18 with the small-image stem) after as many
epochs as a wall-clock budget allows, next to lightly's published Imagenette benchmark (ResNet-18,
128 px, batch 256, 800 epochs, kNN with k=200 and temperature 0.1: SimCLR 0.889, DINO 0.888).

Each method pretrains with its own config (configs/pretrain/<method>_imagenette.yaml) at ``--size``
px for ``--minutes`` of training steps (a short timed run measures its batches per second, as in
label_efficiency.py, so its schedule spans the run), without validation. Its export, and a random
init of the same ResNet-18, then get a linear probe on all the labels (imagenette_linear_probe.yaml,
``--probe-epochs``) and the kNN accuracy of the same frozen features with lightly's k and
temperature (the whole train split is the neighbour bank), both on the val split. Prints a table and
writes the "imagenette_knn" section of benchmarks/RESULTS.md (``imagenette_knn_gpu`` with --gpu).
Built for a GPU; on 2 CPU cores a minute of ResNet-18 at 64 px is a few dozen steps.

    python benchmarks/imagenette_knn.py --gpu [--minutes 4] [--size 64] [--methods simclr dino] [-- --data.num_workers=12]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from torchvision.datasets.folder import IMG_EXTENSIONS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from image_pretraining import CONFIGS, pretrain_steps  # noqa: E402
from label_efficiency import budget_batches  # noqa: E402
from results import report, trainer_args  # noqa: E402

from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402
from ptft.evaluation import label_subset, new_run_dir, positive_integer, positive_number, pretrain_then_evaluate  # noqa: E402

LIGHTLY_KNN = {"simclr": 0.889, "dino": 0.888}  # lightly's docs, Imagenette benchmark (ResNet-18, 128 px, 800 epochs)
QUICK_STEM = ["--model.backbone.init_args.small_images=false"]  # 4x downsampling first: a sixteenth of the small stem's compute
QUICK = {"simclr": [*QUICK_STEM, "--model.projection_hidden_dim=64"],  # --quick: small heads, small checkpoints
         "dino": [*QUICK_STEM, "--model.hidden_dim=64", "--model.bottleneck_dim=32", "--model.out_dim=64"]}
KNN = json.dumps({"class_path": "ptft.callbacks.KNNMonitor", "init_args": {"k": 200, "temperature": 0.1}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(LIGHTLY_KNN), choices=list(LIGHTLY_KNN))
    parser.add_argument("--minutes", type=positive_number, default=4.0, help="pretraining budget of each method (training steps only)")
    parser.add_argument("--size", type=int, default=64, choices=[32, 64, 128], help="image size of pretraining and evaluation")
    parser.add_argument("--probe-epochs", type=positive_integer, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu", action="store_true", help="one GPU, bf16-mixed (configs/trainer/gpu.yaml + bf16.yaml)")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/imagenette_knn", help="each run writes into a new folder OUT/<time>")
    parser.add_argument("overrides", nargs="*", help="more ptft options for every run, e.g. --data.num_workers=12")
    options = parser.parse_args()
    root = find_or_download_imagenette()
    common = [f"--seed_everything={options.seed}", f"--data.root={root}", *trainer_args(options.gpu),
              f"--data.image_size={options.size}", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              "--data.decoded_cache=true", f"--data.cache_dir={Path(options.out) / 'decoded_cache'}", *options.overrides]
    if options.quick:
        common += ["--data.batch_size=2", "--data.num_workers=0"]
    probe_epochs = 1 if options.quick else options.probe_epochs
    probe = {"probe": {"args": ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common, *label_subset(1.0, probe_epochs),
                                f"--trainer.callbacks+={KNN}"]}}
    train_images = sum(1 for path in (Path(root) / "train").rglob("*") if path.suffix.lower() in IMG_EXTENSIONS)
    run_dir = new_run_dir(options.out)
    rows: dict = {}
    for i, name in enumerate(options.methods):
        pretrain = ["-c", str(CONFIGS / f"pretrain/{name}_imagenette.yaml"), *common, *(QUICK[name] if options.quick else []), "--trainer.limit_val_batches=0",
                    *([f"--data.views.init_args.local_size={options.size // 2}"] if name == "dino" else [])]  # locals at half the size
        batches = budget_batches(name, options.minutes, pretrain, run_dir / name)
        rows[name] = pretrain_then_evaluate([*pretrain, pretrain_steps(name, batches)], probe, run_dir / name, random_init=i == 0)
        rows[name]["batch_size"] = batch_size(name, common)
        rows[name]["epochs"] = batches * rows[name]["batch_size"] / train_images
        print(json.dumps({name: rows[name]}), flush=True)
    report("imagenette_knn_gpu" if options.gpu else "imagenette_knn", table(rows, options), options.quick)


def batch_size(name: str, args: list[str]) -> int:
    """The pretraining batch size: the last ``--data.batch_size`` of ``args``, else the method's config."""
    given = [a.split("=", 1)[1] for a in args if a.startswith("--data.batch_size=")]
    return int(given[-1]) if given else yaml.safe_load((CONFIGS / f"pretrain/{name}_imagenette.yaml").read_text())["data"]["init_args"]["batch_size"]


def table(rows: dict, options: argparse.Namespace) -> str:
    def metrics(result: dict) -> str:
        values = result["probe"]["metrics"]
        return f"{values['val/knn_acc']:.3f} | {values['val/acc']:.3f}"

    batches = ", ".join(f"{name} {result['batch_size']}" for name, result in rows.items())
    lines = ["| backbone from | pretraining | epochs | kNN acc (k=200, t=0.1) | linear probe acc | lightly, 800 epochs, 128 px (kNN) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, result in rows.items():
        pretrain = result["pretrain"]
        lines.append(f"| {name} | {pretrain['steps']} steps, {pretrain['seconds'] / 60:.1f} min | {result['epochs']:.0f} | "
                     f"{metrics(result['pretrained'])} | {LIGHTLY_KNN[name]:.3f} |")
    lines.append(f"| random init | none | 0 | {metrics(next(iter(rows.values()))['random_init'])} | |")
    device = "one GPU, bf16-mixed" if options.gpu else "2 CPU cores, fp32"
    dino_crops = f"; DINO with 6 local crops at {options.size // 2} px" if "dino" in rows else ""
    return "\n".join([
        f"## kNN accuracy of SimCLR and DINO on Imagenette ({device}), next to lightly's",
        "",
        f"`python benchmarks/imagenette_knn.py --methods {' '.join(rows)} --minutes {options.minutes:g} --size {options.size} "
        f"--probe-epochs {options.probe_epochs}{' --gpu' if options.gpu else ''}{' --quick' if options.quick else ''}"
        f"{' -- ' + ' '.join(options.overrides) if options.overrides else ''}`",
        "",
        f"ResNet-18 (small-image stem) at {options.size} px, each method's own config (batch {batches}{dino_crops}), {options.minutes:g} min of training steps each. Val split (3,925 images): kNN on the frozen features with the "
        f"whole train split as the bank (lightly's k=200, t=0.1) and a linear probe on all the labels ({options.probe_epochs} epochs). "
        "lightly's column is their published kNN accuracy after 800 epochs at 128 px, for scale: this run is far shorter.",
        "",
        *lines,
    ])


if __name__ == "__main__":
    main()
