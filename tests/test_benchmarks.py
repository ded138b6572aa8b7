"""Benchmark scripts in --quick mode on a tiny generated "Imagenette": they run end to end and
leave benchmarks/RESULTS.md alone (only full runs write results)."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, make_image_tree, make_parallel_data, make_text_data
from ptft.errors import MissingPathError, OutputExistsError
from ptft.evaluation import new_run_dir, pretrain_then_evaluate

RESULTS = REPO / "benchmarks/RESULTS.md"


def run_quick(tmp_path, script, *args, timeout=600):
    """Run ``benchmarks/<script> --quick`` on tiny data; check that RESULTS.md was left as it was."""
    if not (tmp_path / "data").exists():
        make_image_tree(tmp_path / "data" / "imagenette", per_class=6)
        make_text_data(tmp_path / "data")
    before = RESULTS.read_text() if RESULTS.exists() else None
    env = {**os.environ, "PTFT_DATA": str(tmp_path / "data"), "WANDB_MODE": "offline"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (RESULTS.read_text() if RESULTS.exists() else None) == before
    return result


def table(output):
    return [line for line in output.splitlines() if line.startswith("| ")]


def test_gan_linear_probe_quick_twice_with_one_out_folder(tmp_path):
    for layers in ([], ["--probe-layers", "1", "3", "--probe-grid", "2"]):  # a second run writes into a new folder of its own
        result = run_quick(tmp_path, "gan_linear_probe.py", "--seeds", "0", "--image-size", "16", "--width", "8", f"--out={tmp_path / 'run'}", *layers)
        assert "| 0 |" in result.stdout and "probe: GAN trunk" in result.stdout
    assert "multi-layer linear probe" in result.stdout and "blocks 1, 3 max-pooled to 2x2" in result.stdout
    assert len(list((tmp_path / "run").glob("*/gan_imagenette_seed0/backbone/backbone.safetensors"))) == 2


def test_each_run_gets_a_new_folder_and_an_existing_export_is_found_before_pretraining(tmp_path):
    first, second = new_run_dir(tmp_path / "out"), new_run_dir(tmp_path / "out")
    assert first != second and first.parent == second.parent == tmp_path / "out" and not any(second.iterdir())
    (first / "backbone").mkdir()
    with pytest.raises(OutputExistsError, match="backbone exists: give each run a new folder"):
        pretrain_then_evaluate(["--never-parsed"], {}, first)
    with pytest.raises(MissingPathError, match=f"checkpoint {tmp_path / 'gone'} does not exist"):  # an export to reuse must be there
        pretrain_then_evaluate(["--never-parsed"], {}, second, export=tmp_path / "gone")


def test_image_pretraining_quick_and_its_table_rebuilt_from_the_log(tmp_path):
    result = run_quick(tmp_path, "image_pretraining.py", "--methods", "mae", "autoencoder", f"--out={tmp_path / 'run'}")
    assert "| mae | ViT |" in result.stdout and "| autoencoder | DCGANEncoder |" in result.stdout and result.stdout.count("| random init |") == 2
    (tmp_path / "run.log").write_text(result.stdout)
    rebuilt = run_quick(tmp_path, "image_pretraining.py", f"--report-from={tmp_path / 'run.log'}", timeout=120)
    assert table(rebuilt.stdout) == table(result.stdout)


def test_image_pipeline_quick(tmp_path):
    result = run_quick(tmp_path, "image_pipeline.py", "--sizes", "16", "--views-size", "16", "--workers", "1", timeout=300)
    rows = table(result.stdout)
    for pipeline in ("torchvision ImageFolder (baseline) | ", "ptft (decode) | ", "ptft (decoded cache) | ",
                     "2 SimCLR views: torchvision v2 on PIL (baseline) | ", "2 SimCLR views: ptft, colour in workers | ",
                     "2 SimCLR views: ptft, colour on device | "):
        assert any(f"| 16 | {pipeline}" in row for row in rows), result.stdout
    assert not (tmp_path / "data" / "imagenette" / ".ptft_cache").exists()  # its cache goes to a temporary folder


def test_overhead_quick(tmp_path):
    result = run_quick(tmp_path, "overhead.py", timeout=300)
    rows = table(result.stdout)
    assert any(row.startswith("| tiny model | raw PyTorch loop |") for row in rows), result.stdout
    assert any(row.startswith("| tiny model | ptft (config: W&B offline, progress bar) |") for row in rows)


def test_text_pretraining_quick_in_parts_and_its_table_rebuilt_from_the_logs(tmp_path):
    logs = []
    for parts in (["mlm", "mlm_plain"], ["clm"]):
        logs.append(tmp_path / f"{parts[0]}.log")
        logs[-1].write_text(run_quick(tmp_path, "text_pretraining.py", "--parts", *parts, f"--out={tmp_path / 'run'}").stdout)
    assert len(list((tmp_path / "run").glob("*/mlm/backbone/tokenizer.json"))) == 1
    assert len(list((tmp_path / "run").glob("*/mlm_plain/sst2_random_init"))) == 0  # one random init serves both
    rebuilt = run_quick(tmp_path, "text_pretraining.py", "--report-from", *map(str, logs))
    rows = table(rebuilt.stdout)
    assert rows[2].startswith("| masked LM |") and rows[3].startswith("| random init |") and "| clm_wikitext2.yaml |" in rebuilt.stdout
    assert rows[4].startswith("| masked LM without `<cls>`/`<sep>` in pretraining |")


def test_text_pipeline_quick(tmp_path):
    from conftest import make_text_data

    make_text_data(tmp_path / "data")
    result = run_quick(tmp_path, "text_pipeline.py")
    rows = table(result.stdout)
    assert rows[0].startswith("| corpus |") and [row.split(" | ")[0] for row in rows[2:]] == ["| 1x"]


def test_throughput_quick(tmp_path):
    # one task of each kind of batch and step: images, the GAN's manual optimisation, LM blocks, labelled text
    result = run_quick(tmp_path, "throughput.py", "--tasks", "autoencoder", "gan", "masked_lm", "finetune_text")
    rows = table(result.stdout)[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| autoencoder", "| gan", "| masked_lm", "| finetune_text"]
    assert all(row.endswith("| n/a |") or "%" in row for row in rows) and "tokens/s" in rows[2] and "images/s" in rows[0]


def test_throughput_quick_compiled(tmp_path):
    result = run_quick(tmp_path, "throughput.py", "--tasks", "autoencoder", "--compile")
    header, _, row = table(result.stdout)
    assert header.endswith("| compiled throughput | compiled / eager | first step, eager / compiled (s) |")
    cells = row.strip("| ").split(" | ")
    assert cells[0] == "autoencoder" and cells[6].endswith("images/s") and cells[7].endswith("x") and float(cells[7][:-1]) > 0


def test_label_efficiency_quick_and_its_table_rebuilt_from_the_log(tmp_path):
    args = ["--methods", "autoencoder", "simclr", "--minutes", "0.05", "--seeds", "0", "1", "--fractions", "0.5", "--seed-fractions", "0.5"]  # one fraction keeps it short
    result = run_quick(tmp_path, "label_efficiency.py", *args, f"--out={tmp_path / 'run'}")
    rows = table(result.stdout)
    assert rows[0] == "| backbone from | architecture | pretrain batches | pretrain (s) | probe 50% | kNN 50% | fine-tune 50% |"
    # the autoencoder and SimCLR share a backbone spec: its random init is evaluated once per seed
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| autoencoder", "| random init (DCGANEncoder as autoencoder)", "| simclr"]
    for row in rows[2:]:  # two seeds: mean ± std in points, each a percentage
        cells = row.strip("| ").split(" | ")[4:]
        assert len(cells) == 3 and all(0 <= float(c.split(" ± ")[0]) <= 100 and float(c.split(" ± ")[1]) >= 0 for c in cells), row
    batches = int(rows[2].split(" | ")[2])  # from a timed run of the method: 3 seconds at its measured rate
    assert batches >= 1 and "the same wall-clock time, 0.05 min of training steps" in result.stdout
    assert "Seeds 0, 1 for the 50% columns" in result.stdout
    assert (tmp_path / "run/label_efficiency-autoencoder-simclr.png").stat().st_size > 0  # a subset: its own plot
    (tmp_path / "run.log").write_text(result.stdout)
    rebuilt = run_quick(tmp_path, "label_efficiency.py", *args, f"--report-from={tmp_path / 'run.log'}", f"--out={tmp_path / 'run2'}",
                        timeout=120)
    assert table(rebuilt.stdout) == table(result.stdout)


def test_imagenette_knn_quick(tmp_path):
    # DINO only (SimCLR runs the same code with its own config): its multi-crop views at --size 32 get 16 px locals
    result = run_quick(tmp_path, "imagenette_knn.py", "--methods", "dino", "--minutes", "0.02", "--size", "32", f"--out={tmp_path / 'run'}")
    rows = table(result.stdout)
    assert rows[0] == ("| backbone from | pretraining | epochs | kNN acc (k=200, t=0.1) | linear probe acc "
                       "| lightly, 800 epochs, 128 px (kNN) |")
    dino, random_init = (row.split(" | ") for row in rows[2:])
    assert dino[0] == "| dino" and dino[-1] == "0.888 |" and random_init[0] == "| random init"
    assert all(0 <= float(cell) <= 1 for cell in [*dino[3:5], *random_init[3:5]]), rows
    assert "crops at 16 px" in result.stdout
    assert len(list((tmp_path / "run").glob("*/dino/backbone/backbone.safetensors"))) == 1


@pytest.mark.parametrize("script, args, message", [
    ("scripts/demo.py", ["--label-fraction", "0"], "argument --label-fraction: a fraction of the train labels must be in (0, 1], got 0"),
    ("scripts/demo.py", ["--probe-epochs", "0"], "argument --probe-epochs: must be an integer above 0, got 0"),
    ("benchmarks/label_efficiency.py", ["--fractions", "0.1", "1.5"], "argument --fractions: a fraction of the train labels must be in (0, 1], got 1.5"),
    ("benchmarks/label_efficiency.py", ["--minutes", "0"], "argument --minutes: must be above 0, got 0"),
])
def test_a_bad_budget_or_label_fraction_is_refused_naming_the_flag(tmp_path, script, args, message):
    result = subprocess.run([sys.executable, str(REPO / script), *args, f"--out={tmp_path / 'run'}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(message), result.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def speech_data(tmp_path):
    """Generated tone "words" in the place of fillets-nl."""
    sys.path.insert(0, str(REPO / "tests" / "data"))
    from speech_files import make_tone_words

    make_tone_words(tmp_path / "data" / "fillets-nl", counts=(("train", 16), ("dev", 4), ("test", 4)))


def test_speech_recognition_quick(tmp_path):
    speech_data(tmp_path)
    result = run_quick(tmp_path, "speech_recognition.py", "--methods", "bestrq", "--fractions", "0.5", f"--out={tmp_path / 'run'}",
                       "--", "--data.num_workers=0", "--trainer.logger=pytorch_lightning.loggers.CSVLogger")
    rows = table(result.stdout)
    assert rows[0] == "| encoder init | pretraining | test CER / WER, 50% labels |"
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| random init", "| BEST-RQ"]
    assert len(list((tmp_path / "run").glob("*/bestrq/backbone/backbone.safetensors"))) == 1


def test_speech_throughput_quick(tmp_path):
    speech_data(tmp_path)
    result = run_quick(tmp_path, "speech_throughput.py", "--", "--data.num_workers=0", "--trainer.logger=pytorch_lightning.loggers.CSVLogger")
    rows = {row.split(" | ")[0][2:]: float(row.split(" | ")[1].strip(" |")) for row in table(result.stdout)[2:]}
    assert len(rows) == 5 and all(value > 0 for value in rows.values())
    assert rows["ptft / raw"] == pytest.approx(rows["ptft (`ptft fit` config, CTC task, callbacks), ms per step"]
                                                / rows["raw PyTorch loop, ms per CTC step (batch 16 x 4 s, pre-computed features)"], rel=0.01)


def test_nanogpt_recipe_quick(tmp_path):
    result = run_quick(tmp_path, "nanogpt_recipe.py", timeout=300)
    rows = table(result.stdout)
    assert rows[2].startswith("| validation loss |") and rows[3].startswith("| training tokens/s |"), result.stdout
    loss = float(rows[2].split(" | ")[1])
    assert 0 < loss < 3.0  # 120 steps on a small made-up play: well below uniform guessing (ln 70 = 4.25)


def test_seq2seq_throughput_quick(tmp_path):
    rows = table(run_quick(tmp_path, "seq2seq_throughput.py").stdout)[2:]
    assert [row.split(" | ")[0] for row in rows[:3]] == ["| HF BART training, tokens/s", "| ptft `Seq2SeqFineTuning` training (`ptft fit` config), tokens/s",
                                                        "| ptft / HF (target >= 1.0)"]
    assert len(rows) == 9 and all(float(row.split(" | ")[1].rstrip(" |x").replace(",", "")) > 0 for row in rows)


def make_aeslc_data(root):
    """A tiny AESLC (train.jsonl, dev.jsonl with three extra references) under ``root/aeslc``."""
    (root / "aeslc").mkdir(parents=True)
    for split, rows in (("train", 64), ("dev", 16)):
        lines = [json.dumps({"email_body": f"Hi all. The {i} meeting moves to room {i % 7}.\nThanks", "subject_line": f"meeting {i}",
                             **({"ann0": f"room {i % 7}", "ann1": "meeting moved", "ann2": ""} if split == "dev" else {})}) for i in range(rows)]
        (root / "aeslc" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def test_seq2seq_recipes_quick_in_parts_and_its_table_rebuilt_from_the_logs(tmp_path):
    make_text_data(tmp_path / "data")
    make_parallel_data(tmp_path / "data" / "multi30k")
    make_aeslc_data(tmp_path / "data")
    logs = []
    for parts in (["bart", "baselines"], ["mlm", "scratch"]):
        logs.append(tmp_path / f"{parts[0]}.log")
        logs[-1].write_text(run_quick(tmp_path, "seq2seq_recipes.py", "--parts", *parts, f"--out={tmp_path / 'run'}").stdout)
    rebuilt = run_quick(tmp_path, "seq2seq_recipes.py", "--report-from", *map(str, logs))
    rows = table(rebuilt.stdout)
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| random init (own BPE of the task's text)", "| BART on WikiText-2",
                                                        "| MLM on WikiText-2 (BERT2BERT)", "| extractive: first sentence", "| extractive: first 10 words"]
    rouge1 = [[cell.strip() for cell in row.strip("|").split("|")][4] for row in rows[5:]]
    assert rouge1[0] == "0.00" and float(rouge1[1]) > 0  # "Hi all." shares no word with a subject; the first 10 words do
    subset = run_quick(tmp_path, "seq2seq_recipes.py", "--report-from", str(logs[1])).stdout  # mlm + scratch: a section of their own
    assert "(scratch, mlm only; 1 Multi30k and 1 AESLC epochs)" in subset and "--parts scratch mlm" in subset
    assert [row.split(" | ")[0] for row in table(subset)[2:]] == ["| random init (own BPE of the task's text)", "| MLM on WikiText-2 (BERT2BERT)"]


def test_aeslc_in_domain_quick_pretrains_on_the_email_bodies_and_its_table_rebuilt_from_the_log(tmp_path):
    make_aeslc_data(tmp_path / "data")
    result = run_quick(tmp_path, "aeslc_in_domain.py", f"--out={tmp_path / 'run'}")
    rows = table(result.stdout)
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| random init (own BPE of the task's text)", "| BART on AESLC's training e-mails",
                                                        "| extractive: first sentence", "| extractive: first 10 words"]
    assert re.search(r"Target \(the best start beats both extractive baselines on ROUGE-1, -2 and -L, best of 4 references\): (met|missed); "
                     r"the best start beats both on ", result.stdout)
    assert re.search(r"Against the original subject line alone, the best start beats both on .+ \(of 3\)\.", result.stdout)
    # every cell a number: the ptft runs log the scores against the subject line alone too (no "n/a")
    scores = [[float(cell) for cell in row.strip("| ").split(" | ")[1:7]] for row in rows[2:]]
    assert all(0 <= score <= 100 for row in scores for score in row)
    baseline = scores[2]  # the first sentence, "Hi all.": no word of any reference
    assert baseline == [0.0] * 6 and scores[3][3] > 0  # the first 10 words hold "meeting" and the subject's number
    emails = next((tmp_path / "run").glob("*/emails"))  # one body per line, newlines folded, no subject lines
    assert (emails / "train.txt").read_text().split("\n\n")[:2] == ["Hi all. The 0 meeting moves to room 0. Thanks", "Hi all. The 1 meeting moves to room 1. Thanks"]
    assert "meeting 0" not in (emails / "train.txt").read_text() and (emails / "valid.txt").read_text().count("\n\n") == 16
    (tmp_path / "run.log").write_text(result.stdout)
    assert table(run_quick(tmp_path, "aeslc_in_domain.py", f"--report-from={tmp_path / 'run.log'}", timeout=120).stdout) == rows
    export = next((tmp_path / "run").glob("*/bart_emails/backbone"))  # fine-tuned again without pretraining again
    again = run_quick(tmp_path, "aeslc_in_domain.py", f"--out={tmp_path / 'again'}", f"--pretrained-export={export}")
    assert "stage pretrain" not in again.stderr and "stage aeslc pretrained (1/2): started" in again.stderr
    assert "the export of an earlier run (--pretrained-export). Fine-tuning, identical for both starts: configs/finetune/aeslc.yaml for 1 epoch(s)" in again.stdout
    assert len(table(again.stdout)) == len(rows)
    wrong = subprocess.run([sys.executable, str(REPO / "benchmarks/aeslc_in_domain.py"), "--quick", f"--pretrained-export={export}", "--copy-attention"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and wrong.stderr.strip().endswith(f"{export}: backbone copy_attention is False, but the options ask for True")


def test_encoder_collapse_quick_reports_spread_and_gap_for_hf_and_ptft(tmp_path):
    pytest.importorskip("transformers")
    make_aeslc_data(tmp_path / "data")
    rows = table(run_quick(tmp_path, "encoder_collapse.py").stdout)
    assert rows[0] == "| model | step 0 | step 2 | step 4 |"
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| HF BART, random init", "| ptft Seq2SeqTransformer, random init"]
    cells = [cell.split(" / ") for row in rows[2:] for cell in row.strip("| ").split(" | ")[1:]]
    assert len(cells) == 6 and all(0 <= float(spread) <= 2 for spread, _ in cells)


def test_interop_finetune_quick(tmp_path):
    pytest.importorskip("transformers")
    rows = table(run_quick(tmp_path, "interop_finetune.py", f"--out={tmp_path / 'run'}").stdout)
    assert rows[2].startswith("| ptft fit --model.pretrained=HF folder |") and rows[3].startswith("| plain PyTorch loop")
