"""Resume after SIGKILL / SIGTERM: `ptft fit ... --ckpt_path last` continues the run exactly."""

import json
import signal
from pathlib import Path

import pytest
import torch

from conftest import make_corpus, make_image_tree, make_parallel_data
from helpers import CONFIGS, run_ptft, sigterm_when_marked, tiny_seq2seq_model, tiny_text_model
from ptft.cli import main, run_cli
from ptft.errors import ConfigError

TINY = {  # the shipped config at the smallest size; each exercises a random stream the resume must continue
    "autoencoder": ["pretrain/autoencoder_imagenette.yaml", "--model.corruption=gaussian", "--data.train_augment=crop_flip",
                    "--data.num_workers=1", "--model.backbone.init_args.base_width=8", "--model.backbone.init_args.num_layers=2",
                    "--model.decoder_width=8"],
    "gan": ["pretrain/gan_imagenette.yaml", "--model.backbone.init_args.base_width=8", "--model.backbone.init_args.num_layers=2",
            "--model.latent_dim=16", "--model.generator_width=8", "--model.num_grid_images=0"],  # n_critic 1: 2 steps per batch
    "mae": ["pretrain/mae_imagenette.yaml", "--model.backbone.init_args.image_size=16", "--model.backbone.init_args.patch_size=4",
            "--model.backbone.init_args.depth=1", "--model.backbone.init_args.width=32", "--model.backbone.init_args.heads=2",
            "--model.decoder_width=32", "--model.decoder_depth=1", "--model.decoder_heads=2", "--model.num_grid_images=0"],
    "mlm": ["pretrain/mlm_wikitext2.yaml", *tiny_text_model(), "--data.vocab_size=512", "--data.block_size=32"],  # masks + dropout
    "bart": ["pretrain/bart_wikitext2.yaml", *tiny_seq2seq_model(), "--data.vocab_size=512", "--data.block_size=32"],  # corruption + dropout
    "dino": ["pretrain/dino_imagenette.yaml", "--model.backbone=ptft.backbones.DCGANEncoder", "--model.backbone.init_args.base_width=8",
             "--model.backbone.init_args.num_layers=2", "--model.out_dim=32", "--model.hidden_dim=32", "--model.bottleneck_dim=16",
             "--data.views.init_args.local_crops=2", "--data.views.init_args.local_size=8"],  # per-view crops, colours + EMA teacher
    "seq2seq": ["finetune/multi30k_en_de.yaml", *tiny_seq2seq_model(), "--data.vocab_size=512", "--data.max_source_length=32",
                "--data.max_target_length=32", "--model.generate_val_batches=1"],  # length-bucketed batches + dropout
}


def fit_args(task, tmp_path, name, *callbacks, every=3, max_steps=10):
    config, *extra = TINY[task]
    checkpoint = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                  "init_args": {"every_n_train_steps": every, "save_last": True, "enable_version_counter": False}}
    record = {"class_path": "reliability_callbacks.RecordLosses", "init_args": {"path": str(tmp_path / f"{name}.jsonl")}}
    if task in ("mlm", "bart"):  # a corpus of 5 batches of 4 blocks per epoch
        data = [f"--data.root={make_corpus(tmp_path / 'text/wiki.valid.tokens', 30).parent}", "--data.train_file=wiki.valid.tokens",
                "--data.val_file=wiki.valid.tokens", "--data.test_file=null", f"--data.cache_dir={tmp_path / 'cache'}"]
    elif task == "seq2seq":  # 6 batches of 4 pairs per epoch
        data = [f"--data.root={make_parallel_data(tmp_path / 'mt', (('train', 24), ('val', 8)))}", "--data.test_file=null"]
    else:
        data = [f"--data.root={tmp_path / 'tree'}", "--data.image_size=16"]
    return ["fit", "-c", str(CONFIGS / config), "-c", str(CONFIGS / "trainer/cpu.yaml"), *data,
            "--data.batch_size=4", "--data.num_workers=0", *extra,
            f"--trainer.max_steps={max_steps}", "--trainer.log_every_n_steps=1", "--trainer.limit_val_batches=2", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
            f"--trainer.logger.save_dir={tmp_path / name}", f"--trainer.callbacks={json.dumps([checkpoint, record, *callbacks])}"]


