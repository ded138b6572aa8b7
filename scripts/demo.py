"""The ptft demo: pretraining pays off where labels are scarce. SimCLR pretrains a small conv
encoder on the Imagenette train images without their labels; its backbone is exported and
linear-probed with 10% of the train labels, and a randomly initialised copy of the same backbone
(the very initialisation pretraining started from) is probed identically.

Prints a table (val accuracy and wall time per stage) and the margin, and writes ``results.json``
into the run folder (``runs/demo/<time>/``). Every stage goes through the same ``ptft`` CLI a user runs.

    python scripts/demo.py [--pretrain-steps N] [--label-fraction F] [--probe-epochs N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptft.data.imagenette import find_or_download_imagenette
from ptft.evaluation import label_fraction, label_subset, new_run_dir, positive_integer, pretrain_then_probe

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
CACHE = Path("runs/demo/decoded_cache")
PRETRAIN_CONFIGS = ("pretrain/simclr_imagenette.yaml", "pretrain/joint_embedding_cpu.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=positive_integer, default=None, help="default: the configs' trainer.max_steps")
    parser.add_argument("--pretrain-config", nargs="+", default=[str(CONFIGS / c) for c in PRETRAIN_CONFIGS],
                        help="pretraining config files, applied in order")
    parser.add_argument("--label-fraction", type=label_fraction, default=0.1, help="stratified fraction of the train labels the probes see")
    parser.add_argument("--probe-epochs", type=positive_integer, default=2,
                        help="probe length in epochs of all the labels: a fraction F trains N / F epochs, the same number of steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default runs/demo/<time>)")
    options = parser.parse_args()

    root = find_or_download_imagenette()
    run_dir = Path(options.out) if options.out else new_run_dir("runs/demo")
    run_dir.mkdir(parents=True, exist_ok=True)
    common = [f"--seed_everything={options.seed}", f"--data.root={root}", "-c", str(CONFIGS / "trainer/cpu.yaml"),
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              "--data.decoded_cache=true", f"--data.cache_dir={CACHE}"]  # decoded once, reused by every stage and later demos
    pretrain_configs = [a for config in options.pretrain_config for a in ("-c", config)]
    probe = ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common, "--data.image_size=32", "--data.batch_size=128",
             *label_subset(options.label_fraction, options.probe_epochs)]

    stages = pretrain_then_probe(
        [*pretrain_configs, *common, "--trainer.limit_val_batches=2",
         *([f"--trainer.max_steps={options.pretrain_steps}"] if options.pretrain_steps else [])],
        probe, run_dir,
    )
    steps, spec = stages["pretrain"]["steps"], stages["backbone"]
    margin = stages["pretrained"]["val_acc"] - stages["random_init"]["val_acc"]

    results = {
        "pretrained": stages["pretrained"],
        "random_init": stages["random_init"],
        "margin": margin,
        "pretrain": stages["pretrain"],
        "protocol": {"pretrain_configs": options.pretrain_config, "pretrain_steps": steps, "label_fraction": options.label_fraction,
                     "probe_epochs_of_all_labels": options.probe_epochs, "seed": options.seed, "data": str(root), "backbone": spec},
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nImagenette val accuracy, linear probe on {options.label_fraction:.0%} of the train labels")
    print(f"{'stage':<24}{'val acc':>10}{'seconds':>10}")
    print(f"{'pretrain (no labels)':<24}{'':>10}{stages['pretrain']['seconds']:>10.0f}")
    for name, label in (("pretrained", "probe: pretrained"), ("random_init", "probe: random init")):
        print(f"{label:<24}{stages[name]['val_acc']:>10.1%}{stages[name]['seconds']:>10.0f}")
    print(f"\npretrained - random init: {100 * margin:+.1f} points   results: {run_dir / 'results.json'}")


if __name__ == "__main__":
    main()
