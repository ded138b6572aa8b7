"""Label efficiency on Imagenette: linear-probe and full fine-tune accuracy with 10% and 100% of the
labels, from random init and from each pretraining method, at an equal CPU budget.

Every method pretrains on the same number of batches (batch 128, 32 px; the method arguments of
benchmarks/image_pretraining.py), then its export is linear-probed (imagenette_linear_probe.yaml)
and fully fine-tuned (the method's fine-tuning config, as in image_pretraining.py) for the same
number of epochs on a stratified ``label_fraction`` of the train labels (``ImageFolderDataModule``),
scored on the whole val split. Random init: each distinct backbone (same architecture, same seed)
gets the same evaluations once (ptft.evaluation.pretrain_then_evaluate).
Prints a table, writes the "label_efficiency" section of benchmarks/RESULTS.md and a plot
(benchmarks/label_efficiency.png; with --quick, into --out). A run of only some of the methods
writes a section and plot of its own (``label_efficiency-simclr-byol``), as does a seed other than 0.

    python benchmarks/label_efficiency.py [--steps 300] [--epochs 2] [--fractions 0.1 1.0] [--methods ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from image_pretraining import CONFIGS, method_args, pretrain_steps  # noqa: E402
from results import report, rows_from_logs  # noqa: E402

from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402
from ptft.evaluation import new_run_dir, pretrain_then_evaluate  # noqa: E402

METHODS = ["autoencoder", "denoising_autoencoder", "mae", "gan", "simclr", "byol", "dino"]


def evaluations(name: str, fractions: list[float], epochs: int, common: list[str]) -> dict:
    """A linear probe and a full fine-tune per label fraction, each for ``epochs`` epochs."""
    _, finetune_config, finetune_extra = method_args(name)
    runs = {}
    for fraction in fractions:
        subset = [f"--data.label_fraction={fraction}", f"--trainer.max_epochs={epochs}"]
        runs[f"probe_{fraction:g}"] = {"args": ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common, *subset]}
        runs[f"finetune_{fraction:g}"] = {"args": ["-c", str(CONFIGS / "finetune" / finetune_config), *common, *subset, *finetune_extra]}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--steps", type=int, default=300, help="pretraining batches of every method (batch 128)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of every probe and fine-tune")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0], help="fractions of the train labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/label_efficiency", help="each run writes into a new folder OUT/<time> "
                        "(the decoded-image cache and the --quick plot stay in OUT)")
    parser.add_argument("--report-from", metavar="LOG", help="only rebuild the table and plot from the JSON lines an earlier run "
                        "printed (one per finished method); the other options must match that run")
    options = parser.parse_args()
    steps, epochs = (2, 1) if options.quick else (options.steps, options.epochs)
    if options.report_from:
        rows = rows_from_logs(options.report_from)
        options.methods = list(rows)
        return summarise(rows, options, steps, epochs)
    root = find_or_download_imagenette()
    batch = 16 if options.quick else 128
    common = [f"--seed_everything={options.seed}", f"--data.root={root}", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--data.image_size=32",
              f"--data.batch_size={batch}", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              "--data.decoded_cache=true", f"--data.cache_dir={Path(options.out) / 'decoded_cache'}"]
    run_dir = new_run_dir(options.out)
    seen: list[dict] = []  # backbone specs whose random init was evaluated
    rows: dict = {}

    def first_time(spec: dict) -> bool:
        new = spec not in seen
        seen.append(spec)
        return new

    for name in options.methods:
        pretrain = method_args(name)[0]
        subset = ["--data.label_fraction=0.03"] if options.quick else []
        rows[name] = pretrain_then_evaluate([*pretrain, *common, *subset, pretrain_steps(name, steps), "--trainer.limit_val_batches=2"],
                                            evaluations(name, options.fractions, epochs, common), run_dir / name,
                                            random_init=first_time)
        print(json.dumps({name: rows[name]}), flush=True)
    summarise(rows, options, steps, epochs)


def summarise(rows: dict, options: argparse.Namespace, steps: int, epochs: int) -> None:
    """Print the table, write it into RESULTS.md (unless quick) and draw the plot."""
    fractions = options.fractions
    columns = [(kind, f) for kind in ("probe", "finetune") for f in fractions]
    # a run of some of the methods gets a section and plot of its own, next to the full table's
    section = ("label_efficiency" + ("" if options.methods == METHODS else "-" + "-".join(options.methods))
               + (f"-seed{options.seed}" if options.seed else ""))
    lines = [
        "## Label efficiency on Imagenette: linear probe and fine-tune with 10% / 100% of the labels",
        "",
        f"`python benchmarks/label_efficiency.py --methods {' '.join(options.methods)} --steps {steps} --epochs {epochs} "
        f"--fractions {' '.join(f'{f:g}' for f in fractions)}{f' --seed {options.seed}' if options.seed else ''}{' --quick' if options.quick else ''}`",
        "",
        f"Equal CPU budget: every method pretrains on {steps} batches of 128 images at 32 px (the GAN: {steps} discriminator + "
        f"{steps} generator steps), the arguments of benchmarks/image_pretraining.py (MAE: ViT patch 4, depth 4, width 96; "
        "autoencoders, GAN, SimCLR, BYOL and DINO: DCGAN encoder width 32, the GAN's without normalisation like its discriminator; "
        "the joint-embedding methods' views at 32 px, DINO's 6 local crops at 16 px). Each export, and a random initialisation of each distinct backbone "
        f"(same seed), gets a linear probe (imagenette_linear_probe.yaml) and full fine-tuning (ViT: imagenette_from_mae.yaml; "
        f"conv: imagenette_full.yaml), {epochs} epoch(s) each on a stratified fraction of the train labels (so 10% of the labels "
        "also means 10% of the fine-tuning steps); images come from the decoded-image cache (`data.decoded_cache`). Imagenette val accuracy (3,925 images); "
        f"plot: benchmarks/{section}.png."
        + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""),
        "",
        "| backbone from | architecture | pretrain (s) | " + " | ".join(f"{kind.replace('finetune', 'fine-tune')} {f:.0%}" for kind, f in columns) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in columns) + " |",
    ]
    curves = {}
    for name, row in rows.items():
        arch = row["backbone"]["class_path"].rsplit(".", 1)[1]
        for source, label in (("pretrained", name), ("random_init", f"random init ({arch} as {name})")):
            if not row[source]:
                continue
            accs = [row[source][f"{kind}_{f:g}"]["metrics"]["val/acc"] for kind, f in columns]
            curves[label] = accs
            seconds = f"{row['pretrain']['seconds']:.0f}" if source == "pretrained" else ""
            lines.append(f"| {label} | {arch} | {seconds} | " + " | ".join(f"{a:.1%}" for a in accs) + " |")
    report(section, "\n".join(lines), options.quick)
    plot(curves, fractions, ROOT / f"benchmarks/{section}.png" if not options.quick else Path(options.out) / f"{section}.png")


def plot(curves: dict[str, list[float]], fractions: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    n = len(fractions)
    for ax, (start, title) in zip(axes, ((0, "linear probe"), (n, "full fine-tune"))):
        for label, accs in curves.items():
            ax.plot([100 * f for f in fractions], [100 * a for a in accs[start:start + n]], marker="o",
                    linestyle="--" if label.startswith("random init") else "-", label=label)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fractions], [f"{f:.0%}" for f in fractions])
        ax.set_xlabel("train labels used")
        ax.set_title(f"Imagenette, {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("val accuracy (%)")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