def losses(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tree(tmp_path):
    return make_image_tree(tmp_path / "tree", per_class=8)  # 24 images: 6 batches of 4 per epoch


# (checkpoint every N steps, SIGKILL at the start of the batch after K steps): the GAN makes 2 optimizer steps per batch
SCHEDULE = {"autoencoder": (3, 4), "gan": (4, 6), "mae": (3, 4), "mlm": (3, 4), "bart": (3, 4), "dino": (3, 4), "seq2seq": (3, 4)}


def loader_state(checkpoint):
    return checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]


@pytest.mark.parametrize("task", TINY)
def test_a_run_killed_mid_epoch_resumes_from_the_last_step_checkpoint_with_identical_losses(task, tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    every, kill_at = SCHEDULE[task]
    kill = {"class_path": "reliability_callbacks.KillAt", "init_args": {"step": kill_at}}
    killed = run_ptft(*fit_args(task, tmp_path, "run", kill, every=every), cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = torch.load(next((tmp_path / "run").glob("*/version_0/checkpoints/last.ckpt")), weights_only=True)
    per_batch = 2 if task == "gan" else 1
    assert saved["global_step"] == every and loader_state(saved) == [{"epoch": 0, "batches": every // per_batch, "batch_size": None if task == "seq2seq" else 4}]  # bucketed: batches of keys
    before = losses(tmp_path / "run.jsonl")
    assert before[-1]["step"] == kill_at  # one more step ran after the checkpoint and is lost

    run_cli(fit_args(task, tmp_path, "run", every=every) + ["--ckpt_path=last"])  # finds version_0's last.ckpt
    run_cli(fit_args(task, tmp_path, "reference", every=every))  # the same run, uninterrupted
    reference = losses(tmp_path / "reference.jsonl")
    resumed = losses(tmp_path / "run.jsonl")[len(before):]
    assert resumed[0]["step"] == every + per_batch
    assert before == reference[: len(before)]
    expected = [r for r in reference if r["step"] >= resumed[0]["step"]]
    assert len(resumed) == len(expected) and resumed[-1]["step"] == 10
    for got, want in zip(resumed, expected):  # crosses an epoch boundary (with validation) after the resume
        assert got.keys() == want.keys() and got["step"] == want["step"]
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), (got, want)


def test_sigterm_saves_a_checkpoint_exits_143_and_the_run_resumes(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slow = {"class_path": "reliability_callbacks.SlowSteps", "init_args": {"seconds": 1.0, "mark": str(tmp_path / "mark"), "mark_at": 2}}
    args = fit_args("autoencoder", tmp_path, "run", slow, every=100, max_steps=60)
    stopped = sigterm_when_marked(*args, cwd=tmp_path, mark=tmp_path / "mark")
    stderr = stopped.stderr
    assert stopped.returncode == 143, stderr[-3000:]
    assert "ptft: stopped by SIGTERM; saved " in stderr and "--ckpt_path last" in stderr
    last = next((tmp_path / "run").glob("*/version_0/checkpoints/last.ckpt"))
    saved = torch.load(last, weights_only=True)
    step = saved["global_step"]
    assert 2 <= step < 60 and loader_state(saved)[0]["batches"] == step % 6
    reported = stderr.split("ptft: stopped by SIGTERM; saved ", 1)[1].split(";", 1)[0]
    assert Path(reported).resolve() == last.resolve()
    run_cli(fit_args("autoencoder", tmp_path, "run", every=100, max_steps=step + 2) + [f"--ckpt_path={reported}"])  # an explicit path
    resumed = [r["step"] for r in losses(tmp_path / "run.jsonl")][-2:]
    assert resumed == [step + 1, step + 2]  # continued after the saved step, none repeated


def test_sigterm_stops_a_lightning_module_that_is_no_ptft_task_and_restores_the_handler(tmp_path, monkeypatch):
    # `ptft fit` notes SIGTERM and holds it back until PreemptionCheckpoint's setup: the CLI adds one to such a model
    monkeypatch.chdir(tmp_path)
    callbacks = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"dirpath": str(tmp_path / "ckpt")}},
                 {"class_path": "reliability_callbacks.KillAt", "init_args": {"step": 3, "signal_name": "SIGTERM"}}]
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--model=pytorch_lightning.demos.boring_classes.BoringModel", "--data=pytorch_lightning.demos.boring_classes.BoringDataModule",
              "--trainer.max_steps=20", "--trainer.logger=false", "--trainer.enable_progress_bar=false", f"--trainer.callbacks={json.dumps(callbacks)}"])
    assert stopped.value.code == 143
    assert 4 <= torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["global_step"] < 20  # signalled in step 4
    assert signal.getsignal(signal.SIGTERM) is handler and signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_mlm_with_gradient_accumulation_resumes_mid_epoch_with_identical_losses(tmp_path, monkeypatch):
    # each micro-batch draws its own masks (a counter of global_step and batch_idx): a resume must draw them again
    monkeypatch.chdir(tmp_path)
    accumulate = ["--trainer.accumulate_grad_batches=2"]
    kill = {"class_path": "reliability_callbacks.KillAt", "init_args": {"step": 3}}  # 5 batches per epoch: steps of 2, 2, 1
    killed = run_ptft(*fit_args("mlm", tmp_path, "run", kill, every=2, max_steps=6), *accumulate, cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = torch.load(next((tmp_path / "run").glob("*/version_0/checkpoints/last.ckpt")), weights_only=True)
    assert saved["global_step"] == 2 and loader_state(saved) == [{"epoch": 0, "batches": 4, "batch_size": 4}]
    before = losses(tmp_path / "run.jsonl")
    run_cli(fit_args("mlm", tmp_path, "run", every=2, max_steps=6) + accumulate + ["--ckpt_path=last"])
    run_cli(fit_args("mlm", tmp_path, "reference", every=2, max_steps=6) + accumulate)
    reference = losses(tmp_path / "reference.jsonl")
    resumed = losses(tmp_path / "run.jsonl")[len(before):]
    assert before == reference[: len(before)] and len(reference) == 4 + len(resumed) and resumed[-1]["step"] == 6
    for got, want in zip(resumed, reference[4:]):  # from the epoch's last batch (a one-batch step) into the next epoch
        assert got.keys() == want.keys() and got["step"] == want["step"]
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-7), (got, want)


