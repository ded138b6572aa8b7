"""Linear-probe accuracy of a GAN discriminator's trunk vs the same trunk at random init.

For each seed: GAN pretraining on Imagenette (a config from configs/pretrain, at the chosen
size and width), `ptft export` of the discriminator trunk, then the demo's linear probe
(configs/finetune/imagenette_linear_probe.yaml) of the export and of a random initialisation of
the same backbone, identical in everything else. Prints a table and writes the
"gan_linear_probe" section of benchmarks/RESULTS.md.

    python benchmarks/gan_linear_probe.py [--seeds 0 1 2] [--pretrain-steps 3000] [--probe-layers 1 2 3] [--quick]

``--probe-layers`` probes the max-pooled maps of those trunk blocks, concatenated (``--probe-grid``
squared cells each: the DCGAN paper's probe of its discriminator) instead of the pooled last map.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report  # noqa: E402

from ptft.data.imagenette import find_or_download_imagenette  # noqa: E402
from ptft.evaluation import new_run_dir, pretrain_then_probe  # noqa: E402

CONFIGS = ROOT / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="gan_imagenette", help="a GAN config in configs/pretrain (default gan_imagenette)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-steps", type=int, default=3000, help="optimizer steps of D and G together")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--width", type=int, default=32, help="base width of the discriminator trunk and the generator")
    parser.add_argument("--probe-epochs", type=int, default=6)
    parser.add_argument("--probe-layers", type=int, nargs="+", default=None,
                        help="multi-layer probe of these trunk blocks (0 = first; model.probe_layers); default: the pooled last map")
    parser.add_argument("--probe-grid", type=int, default=4, help="side of each block's max-pooled grid with --probe-layers")
    parser.add_argument("--quick", action="store_true", help="a few steps on 3%% of the images: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/gan_linear_probe", help="each run writes into a new folder OUT/<time>")
    options = parser.parse_args()

    root = find_or_download_imagenette()
    subset = ["--data.label_fraction=0.03"] if options.quick else []
    steps = 4 if options.quick else options.pretrain_steps
    epochs = 1 if options.quick else options.probe_epochs
    run_dir = new_run_dir(options.out)
    layers = [] if options.probe_layers is None else [f"--model.probe_layers={json.dumps(options.probe_layers)}", f"--model.probe_grid={options.probe_grid}"]
    probed = ("the pooled last map" if options.probe_layers is None else
              f"blocks {', '.join(map(str, options.probe_layers))} max-pooled to {options.probe_grid}x{options.probe_grid} and concatenated")
    flags = "" if options.probe_layers is None else f" --probe-layers {' '.join(map(str, options.probe_layers))} --probe-grid {options.probe_grid}"
    rows = []
    for seed in options.seeds:
        common = [f"--seed_everything={seed}", f"--data.root={root}", "-c", str(CONFIGS / "trainer/cpu.yaml"),
                  f"--data.image_size={options.image_size}", "--trainer.enable_progress_bar=false",
                  "--trainer.enable_model_summary=false", *subset]
        pretrain = ["-c", str(CONFIGS / f"pretrain/{options.config}.yaml"), *common, f"--trainer.max_steps={steps}",
                    f"--model.backbone.init_args.base_width={options.width}", f"--model.generator_width={options.width}",
                    "--trainer.limit_val_batches=2"]
        probe = ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common, f"--trainer.max_epochs={epochs}", *layers]
        result = pretrain_then_probe(pretrain, probe, run_dir / f"{options.config}_seed{seed}")
        rows.append({"seed": seed, **result})
        print(json.dumps(rows[-1]), flush=True)

    gains = [r["pretrained"]["val_acc"] - r["random_init"]["val_acc"] for r in rows]
    lines = [
        f"## GAN discriminator trunk: {'linear' if options.probe_layers is None else 'multi-layer linear'} probe vs random init ({options.config})",
        "",
        f"`python benchmarks/gan_linear_probe.py --config {options.config} --seeds {' '.join(map(str, options.seeds))} "
        f"--pretrain-steps {steps}{flags}{' --quick' if options.quick else ''}`",
        "",
        f"GAN pretraining: configs/pretrain/{options.config}.yaml at {options.image_size} px, trunk and generator width "
        f"{options.width}, {steps} optimizer steps (D and G together), on the CPU. Probe: "
        f"configs/finetune/imagenette_linear_probe.yaml, {epochs} epochs, frozen trunk, features: {probed}, Imagenette val accuracy "
        "(3,925 images). The random-init trunk is the same architecture, built with the same seed."
        + (" **Quick mode: 3% of the images and a few steps; a smoke test, not a result.**" if options.quick else ""),
        "",
        "| seed | pretrain (s) | probe: GAN trunk | probe: random init | gain |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row, gain in zip(rows, gains):
        lines.append(f"| {row['seed']} | {row['pretrain']['seconds']:.0f} | {row['pretrained']['val_acc']:.1%} | "
                     f"{row['random_init']['val_acc']:.1%} | {gain:+.1%} |")
    if len(rows) > 1:
        mean = lambda key: statistics.mean(r[key]["val_acc"] for r in rows)  # noqa: E731
        lines.append(f"| mean | | {mean('pretrained'):.1%} | {mean('random_init'):.1%} | {statistics.mean(gains):+.1%} |")
    section = f"gan_linear_probe:{options.config}" + ("" if options.probe_layers is None else ":layers" + "-".join(map(str, options.probe_layers)))
    report(section, "\n".join(lines), options.quick)


if __name__ == "__main__":
    main()
