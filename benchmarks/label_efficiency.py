"""Label efficiency on Imagenette: linear probe, kNN and full fine-tune accuracy with 1%, 10% and
100% of the labels, from random init and from each pretraining method, at an equal CPU budget.

Every method pretrains for the same wall-clock time (``--minutes``: a short timed run of the method
measures its batches per second, and the budget becomes ``trainer.max_steps``, so schedules still
span the run) or on the same number of batches (``--steps``), at batch 128 and 32 px with the method
arguments of benchmarks/image_pretraining.py. Its export is then linear-probed
(imagenette_linear_probe.yaml, with the 20-NN accuracy of the same frozen features) and fully
fine-tuned (the method's fine-tuning config) on a stratified fraction of the train labels, each for
as many steps as ``--epochs`` epochs of all the labels (``ptft.evaluation.label_subset``), and scored
on the whole val split. Random init: each distinct backbone (same architecture, same seed) gets the
same evaluations once per seed. ``--seeds`` repeats pretraining and the ``--seed-fractions`` columns
(the first seed runs every fraction) and reports mean ± std.
Prints a table, writes the "label_efficiency" section of benchmarks/RESULTS.md and a plot
(benchmarks/label_efficiency.png; with --quick, into --out). A run of only some of the methods
writes a section and plot of its own (``label_efficiency-simclr-byol``), as does a first seed other than 0.

    python benchmarks/label_efficiency.py [--minutes 4 | --steps 300] [--seeds 0 1 2] [--fractions 0.01 0.1 1] [--methods ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from image_pretraining import CONFIGS, method_args, pretrain_steps  # noqa: E402
from results import report, rows_from_logs  # noqa: E402

from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402
from ptft.evaluation import fit, label_fraction, label_subset, new_run_dir, positive_integer, positive_number, pretrain_then_evaluate  # noqa: E402

METHODS = ["autoencoder", "denoising_autoencoder", "mae", "gan", "simclr", "byol", "dino"]
KNN = json.dumps({"class_path": "ptft.callbacks.KNNMonitor", "init_args": {"every_n_epochs": 1}})
CALIBRATION_BATCHES, CALIBRATION_WARMUP = 30, 10


class BatchClock(pl.Callback):
    """Times the training batches of a run: :meth:`rate` is batches per second after the first ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.ends = warmup, []

    def on_train_batch_end(self, *args) -> None:
        self.ends.append(time.perf_counter())

    def rate(self) -> float:
        timed = self.ends[self.warmup:]
        return (len(timed) - 1) / (timed[-1] - timed[0])


def budget_batches(name: str, minutes: float, pretrain: list[str], run_dir: Path) -> int:
    """The batches method ``name`` trains in ``minutes``, from a short timed run of its pretraining
    args (without validation; validation and monitors of the real run come on top of the budget)."""
    clock = BatchClock(CALIBRATION_WARMUP)
    fit([*pretrain, pretrain_steps(name, CALIBRATION_BATCHES), "--trainer.limit_val_batches=0",
         f"--trainer.logger.init_args.save_dir={run_dir / 'calibration'}"], stage=f"{name} timing", callbacks=(clock,))
    return max(1, round(minutes * 60 * clock.rate()))


