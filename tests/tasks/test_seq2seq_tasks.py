"""Seq2seq objectives in process, on tiny data: BART's denoising loss, BERT2BERT's key report,
the generation metrics on hand-made cases, and fine-tuning that learns a tiny translation."""

import json

import pytest
import pytorch_lightning as pl
import torch

from conftest import make_parallel_data
from ptft.backbones import Seq2SeqTransformer, TextTransformer
from ptft.bert2bert import seq2seq_from_text_encoder
from ptft.data import Seq2SeqDataModule
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import train_tokenizer
from ptft.errors import ConfigError
from ptft.handoff import Pretrained
from ptft.tasks import DenoisingSeq2SeqPretraining, Seq2SeqFineTuning
from ptft.tasks.seq2seq import metric_references, scores, text_metrics

CROSS = ("norm_cross", "cross_q", "cross_kv", "cross_proj")


def seq2seq(**kw):
    return Seq2SeqTransformer(**{"vocab_size": 300, "max_source_length": 24, "max_target_length": 24, "encoder_depth": 1,
                                 "decoder_depth": 1, "width": 32, "heads": 2, "dropout": 0.0, **kw})


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([" the cat sees the dog . a bird finds the moon ! is it ? "] * 20, vocab_size=300)


def score(kind, predictions, references):
    metrics = text_metrics(kind)
    for name, metric in metrics.items():
        metric.update(predictions, metric_references(name, references))
    return {key: round(float(value), 2) for name, metric in metrics.items() for key, value in scores(name, metric.compute()).items()}


def test_bleu_chrf_and_rouge_on_hand_made_cases():
    # precisions 6/7, 5/6, 4/5, 3/4 and no brevity penalty: BLEU = (3/7) ** (1/4)
    assert score("translation", ["the cat sat on the mat today"], [["the cat sat on the mat"]])["bleu"] == pytest.approx(100 * (3 / 7) ** 0.25, abs=0.01)
    short = score("translation", ["the cat sat on the mat"], [["the cat sat on the mat today"]])  # every n-gram right, 6 of 7 words
    assert short["bleu"] == pytest.approx(100 * torch.exp(torch.tensor(1 - 7 / 6)).item(), abs=0.01)
    both = score("translation", ["the cat sat on the mat"], [["the cat sat on the mat today", "the cat sat on the mat"]])
    assert both == {"bleu": 100.0, "chrf": 100.0}  # the closest reference length: no penalty
    # ROUGE-1 P 3/3 R 3/6; ROUGE-2 P 2/2 R 2/5; ROUGE-L = ROUGE-1 (LCS of 3)
    one = {"rouge1": 66.67, "rouge2": 57.14, "rougeL": 66.67}
    assert score("summarization", ["the cat sat"], [["the cat sat on the mat"]]) == {**one, **{f"{k}_target": v for k, v in one.items()}}
    # the best of two references is the exact one; against the target (the first) alone it is the scores above
    two = score("summarization", ["the cat sat"], [["the cat sat on the mat", "the cat sat"]])
    assert two == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0, **{f"{k}_target": v for k, v in one.items()}}
    with pytest.raises(ConfigError, match="model.metrics must be 'translation' or 'summarization'"):
        text_metrics("bleu")


def text_encoder(**kw):
    return TextTransformer(**{"vocab_size": 300, "max_length": 24, "depth": 2, "width": 32, "heads": 2, "dropout": 0.0, **kw})


