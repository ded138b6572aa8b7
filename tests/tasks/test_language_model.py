"""Masked / causal LM tasks: data checks, losses, generation (in process, tiny)."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ptft.backbones import TextTransformer
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import train_tokenizer
from ptft.errors import ConfigError
from ptft.pretext.token_masking import IGNORE_INDEX
from ptft.tasks import CausalLMPretraining, MaskedLMPretraining


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([" the cat sees the dog . ", " a bird finds the moon . "] * 20, vocab_size=300)


def backbone(causal, **kw):
    return TextTransformer(**{"vocab_size": 512, "max_length": 16, "depth": 1, "width": 32, "heads": 2, "causal": causal, "dropout": 0.0, **kw})


def datamodule(tokenizer, block_size=16):
    return DataSpec("text", tokenizer=tokenizer, max_length=block_size)


def test_data_that_does_not_fit_the_backbone_is_refused(tokenizer):
    model = MaskedLMPretraining(backbone(False, vocab_size=50))
    with pytest.raises(ConfigError, match=rf"the tokenizer has {tokenizer.vocab_size} tokens but the backbone's vocab_size is 50"):
        model.check_data(datamodule(tokenizer))
    with pytest.raises(ConfigError, match="data.block_size / max_length 32 is longer than the backbone's max_length 16"):
        MaskedLMPretraining(backbone(False)).check_data(datamodule(tokenizer, 32))
    with pytest.raises(ConfigError, match="padding id is 0 but the backbone's pad_id is 3"):
        MaskedLMPretraining(backbone(False, pad_id=3)).check_data(datamodule(tokenizer))
    with pytest.raises(ConfigError, match="needs text data with a tokenizer"):
        MaskedLMPretraining(backbone(False)).check_data(DataSpec("image", image_size=32))
    with pytest.raises(ConfigError, match="CausalLMPretraining needs a causal backbone"):
        CausalLMPretraining(backbone(False))


def test_masked_lm_loss_counts_only_selected_tokens_and_causal_loss_all_next_tokens(tokenizer):
    tokens = torch.tensor(tokenizer.encode_batch([" the cat sees the dog . a bird finds the moon . the cat"]))[:, :16]
    mlm = MaskedLMPretraining(backbone(False))
    mlm.tokenizer = tokenizer
    loss, extra = mlm.loss(tokens, torch.Generator().manual_seed(0))
    assert 0 < extra["count"] < tokens.numel() and torch.isfinite(loss)
    clm = CausalLMPretraining(backbone(True))
    loss, extra = clm.loss(tokens, torch.Generator())
    assert extra["count"] == tokens.numel() - 1
    assert loss.item() == pytest.approx(torch.log(torch.tensor(512.0)).item(), abs=0.5)  # near-uniform at initialisation


def test_generate_returns_exactly_the_requested_tokens_and_refuses_bad_settings(tokenizer):
    clm = CausalLMPretraining(backbone(True))
    clm.tokenizer = tokenizer
    prompt = tokenizer.encode_batch([" the cat"])[0]
    out = clm.generate(prompt, 20, temperature=0.7, top_k=3, generator=torch.Generator().manual_seed(0))
    assert len(out) == 20 and all(0 <= i < tokenizer.vocab_size for i in out)  # beyond max_length 16: the context is cropped
    with pytest.raises(ConfigError, match="temperature must be >= 0 and top_k >= 1"):
        clm.generate(prompt, 2, temperature=-1)


def test_a_batch_with_nothing_to_predict_gives_loss_zero_reaching_every_parameter(tokenizer):
    mlm = MaskedLMPretraining(backbone(False, max_length=32))
    mlm.tokenizer = tokenizer
    only_special = torch.full((2, 17), tokenizer.eos_id)  # never selected
    loss, extra = mlm.loss(only_special, torch.Generator().manual_seed(0))
    assert extra["count"] == 0 and loss.item() == 0 and torch.isfinite(extra["mlm_acc"])
    loss.backward()
    assert all(p.grad is not None and not p.grad.any() for p in mlm.parameters() if p.requires_grad)


def test_mlm_micro_batches_of_one_accumulated_step_get_different_masks(tokenizer, monkeypatch):
    import ptft.tasks.language_model as language_model

    masks = []
    real = language_model.mask_tokens
    monkeypatch.setattr(language_model, "mask_tokens", lambda tokens, *a: masks.append(real(tokens, *a)[1] != IGNORE_INDEX) or real(tokens, *a))
    same = torch.full((2, 17), tokenizer.vocab_size - 1)  # every batch alike, all tokens candidates: only the mask differs
    loader = DataLoader(TensorDataset(same.repeat(4, 1)), batch_size=2, collate_fn=lambda rows: torch.stack([r[0] for r in rows]))
    model = MaskedLMPretraining(backbone(False, max_length=32), data_spec=datamodule(tokenizer, 16))
    trainer = pl.Trainer(max_steps=2, accumulate_grad_batches=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)
    assert trainer.global_step == 2 and len(masks) == 4
    for first, second in (masks[0:2], masks[2:4]):  # the two micro-batches of each optimizer step
        assert not torch.equal(first, second)
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 4