EPOCH_END = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"save_last": True, "enable_version_counter": False}}


@pytest.mark.parametrize("length", [["--data.num_workers=1"], ["--data.num_workers=1", "--trainer.max_steps=-1", "--trainer.max_epochs=2"]],
                         ids=["max_steps", "max_epochs"])
def test_a_run_killed_after_an_epoch_end_checkpoint_resumes_with_identical_losses(length, tree, tmp_path, monkeypatch):
    # last.ckpt is written at the end of epoch 0 (step 6, after the step checkpoint at 4): Lightning restarts such a
    # checkpoint with the loader's iterator made before the epoch is set, and with max_steps one epoch ahead
    monkeypatch.chdir(tmp_path)
    kill = {"class_path": "reliability_callbacks.KillAt", "init_args": {"step": 7}}
    args = lambda name, *extra: fit_args("autoencoder", tmp_path, name, EPOCH_END, *extra, every=4) + length  # noqa: E731
    killed = run_ptft(*args("run", kill), cwd=tmp_path, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = torch.load(next((tmp_path / "run").glob("*/version_0/checkpoints/last.ckpt")), weights_only=True)
    assert saved["global_step"] == 6 and loader_state(saved) == [{"epoch": 0, "batches": 6, "batch_size": 4}]
    before = losses(tmp_path / "run.jsonl")
    run_cli(args("run") + ["--ckpt_path=last"])
    run_cli(args("reference"))
    reference = losses(tmp_path / "reference.jsonl")
    resumed = losses(tmp_path / "run.jsonl")[len(before):]
    assert before == reference[: len(before)] and [r["step"] for r in resumed] == [r["step"] for r in reference[6:]]
    assert resumed == reference[6:]  # the same floats: the same batches, augmentations, noise and updates


def test_the_pretraining_configs_write_one_last_ckpt_the_newest_state(tree, tmp_path, monkeypatch):
    # the config's two ModelCheckpoints: epoch ends (steps 6, 10: the run's end) and every 4 steps (4, 8)
    monkeypatch.chdir(tmp_path)
    args = fit_args("autoencoder", tmp_path, "run")
    args = [a for a in args if not a.startswith("--trainer.callbacks=")] + ["--trainer.callbacks.every_n_train_steps=4"]
    cli = run_cli(args)
    folder = next((tmp_path / "run").glob("*/version_0/checkpoints"))
    assert sorted(p.name for p in folder.glob("last*")) == ["last.ckpt"]
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 10
    assert all(Path(c.last_model_path) == folder / "last.ckpt" for c in cli.trainer.checkpoint_callbacks)


def test_two_checkpoint_callbacks_writing_last_v1_are_refused(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    both = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"save_last": True, "enable_version_counter": True}},
            {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"save_last": True, "every_n_train_steps": 4}}]
    args = [a for a in fit_args("autoencoder", tmp_path, "run") if not a.startswith("--trainer.callbacks=")]
    with pytest.raises(ConfigError, match="2 ModelCheckpoint callbacks save_last into the run's checkpoints folder.*enable_version_counter: false"):
        run_cli(args + [f"--trainer.callbacks={json.dumps(both)}"])