def test_bert2bert_copies_everything_but_cross_and_copy_attention_and_reports_it():
    encoder = text_encoder()
    pretrained = Pretrained("mlm.ckpt", {"backbone": encoder.spec()}, {"backbone": encoder.state_dict()})
    model, report = seq2seq_from_text_encoder(pretrained)
    assert (len(model.encoder.blocks), len(model.decoder.blocks), model.max_target_length) == (2, 2, 24)
    weights, source = model.state_dict(), encoder.state_dict()
    weights_new = [k for k in weights if any(f".{c}." in k for c in CROSS)]
    assert report.new == weights_new and len(report.new) == 2 * 8
    assert sorted(report.new + [target for target, _ in report.copied]) == sorted(weights)
    assert {origin for _, origin in report.copied} == set(source)  # every pretrained tensor is used
    for target, origin in report.copied:
        expected = source[origin][: model.max_target_length] if origin == "position_embedding" else source[origin]
        assert torch.equal(weights[target], expected), target
    assert ("decoder.blocks.1.qkv.weight", "blocks.1.qkv.weight") in report.copied and ("decoder.norm.weight", "norm.weight") in report.copied
    assert model.token_embedding is model.encoder.token_embedding and "copied decoder.blocks.0.mlp" in str(report) and "new    decoder.blocks.0.cross_q.weight" in str(report)

    shallow, report = seq2seq_from_text_encoder(pretrained, seq2seq(encoder_depth=2, decoder_depth=1, max_target_length=16))
    assert len(report.new) == 8 and torch.equal(shallow.decoder.position_embedding, source["position_embedding"][:16])
    copying, report = seq2seq_from_text_encoder(pretrained, seq2seq(encoder_depth=2, decoder_depth=2, copy_attention=True))
    assert sorted(report.new) == sorted([*weights_new, *(k for k in copying.state_dict() if k.startswith("decoder.copy_attention."))])
    assert len(report.new) == 2 * 8 + 6 and "new    decoder.copy_attention.gate.weight" in str(report)
    with pytest.raises(ConfigError, match="a decoder of 3 blocks and max_target_length 24 cannot start from mlm.ckpt's encoder of 2 blocks"):
        seq2seq_from_text_encoder(pretrained, seq2seq(encoder_depth=2, decoder_depth=3))
    with pytest.raises(ConfigError, match="encoder weights in mlm.ckpt do not match"):
        seq2seq_from_text_encoder(pretrained, seq2seq(encoder_depth=1))
    causal = text_encoder(causal=True)
    with pytest.raises(ConfigError, match="causal TextTransformer: BERT2BERT starts from a bidirectional"):
        seq2seq_from_text_encoder(Pretrained("clm.ckpt", {"backbone": causal.spec()}, {"backbone": causal.state_dict()}))


@pytest.mark.parametrize("kw,named", [({"norm_position": "post"}, "norm_position: post"), ({"token_types": 2}, "token_types: 2"),
                                      ({"activation": "gelu_tanh"}, "activation: gelu_tanh")])
def test_bert2bert_refuses_an_encoder_its_seq2seq_model_cannot_hold(kw, named):
    encoder = text_encoder(**kw)
    with pytest.raises(ConfigError, match=named):
        seq2seq_from_text_encoder(Pretrained("bert", {"backbone": encoder.spec()}, {"backbone": encoder.state_dict()}))


def test_denoising_corrupts_the_encoder_input_and_reconstructs_the_whole_text(tokenizer):
    model = DenoisingSeq2SeqPretraining(seq2seq(), mask_rate=0.3)
    model.tokenizer = tokenizer
    tokens = torch.tensor(tokenizer.encode_batch([" the cat sees the dog . a bird finds the moon ! is it ? " * 3]))[:, :21].repeat(2, 1)
    sources = model.corrupted_sources(tokens[:, :-3], torch.Generator().manual_seed(0))
    assert (sources[:, 0] == tokenizer.cls_id).all() and (sources == tokenizer.mask_id).any(1).all()
    assert not torch.equal(sources[0], sources[1])  # each row has its own corruption
    assert torch.equal(sources, model.corrupted_sources(tokens[:, :-3], torch.Generator().manual_seed(0)))  # seeded
    for row in sources:
        real = row[row != tokenizer.pad_id]
        assert real[-1] == tokenizer.sep_id and len(real) < 20  # <cls> + 18 tokens, 5 of them hidden (in spans, each one <mask>) + <sep>
    loss, extra = model.loss(tokens, torch.Generator().manual_seed(0))
    assert extra["count"] == 2 * 19 and loss.item() == pytest.approx(torch.log(torch.tensor(300.0)).item(), abs=1.0)  # near-uniform at init
    with pytest.raises(ConfigError, match=r"data.block_size must be >= 3, <= the backbone's max_source_length \(24\) and at most its max_target_length \+ 1 \(9\), got 16"):
        DenoisingSeq2SeqPretraining(seq2seq(max_target_length=8)).check_data(DataSpec("text", tokenizer=tokenizer, max_length=16))
    with pytest.raises(ConfigError, match="model.backbone of DenoisingSeq2SeqPretraining must be a ptft.backbones.Seq2SeqTransformer"):
        DenoisingSeq2SeqPretraining(text_encoder())
    with pytest.raises(ConfigError, match=r"model.mask_rate must be in \[0, 1\)"):
        DenoisingSeq2SeqPretraining(seq2seq(), mask_rate=1.0)


