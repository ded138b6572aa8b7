"""FinalCheckpoint: a run that ends between two saves still leaves its final state in last.ckpt."""

import json

import torch

from conftest import make_image_tree
from helpers import CONFIGS
from ptft.cli import main


def test_a_run_ending_between_two_step_checkpoints_leaves_its_final_state_in_last_ckpt(tmp_path):
    tree = make_image_tree(tmp_path / "tree", per_class=8)
    callbacks = [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(tmp_path / "ckpt"), "save_last": True, "every_n_train_steps": 5}}]
    main(["fit", "-c", str(CONFIGS / "pretrain/autoencoder_imagenette.yaml"), "-c", str(CONFIGS / "trainer/cpu.yaml"), f"--data.root={tree}",
          "--data.image_size=16", "--data.batch_size=4", "--data.num_workers=0", "--model.backbone.init_args.base_width=8",
          "--model.backbone.init_args.num_layers=2", "--model.decoder_width=8", "--trainer.max_steps=7",
          "--trainer.check_val_every_n_epoch=3", "--trainer.limit_val_batches=2", "--trainer.num_sanity_val_steps=0",
          "--trainer.enable_progress_bar=false", "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path / 'root'}",
          f"--trainer.callbacks={json.dumps(callbacks)}"])
    # saves at step 5 (every 5 steps) and none at the end (no validation there) without FinalCheckpoint
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 7
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert len(names) == 2 and names[0].endswith("-step=5.ckpt") and names[1] == "last.ckpt"