def test_ckpt_path_last_resumes_only_a_run_of_the_same_experiment(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    other = make_image_tree(tmp_path / "other", per_class=8, classes=("fox", "hen"))
    run_cli(fit_args("autoencoder", tmp_path, "run", max_steps=6))  # version_0
    first = next((tmp_path / "run").glob("*/version_0/checkpoints"))
    kept = {path.name: path.stat().st_mtime_ns for path in first.iterdir()}
    capsys.readouterr()
    run_cli(fit_args("autoencoder", tmp_path, "run", max_steps=6) + [f"--data.root={other}", "--model.noise_std=0.3", "--ckpt_path=last"])
    out = capsys.readouterr().out
    assert f"ptft: --ckpt_path last: skipped {first / 'last.ckpt'}: another experiment (differs in data.init_args.root, " \
           "model.init_args.noise_std)" in out
    assert "ptft: --ckpt_path last: no checkpoint of this experiment (same config and overrides) found; starting from scratch" in out
    assert losses(tmp_path / "run.jsonl")[6]["step"] == 1  # started afresh, in its own folder (version_1)
    assert {path.name: path.stat().st_mtime_ns for path in first.iterdir()} == kept

    more = ["--trainer.max_steps=8", "--data.num_workers=1", "--ckpt_path=last"]  # a longer run of the first experiment
    run_cli(fit_args("autoencoder", tmp_path, "run") + more)
    out = capsys.readouterr().out
    second = next((tmp_path / "run").glob("*/version_1/checkpoints"))
    assert f"skipped {second / 'last.ckpt'}: another experiment" in out  # newer, but not this experiment
    assert f"ptft: --ckpt_path last: resuming from {first / 'last.ckpt'}: the newest last checkpoint of this experiment (global step 6)" in out
    assert [r["step"] for r in losses(tmp_path / "run.jsonl")[12:]] == [7, 8]


def test_a_run_refuses_a_checkpoint_folder_holding_another_experiment(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fixed = {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True}}
    args = [a for a in fit_args("autoencoder", tmp_path, "run", max_steps=2) if not a.startswith("--trainer.callbacks=")]
    args.append(f"--trainer.callbacks={json.dumps([fixed])}")
    run_cli(args)
    with pytest.raises(ConfigError, match=r"ckpt: holds last.ckpt of another experiment \(differs in model.init_args.noise_std\)"):
        run_cli(args + ["--model.noise_std=0.3"])
    run_cli(args + ["--trainer.max_steps=3", "--ckpt_path=last"])  # the same experiment continues there
    assert torch.load(tmp_path / "ckpt/last.ckpt", weights_only=True)["global_step"] == 3
