"""``model.torch_compile``: which modules are compiled, and that compiled training matches eager."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import small_encoder
from ptft.backbones import DCGANEncoder, ResNet, TextTransformer, ViT
from ptft.tasks import AutoencoderPretraining, GANPretraining


@pytest.mark.parametrize("make, blocks", [
    (lambda: ViT(image_size=16, patch_size=4, width=32, depth=2, heads=2), "blocks"),
    (lambda: TextTransformer(vocab_size=50, max_length=8, width=32, depth=3, heads=2), "blocks"),
    (lambda: ResNet(small_images=True), None),
    (lambda: DCGANEncoder(base_width=8, num_layers=2), None),
])
def test_compile_regions_cover_every_layer_and_split_transformers_by_block(make, blocks):
    backbone = make()
    regions = backbone.compile_regions()
    in_regions = {id(p) for region in regions for p in region.parameters()}
    held_directly = {id(p) for p in backbone.parameters(recurse=False)}  # e.g. position embeddings: used in the uncompiled method
    assert {id(p) for p in backbone.parameters()} - held_directly == in_regions
    if blocks:
        assert all(any(block is region for region in regions) for block in getattr(backbone, blocks))


def test_a_gan_with_a_gradient_penalty_compiles_only_its_generator():
    def gan(**kwargs):
        return GANPretraining(DCGANEncoder(base_width=8, num_layers=2, norm="none"), image_size=16, generator_width=8, **kwargs)

    hinge = gan(loss="hinge")
    assert hinge.compile_regions() == [hinge.generator, *hinge.backbone.compile_regions(), hinge.critic_head]
    for penalised in (gan(loss="wgan_gp"), gan(r1_gamma=1.0)):
        assert penalised.compile_regions() == [penalised.generator]


def train(torch_compile: bool, tmp_path):
    pl.seed_everything(0)
    model = AutoencoderPretraining(small_encoder(), decoder_width=8, torch_compile=torch_compile)
    images = torch.rand(16, 3, 16, 16) * 2 - 1
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(outputs["loss"].item())

    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Record()], default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, train_dataloaders=DataLoader(TensorDataset(images, torch.zeros(16, dtype=torch.long)), batch_size=4))
    return model, losses


def test_compiled_training_matches_eager_and_keeps_the_checkpoint_keys(tmp_path):
    eager, eager_losses = train(False, tmp_path)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled, compiled_losses = train(True, tmp_path)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= len(compiled.compile_regions())  # really compiled
    assert all(module._compiled_call_impl is not None for module in compiled.compile_regions())
    assert all(module._compiled_call_impl is None for module in eager.compile_regions())
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-4)
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # no "_orig_mod." prefixes: exports and resumes work
    for name, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[name], value, rtol=1e-3, atol=1e-5)