def evaluations(name: str, fractions: list[float], epochs: int, common: list[str], probe_layers: list[str]) -> dict:
    """A linear probe (with kNN), optionally a multi-layer probe, and a full fine-tune per label fraction."""
    _, finetune_config, finetune_extra = method_args(name)
    probe = ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common]
    runs = {}
    for fraction in fractions:
        subset = label_subset(fraction, epochs)
        runs[f"probe_{fraction:g}"] = {"args": [*probe, *subset, f"--trainer.callbacks+={KNN}"]}
        if probe_layers:
            runs[f"multilayer_{fraction:g}"] = {"args": [*probe, *subset, *probe_layers]}
        runs[f"finetune_{fraction:g}"] = {"args": ["-c", str(CONFIGS / "finetune" / finetune_config), *common, *subset, *finetune_extra]}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=positive_number, default=None, help="equal wall-clock pretraining budget of every method")
    budget.add_argument("--steps", type=positive_integer, default=300, help="pretraining batches of every method (batch 128), without --minutes")
    parser.add_argument("--epochs", type=positive_integer, default=2, help="length of every probe and fine-tune, in epochs of all the labels")
    parser.add_argument("--fractions", type=label_fraction, nargs="+", default=[0.01, 0.1, 1.0], help="fractions of the train labels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="the first runs every fraction, the others --seed-fractions")
    parser.add_argument("--seed-fractions", type=label_fraction, nargs="+", default=[0.1], help="the fractions the seeds after the first repeat")
    parser.add_argument("--probe-layers", type=int, nargs="+", default=None,
                        help="add a multi-layer probe of these backbone stages (model.probe_layers), each max-pooled to --probe-grid")
    parser.add_argument("--probe-grid", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a few steps on a few images: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/label_efficiency", help="each run writes into a new folder OUT/<time> "
                        "(the decoded-image cache and the --quick plot stay in OUT)")
    parser.add_argument("--report-from", metavar="LOG", help="only rebuild the table and plot from the JSON lines an earlier run "
                        "printed (one per finished method and seed); the other options must match that run")
    options = parser.parse_args()
    if options.quick:
        options.steps, options.epochs = 2, 1
    if options.report_from:
        runs = rows_from_logs(options.report_from)
        options.methods = list(dict.fromkeys(key.split("/")[0] for key in runs))
        return summarise(runs, options)
    root = find_or_download_imagenette()
    batch = 16 if options.quick else 128
    common = [f"--data.root={root}", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--data.image_size=32",
              f"--data.batch_size={batch}", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              "--data.decoded_cache=true", f"--data.cache_dir={Path(options.out) / 'decoded_cache'}"]
    layers = ([f"--model.probe_layers={json.dumps(options.probe_layers)}", f"--model.probe_grid={options.probe_grid}"]
              if options.probe_layers else [])
    run_dir = new_run_dir(options.out)
    runs: dict = {}
    for n, seed in enumerate(options.seeds):
        seeded = [f"--seed_everything={seed}", *common]
        fractions = options.fractions if n == 0 else options.seed_fractions
        seen: list[dict] = []  # backbone specs whose random init this seed evaluated

        def first_time(spec: dict) -> bool:
            new = spec not in seen
            seen.append(spec)
            return new

        for name in options.methods:
            pretrain = [*method_args(name)[0], *seeded, *(["--data.label_fraction=0.03"] if options.quick else [])]
            folder = run_dir / f"{name}-seed{seed}"
            batches = options.steps if options.minutes is None else budget_batches(name, options.minutes, pretrain, folder)
            key = f"{name}/seed{seed}"
            runs[key] = pretrain_then_evaluate([*pretrain, pretrain_steps(name, batches), "--trainer.limit_val_batches=2"],
                                               evaluations(name, fractions, options.epochs, seeded, layers), folder, random_init=first_time)
            runs[key]["batches"] = batches
            print(json.dumps({key: runs[key]}), flush=True)
    summarise(runs, options)


def cell(values: list[float]) -> str:
    """``48.5%``, or ``48.5 ± 1.2`` (mean ± sample std, in points) over several seeds."""
    if len(values) == 1:
        return f"{values[0]:.1%}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def summarise(runs: dict, options: argparse.Namespace) -> None:
    """Print the table, write it into RESULTS.md (unless quick) and draw the plot."""
    fractions, seeds = options.fractions, options.seeds
    kinds = [("probe", "val/acc", "probe"), ("probe", "val/knn_acc", "kNN"),
             *([("multilayer", "val/acc", "multi-layer probe")] if options.probe_layers else []), ("finetune", "val/acc", "fine-tune")]
    columns = [(kind, f) for kind in kinds for f in fractions]
    section = ("label_efficiency" + ("" if options.methods == METHODS else "-" + "-".join(options.methods))
               + (f"-seed{seeds[0]}" if seeds[0] else ""))
    budget = (f"the same wall-clock time, {options.minutes:g} min of training steps (batches: measured by a 30-batch timed run "
              "of each method, so the GAN's batch is a discriminator and a generator step; periodic validation comes on top)"
              if options.minutes is not None else f"{options.steps} batches (the GAN: a discriminator and a generator step each)")
    flags = (f"--minutes {options.minutes:g}" if options.minutes is not None else f"--steps {options.steps}")
    multi = "" if len(seeds) == 1 else f" Seeds {', '.join(map(str, seeds))} for the {', '.join(f'{f:.0%}' for f in options.seed_fractions)} columns (mean ± std, in points), seed {seeds[0]} for the others."
    layers = (f" Multi-layer probe: stages {', '.join(map(str, options.probe_layers))} max-pooled to {options.probe_grid}x{options.probe_grid}, "
              "concatenated (model.probe_layers)." if options.probe_layers else "")
    subset = "" if section == "label_efficiency" else f" ({', '.join(options.methods)}; seeds {', '.join(map(str, seeds))}; {flags})"
    lines = [
        "## Label efficiency on Imagenette: linear probe, kNN and fine-tune with a fraction of the labels" + subset,
        "",
        f"`python benchmarks/label_efficiency.py --methods {' '.join(options.methods)} {flags} --epochs {options.epochs} "
        f"--fractions {' '.join(f'{f:g}' for f in fractions)} --seeds {' '.join(map(str, seeds))}"
        f"{' --seed-fractions ' + ' '.join(f'{f:g}' for f in options.seed_fractions) if len(seeds) > 1 else ''}"
        f"{' --probe-layers ' + ' '.join(map(str, options.probe_layers)) + f' --probe-grid {options.probe_grid}' if options.probe_layers else ''}"
        f"{' --quick' if options.quick else ''}`",
        "",
        f"Equal CPU budget: every method pretrains for {budget} at batch 128 and 32 px, with the arguments of "
        "benchmarks/image_pretraining.py (MAE: ViT patch 4, depth 4, width 96; autoencoders, GAN, SimCLR, BYOL and DINO: DCGAN encoder "
        "width 32, the GAN's without normalisation like its discriminator; joint-embedding methods: joint_embedding_cpu.yaml, views at 32 px, "
        "DINO's local crops at 16 px). Each export, and a random initialisation of each distinct backbone (same seed), gets a linear probe "
        "(imagenette_linear_probe.yaml) with the 20-NN accuracy of the same frozen features (the labelled subset is the neighbour bank) and "
        f"full fine-tuning (ViT: imagenette_from_mae.yaml; conv: imagenette_full.yaml), each for as many steps as {options.epochs} epoch(s) of "
        "all the labels on a stratified fraction of them (10% of the labels: 10x the epochs), validated once at the end."
        f"{layers}{multi} Imagenette val accuracy (3,925 images); plot: benchmarks/{section}.png."
        + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""),
        "",
        "| backbone from | architecture | pretrain batches | pretrain (s) | " + " | ".join(f"{label} {f:.0%}" for (_, _, label), f in columns) + " |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in columns) + " |",
    ]
    curves = {}
    for name in options.methods:
        per_seed = [runs[f"{name}/seed{seed}"] for seed in seeds if f"{name}/seed{seed}" in runs]
        arch = per_seed[0]["backbone"]["class_path"].rsplit(".", 1)[1]
        for source, label in (("pretrained", name), ("random_init", f"random init ({arch} as {name})")):
            if not per_seed[0][source]:
                continue
            values = [[run[source][f"{kind}_{f:g}"]["metrics"][metric] for run in per_seed if f"{kind}_{f:g}" in run[source]]
                      for (kind, metric, _), f in columns]
            curves[label] = [statistics.mean(v) for v in values]
            batches = str(per_seed[0]["batches"]) if source == "pretrained" else ""
            seconds = f"{statistics.mean(run['pretrain']['seconds'] for run in per_seed):.0f}" if source == "pretrained" else ""
            lines.append(f"| {label} | {arch} | {batches} | {seconds} | " + " | ".join(cell(v) for v in values) + " |")
    report(section, "\n".join(lines), options.quick)
    plot(curves, [label for (_, _, label) in kinds], fractions,
         ROOT / f"benchmarks/{section}.png" if not options.quick else Path(options.out) / f"{section}.png")


def plot(curves: dict[str, list[float]], kinds: list[str], fractions: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.8), sharey=True)
    n = len(fractions)
    for i, (ax, title) in enumerate(zip(axes, kinds)):
        for label, accs in curves.items():
            ax.plot([100 * f for f in fractions], [100 * a for a in accs[i * n:(i + 1) * n]], marker="o",
                    linestyle="--" if label.startswith("random init") else "-", label=label)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fractions], [f"{f:.0%}" for f in fractions])
        ax.set_xlabel("train labels used")
        ax.set_title(f"Imagenette, {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("val accuracy (%)")
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=8)  # below the panels, covering none
    figure.tight_layout(rect=(0, 0.14, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
