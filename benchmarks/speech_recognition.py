"""Speech recognition on fillets-nl: CER and WER on the test split after CTC fine-tuning from random
init, from masked spectrogram reconstruction and from BEST-RQ, with 100% and 20% of the transcribed
train clips.

Each method pretrains on all train audio as unlabelled data (configs/pretrain/speech_*_fillets.yaml)
for ``--pretrain-epochs``; its export and a random init of the same encoder are then fine-tuned with
CTC (configs/finetune/fillets_ctc.yaml) for the same number of steps at every label fraction
(``--finetune-epochs`` epochs of the full train split: 5x the epochs at 20%), validated on dev, and
scored on test with the final weights (greedy decoding). The encoder is the configs' Conformer, or
``--backbone deepspeech2``. Prints a table and writes the "speech_recognition" section of
benchmarks/RESULTS.md (``speech_recognition_gpu`` with ``--gpu``, bf16-mixed).

    python benchmarks/speech_recognition.py [--backbone conformer] [--pretrain-epochs 30] [--finetune-epochs 40] [--gpu] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from results import report, trainer_args  # noqa: E402

from ptft.data.paths import resolve_data_path  # noqa: E402
from ptft.evaluation import new_run_dir, pretrain_then_evaluate  # noqa: E402

CONFIGS = ROOT / "configs"
METHODS = {"maskrecon": "masked reconstruction", "bestrq": "BEST-RQ"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--backbone", default="conformer", choices=["conformer", "deepspeech2"])
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=40, help="fine-tuning budget, in epochs of the full train split")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.2, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu", action="store_true", help="one GPU, bf16-mixed (configs/trainer/gpu.yaml + bf16.yaml)")
    parser.add_argument("--quick", action="store_true", help="a few steps on a few clips: a smoke test, not a result")
    parser.add_argument("--out", default="runs/benchmarks/speech_recognition", help="parent of the run's own folder")
    parser.add_argument("overrides", nargs="*", help="more ptft options for every run, e.g. --data.num_workers=8 --data.cache=true")
    options = parser.parse_args()
    common = [f"--seed_everything={options.seed}", f"--data.root={resolve_data_path('fillets-nl')}", *trainer_args(options.gpu),
              "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *options.overrides]
    if options.quick:
        common += ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1", "--data.batch_size=4"]
    backbone = ["-c", str(CONFIGS / f"speech/{options.backbone}.yaml")]
    pretrain_epochs, finetune_epochs = (1, 1) if options.quick else (options.pretrain_epochs, options.finetune_epochs)
    evaluations = {}
    for fraction in options.fractions:
        epochs = max(1, round(finetune_epochs / fraction))  # the same number of steps at every fraction
        evaluations[f"{fraction:g}"] = {"test": True, "args": [
            "-c", str(CONFIGS / "finetune/fillets_ctc.yaml"), *common, f"--data.label_fraction={fraction}",
            f"--trainer.max_epochs={epochs}", f"--trainer.check_val_every_n_epoch={max(1, round(1 / fraction))}"]}
    run_dir = new_run_dir(options.out)  # each run writes its own folder: a re-run never meets earlier outputs
    rows: dict = {}
    for i, method in enumerate(options.methods):
        pretrain = ["-c", str(CONFIGS / f"pretrain/speech_{method}_fillets.yaml"), *backbone, *common, f"--trainer.max_epochs={pretrain_epochs}"]
        rows[method] = pretrain_then_evaluate(pretrain, evaluations, run_dir / method, random_init=i == 0)
        print(json.dumps({method: rows[method]}))
    report("speech_recognition_gpu" if options.gpu else "speech_recognition", table(rows, options, pretrain_epochs, finetune_epochs), options.quick)


def table(rows: dict, options: argparse.Namespace, pretrain_epochs: int, finetune_epochs: int) -> str:
    fractions = [f"{f:g}" for f in options.fractions]
    header = "| encoder init | pretraining | " + " | ".join(f"test CER / WER, {float(f):.0%} labels" for f in fractions) + " |"
    lines = [header, "|" + " --- |" * (2 + len(fractions))]

    def cells(results: dict) -> str:
        return " | ".join(f"{results[f]['metrics']['test/cer']:.3f} / {results[f]['metrics']['test/wer']:.3f}" for f in fractions)

    first = next(iter(rows.values()))
    lines.append(f"| random init | none | {cells(first['random_init'])} |")
    for method, result in rows.items():
        pretrain = result["pretrain"]
        lines.append(f"| {METHODS[method]} | {pretrain['steps']} steps, {pretrain['seconds'] / 60:.1f} min | {cells(result['pretrained'])} |")
    scratch, best = first["random_init"], min((r["pretrained"] for r in rows.values()), key=lambda r: r[fractions[0]]["metrics"]["test/cer"])
    gain = 1 - best[fractions[0]]["metrics"]["test/cer"] / scratch[fractions[0]]["metrics"]["test/cer"]
    device = "one GPU, bf16-mixed" if options.gpu else "2 CPU cores, fp32"
    fractions_option = "" if options.fractions == [0.2, 1.0] else " --fractions " + " ".join(fractions)
    return "\n".join([
        f"### Speech recognition on fillets-nl ({device})", "",
        f"Encoder: `configs/speech/{options.backbone}.yaml`; pretraining {pretrain_epochs} epochs on all train audio (unlabelled); "
        f"CTC fine-tuning for {finetune_epochs} epochs' worth of steps at every label fraction, greedy decoding, test split "
        f"(138 clips, 8.7 min). Best pretrained vs random init at {float(fractions[0]):.0%} labels: {gain:+.1%} relative CER "
        "(target: at least 15% lower).", "",
        *lines, "",
        f"Reproduce: `python benchmarks/speech_recognition.py --backbone {options.backbone} --pretrain-epochs {pretrain_epochs} "
        f"--finetune-epochs {finetune_epochs}{fractions_option}{' --gpu' if options.gpu else ''}{' -- ' + ' '.join(options.overrides) if options.overrides else ''}`",
    ])


if __name__ == "__main__":
    main()
