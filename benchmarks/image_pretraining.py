"""MAE vs the convolutional autoencoders vs random init on Imagenette, at the same budget.

Each method pretrains for the same number of steps at batch 128 and 32 px; its exported backbone
and a random initialisation of the same backbone are then evaluated identically: a linear probe
(configs/finetune/imagenette_linear_probe.yaml, frozen backbone) with the 20-NN accuracy of its
features (ptft.callbacks.KNNMonitor), and full fine-tuning (the method's fine-tuning config:
layer decay + drop path + warmup/cosine for the ViT, imagenette_full.yaml for the conv nets).
Prints a table and writes the "image_pretraining" section of benchmarks/RESULTS.md.

    python benchmarks/image_pretraining.py [--steps 1000] [--methods mae autoencoder denoising_autoencoder] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report, rows_from_logs  # noqa: E402

from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402
from ptft.evaluation import new_run_dir, pretrain_then_evaluate  # noqa: E402

CONFIGS = ROOT / "configs"
SMALL_VIT = {"image_size": 32, "patch_size": 4, "depth": 4, "width": 96, "heads": 3}
OPTIMIZER_STEPS_PER_BATCH = {"gan": 2}  # trainer.max_steps of a GAN counts discriminator and generator steps
JOINT_EMBEDDING = ("simclr", "byol", "dino")


def pretrain_steps(name: str, batches: int) -> str:
    """The ``--trainer.max_steps`` that pretrains method ``name`` on ``batches`` batches."""
    return f"--trainer.max_steps={batches * OPTIMIZER_STEPS_PER_BATCH.get(name, 1)}"


def method_args(name: str) -> tuple[list[str], str, list[str]]:
    """(pretraining args, fine-tuning config, its extra args)."""
    pretrain = lambda *configs: [a for c in configs for a in ("-c", str(CONFIGS / "pretrain" / c))]  # noqa: E731
    if name == "mae":
        vit = [f"--model.backbone.init_args.{k}={v}" for k, v in SMALL_VIT.items()]
        return ([*pretrain("mae_imagenette.yaml"), *vit, "--model.decoder_width=64", "--model.decoder_depth=1", "--model.decoder_heads=2",
                 "--trainer.callbacks=pytorch_lightning.callbacks.ModelCheckpoint", "--trainer.callbacks.save_last=true"],
                "imagenette_from_mae.yaml", [])
    if name == "autoencoder":
        return pretrain("autoencoder_imagenette.yaml"), "imagenette_full.yaml", []
    if name == "denoising_autoencoder":
        return pretrain("autoencoder_imagenette.yaml", "denoising_autoencoder_imagenette.yaml"), "imagenette_full.yaml", []
    if name == "gan":  # the discriminator trunk at the autoencoders' width and batch; max_steps: see OPTIMIZER_STEPS_PER_BATCH
        return ([*pretrain("gan_imagenette.yaml"), "--model.backbone.init_args.base_width=32", "--model.generator_width=32", "--data.batch_size=128"],
                "imagenette_full.yaml", [])
    if name in JOINT_EMBEDDING:  # the demo's setting: the autoencoders' DCGAN encoder (width 32), batch 128, 32 px
        return pretrain(f"{name}_imagenette.yaml", "joint_embedding_cpu.yaml"), "imagenette_full.yaml", []
    raise SystemExit(f"unknown method {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["mae", "autoencoder", "denoising_autoencoder"])
    parser.add_argument("--steps", type=int, default=1000, help="pretraining steps of every method (batch 128)")
    parser.add_argument("--probe-epochs", type=int, default=3)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few steps on 3%% of the images: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/image_pretraining", help="each run writes into a new folder OUT/<time>")
    parser.add_argument("--report-from", metavar="LOG", help="only rebuild the table from the JSON lines an earlier run printed "
                        "(one per finished method, e.g. of a run stopped early); the other options must match that run")
    options = parser.parse_args()

    steps = 4 if options.quick else options.steps
    probe_epochs, finetune_epochs = (1, 1) if options.quick else (options.probe_epochs, options.finetune_epochs)
    if options.report_from:
        rows = rows_from_logs(options.report_from)
        options.methods = list(rows)
        return summarise(rows, options, steps, probe_epochs, finetune_epochs)
    root = find_or_download_imagenette()
    common = [f"--seed_everything={options.seed}", f"--data.root={root}", "-c", str(CONFIGS / "trainer/cpu.yaml"), "--data.image_size=32",
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              *(["--data.label_fraction=0.03", "--data.batch_size=16"] if options.quick else [])]
    knn = json.dumps({"class_path": "ptft.callbacks.KNNMonitor", "init_args": {"every_n_epochs": probe_epochs}})
    probe = ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common, f"--trainer.max_epochs={probe_epochs}",
             f"--trainer.callbacks+={knn}"]
    run_dir = new_run_dir(options.out)
    rows = {}
    for name in options.methods:
        pretrain, finetune_config, finetune_extra = method_args(name)
        finetune = ["-c", str(CONFIGS / "finetune" / finetune_config), *common, f"--trainer.max_epochs={finetune_epochs}", *finetune_extra]
        evaluations = {"probe": {"args": probe}, "finetune": {"args": finetune}}
        rows[name] = pretrain_then_evaluate([*pretrain, *common, pretrain_steps(name, steps), "--trainer.limit_val_batches=2"],
                                            evaluations, run_dir / name)
        print(json.dumps({name: rows[name]}), flush=True)
    summarise(rows, options, steps, probe_epochs, finetune_epochs)


def summarise(rows: dict, options: argparse.Namespace, steps: int, probe_epochs: int, finetune_epochs: int) -> None:
    """Print the table and, unless quick, write it into benchmarks/RESULTS.md."""

    def cell(row, source, evaluation, key):
        return f"{row[source][evaluation]['metrics'][key]:.1%}"

    lines = [
        "## Image pretraining on Imagenette: MAE, autoencoders, random init (linear probe, kNN, fine-tune)",
        "",
        f"`python benchmarks/image_pretraining.py --methods {' '.join(options.methods)} --steps {steps}"
        f" --probe-epochs {probe_epochs} --finetune-epochs {finetune_epochs}{' --quick' if options.quick else ''}`",
        "",
        f"Every method pretrains for {steps} steps at batch 128 and 32 px on the CPU (MAE: ViT patch 4, depth 4, width 96, "
        "decoder width 64 x 1 block, mask 0.75; autoencoders: DCGAN encoder width 32). Each backbone and a random "
        f"initialisation of the same architecture (same seed) get a {probe_epochs}-epoch linear probe with the 20-NN accuracy "
        f"of its frozen features, and {finetune_epochs} epochs of full fine-tuning (ViT: layer decay 0.75, drop path 0.1, "
        "warmup + cosine; conv: imagenette_full.yaml). Imagenette val accuracy (3,925 images)."
        + (" **Quick mode: a smoke test, not a result.**" if options.quick else ""),
        "",
        "| method | backbone | pretrain (s) | linear probe | kNN (k=20) | fine-tune |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        arch = row["backbone"]["class_path"].rsplit(".", 1)[1]
        for source, label in (("pretrained", name), ("random_init", "random init")):
            seconds = f"{row['pretrain']['seconds']:.0f}" if source == "pretrained" else ""
            lines.append(f"| {label} | {arch} | {seconds} | {cell(row, source, 'probe', 'val/acc')} | "
                         f"{cell(row, source, 'probe', 'val/knn_acc')} | {cell(row, source, 'finetune', 'val/acc')} |")
    report("image_pretraining", "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
