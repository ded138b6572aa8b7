"""Masked / causal LM tasks: data checks, losses, generation (in process, tiny)."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ptft.backbones import TextTransformer
from ptft.data.spec import DataSpec
from ptft.data.wikitext import TokenBlocks, token_dtype, tokenize_file
from ptft.data.tokenizer import train_tokenizer
from ptft.errors import ConfigError
from ptft.pretext.token_masking import IGNORE_INDEX, mask_tokens
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


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_a_prompt_is_encoded_as_training_encodes_its_lines(tokenizer, kind, tmp_path):
    text = " the cat\n\n a bird . \n"
    if kind == "char":
        with pytest.warns(UserWarning, match="upper bound"):
            tokenizer = train_tokenizer([text], "char", vocab_size=100, min_frequency=1)
    (tmp_path / "corpus.txt").write_text(text)
    tokenize_file(tmp_path / "corpus.txt", tokenizer, tmp_path / "tokens.bin")
    trained = np.fromfile(tmp_path / "tokens.bin", dtype=token_dtype(tokenizer.vocab_size)).tolist()  # a newline ends a line: <eos>
    clm = CausalLMPretraining(backbone(True))
    clm.tokenizer = tokenizer
    assert clm.encode_prompt(text) == trained and clm.encode_prompt(text[:-1]) == trained[:-1]
    assert clm.encode_prompt("") == clm.encode_prompt("\n") == [tokenizer.eos_id]  # the start of a text
    assert tokenizer.decode(trained) == text


def test_the_causal_lm_trains_every_position_it_reads_and_generation_reads_no_other(tokenizer, monkeypatch):
    blocks = TokenBlocks(np.arange(10, 10 + 3 * 16 + 1, dtype=np.uint16), 16)  # block_size 16 = the backbone's max_length
    batch = torch.stack([blocks[i] for i in range(len(blocks))])
    clm = CausalLMPretraining(backbone(True), data_spec=datamodule(tokenizer, 16))
    read = []
    real = clm.logits
    monkeypatch.setattr(clm, "logits", lambda tokens: read.append(tokens) or real(tokens))
    loss, extra = clm.loss(batch, torch.Generator())
    assert read[0].shape == (3, 16) and extra["count"] == 3 * 16  # all max_length positions are scored, position 15 included
    expected = F.cross_entropy(real(batch[:, :16]).flatten(0, 1), batch[:, 1:].flatten())  # each position's target: the next token
    torch.testing.assert_close(loss, expected)
    read.clear()
    short = CausalLMPretraining(backbone(True), data_spec=datamodule(tokenizer, 8))  # trained on 8 of the backbone's 16 positions
    monkeypatch.setattr(short, "logits", lambda tokens: read.append(tokens) or real(tokens))
    short.tokenizer = tokenizer
    short.generate(list(range(10, 22)), 3, temperature=0)
    assert short.context_length == 8 and [len(t[0]) for t in read] == [8, 8, 8]


@pytest.mark.parametrize("special_tokens", [True, False])
def test_mlm_reads_the_context_of_each_example_with_its_masking_unchanged(tokenizer, monkeypatch, special_tokens):
    import ptft.tasks.language_model as language_model

    tokens = torch.randint(len(tokenizer.special_ids), tokenizer.vocab_size, (4, 17), generator=torch.Generator().manual_seed(0))
    mlm = MaskedLMPretraining(backbone(False), special_tokens=special_tokens)
    mlm.tokenizer = tokenizer
    read = []
    monkeypatch.setattr(language_model, "mask_tokens", lambda inputs, *a: read.append(inputs) or mask_tokens(inputs, *a))
    _, extra = mlm.loss(tokens, torch.Generator().manual_seed(0))
    # as text fine-tuning wraps a text: <cls> tokens <sep>, 16 positions in all (the block_size)
    expected = torch.cat([torch.full((4, 1), tokenizer.cls_id), tokens[:, :14], torch.full((4, 1), tokenizer.sep_id)], 1) if special_tokens else tokens[:, :16]
    assert torch.equal(read[0], expected)
    special, replacements = mlm._masking_ids(tokens.device)
    _, labels = mask_tokens(expected, tokenizer.mask_id, special, replacements, torch.Generator().manual_seed(0))
    assert extra["count"] == (labels != IGNORE_INDEX).sum()
    if special_tokens:  # <cls> / <sep> are inputs, never prediction targets
        assert (labels[:, [0, -1]] == IGNORE_INDEX).all()


def test_mlm_with_special_tokens_needs_room_for_a_token(tokenizer):
    with pytest.raises(ConfigError, match="data.block_size must be >= 3 with model.special_tokens=true"):
        MaskedLMPretraining(backbone(False)).check_data(datamodule(tokenizer, 2))
    MaskedLMPretraining(backbone(False), special_tokens=False).check_data(datamodule(tokenizer, 2))


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


def test_generation_refuses_an_export_folder(tmp_path):
    from ptft.tasks.language_model import load_causal_lm

    with pytest.raises(ConfigError, match="is an export folder: generation needs the .ckpt of a CausalLMPretraining run"):
        load_causal_lm(tmp_path)