def test_fine_tuning_refuses_settings_it_cannot_honour():
    with pytest.raises(ConfigError, match="model.mode must be 'full' for Seq2SeqFineTuning"):
        Seq2SeqFineTuning(backbone=seq2seq(), mode="linear_probe")
    with pytest.raises(ConfigError, match="model.max_generate_length 30 is longer than the backbone's max_target_length 24"):
        Seq2SeqFineTuning(backbone=seq2seq(), max_generate_length=30)
    with pytest.raises(ConfigError, match="model.backbone of Seq2SeqFineTuning must be a ptft.backbones.Seq2SeqTransformer"):
        Seq2SeqFineTuning(backbone=text_encoder())
    with pytest.raises(ConfigError, match="generation: need max_length >= 1, beam_size >= 1"):
        Seq2SeqFineTuning(backbone=seq2seq(), beam_size=0)
    with pytest.raises(ConfigError, match="needs source/target pairs"):
        Seq2SeqFineTuning(backbone=seq2seq()).check_data(DataSpec("text", max_length=24))


def test_fine_tuning_learns_a_tiny_translation_and_scores_the_generated_text(tmp_path):
    pl.seed_everything(0)
    data = Seq2SeqDataModule(str(make_parallel_data(tmp_path / "mt")), batch_size=16, vocab_size=300, max_source_length=24, max_target_length=24)
    model = Seq2SeqFineTuning(backbone=seq2seq(width=64), beam_size=1, generate_val_batches=1, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3))
    trainer = pl.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0)
    trainer.fit(model, data)
    metrics = trainer.callback_metrics
    assert metrics["val/loss"] < 1.0 and metrics["val/bleu"] > 10 and metrics["val/chrf"] > 25
    assert metrics["val/encoder_spread"] > 0.3 and metrics["val/source_gap"] > 0.1  # it reads its source (0.27)
    outputs = model.generate_texts(next(iter(data.val_dataloader())).source[:4])
    assert len(outputs) == 4 and all(isinstance(text, str) and "<" not in text for text in outputs)
    quiet = Seq2SeqFineTuning(backbone=seq2seq(), generate_val_batches=0)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(quiet, data)
    assert "val/loss" in trainer.callback_metrics and "val/bleu" not in trainer.callback_metrics


def test_a_collapsed_encoder_shows_as_zero_spread_and_zero_source_gap(tmp_path):
    data = Seq2SeqDataModule(str(make_parallel_data(tmp_path / "mt")), batch_size=8, vocab_size=300, max_source_length=24, max_target_length=24)
    model = Seq2SeqFineTuning(backbone=seq2seq(), generate_val_batches=0)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=0, limit_val_batches=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.validate(model, data, verbose=False)
    assert 0.5 < trainer.callback_metrics["val/encoder_spread"] < 1.5 and trainer.callback_metrics["val/source_gap"] != 0
    with torch.no_grad():  # the final LayerNorm outputs its bias alone: every token of every source gets the same state
        model.backbone.encoder.norm.weight.zero_()
        model.backbone.encoder.norm.bias.normal_()
    trainer.validate(model, data, verbose=False)
    assert trainer.callback_metrics["val/encoder_spread"] < 1e-5 and abs(trainer.callback_metrics["val/source_gap"]) < 1e-5


def test_summaries_are_scored_against_the_target_alone_only_when_the_data_has_extra_references(tmp_path):
    rows = [{"body": f"the cat {i} sees the dog", "subject": f"cat {i}", "ann0": "the dog"} for i in range(16)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    logged = {}
    for extra in ([], ["ann0"]):
        data = Seq2SeqDataModule(str(tmp_path), train_file="train.jsonl", val_file="train.jsonl", test_file=None, src_suffix=None, tgt_suffix=None,
                                 source_column="body", target_column="subject", reference_columns=extra, batch_size=8, vocab_size=300,
                                 max_source_length=24, max_target_length=8)
        model = Seq2SeqFineTuning(backbone=seq2seq(), metrics="summarization", beam_size=1)
        trainer = pl.Trainer(limit_val_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.validate(model, data, verbose=False)
        logged[bool(extra)] = {key for key in trainer.callback_metrics if "rouge" in key}
    assert logged[False] == {"val/rouge1", "val/rouge2", "val/rougeL"}
    assert logged[True] == logged[False] | {"val/rouge1_target", "val/rouge2_target", "val/rougeL_target"}
