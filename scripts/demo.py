"""The ptft demo: pretrain an autoencoder on Imagenette, export its backbone, linear-probe it, and
linear-probe a randomly initialised copy of the same backbone with the identical protocol.

Prints a table (val accuracy and wall time per stage) and writes ``results.json`` into the run
folder (``runs/demo/<time>/``). Every stage goes through the same ``ptft`` CLI a user runs.

    python scripts/demo.py [--pretrain-steps N] [--probe-epochs N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptft.data.imagenette import find_or_download_imagenette
from ptft.evaluation import new_run_dir, pretrain_then_probe

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: the config's trainer.max_steps")
    parser.add_argument("--probe-epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-config", default=str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"))
    parser.add_argument("--out", default=None, help="run folder (default runs/demo/<time>)")
    options = parser.parse_args()

    root = find_or_download_imagenette()
    run_dir = Path(options.out) if options.out else new_run_dir("runs/demo")
    run_dir.mkdir(parents=True, exist_ok=True)
    common = [f"--seed_everything={options.seed}", f"--data.root={root}", "-c", str(CONFIGS / "trainer/cpu.yaml"),
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]

    stages = pretrain_then_probe(
        ["-c", options.pretrain_config, *common, "--trainer.limit_val_batches=2",
         *([f"--trainer.max_steps={options.pretrain_steps}"] if options.pretrain_steps else [])],
        ["-c", str(CONFIGS / "finetune/imagenette_linear_probe.yaml"), *common, f"--trainer.max_epochs={options.probe_epochs}"],
        run_dir,
    )
    steps, spec = stages["pretrain"]["steps"], stages["backbone"]

    results = {
        "pretrained": stages["pretrained"],
        "random_init": stages["random_init"],
        "pretrain": stages["pretrain"],
        "protocol": {"pretrain_config": options.pretrain_config, "pretrain_steps": steps,
                     "probe_epochs": options.probe_epochs, "seed": options.seed, "data": str(root), "backbone": spec},
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'stage':<24}{'val acc':>10}{'seconds':>10}")
    print(f"{'autoencoder pretrain':<24}{'':>10}{stages['pretrain']['seconds']:>10.0f}")
    for name, label in (("pretrained", "probe: pretrained"), ("random_init", "probe: random init")):
        print(f"{label:<24}{stages[name]['val_acc']:>10.1%}{stages[name]['seconds']:>10.0f}")
    margin = stages["pretrained"]["val_acc"] - stages["random_init"]["val_acc"]
    print(f"\npretrained - random init: {margin:+.1%}   results: {run_dir / 'results.json'}")


if __name__ == "__main__":
    main()
