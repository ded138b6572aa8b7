"""``ptft generate`` for encoder-decoder models: output text for input texts, from a
``Seq2SeqFineTuning`` (or ``DenoisingSeq2SeqPretraining``) checkpoint or its export."""

from __future__ import annotations

import torch
from pytorch_lightning.utilities import rank_zero_warn

from ptft.backbones.seq2seq import Seq2SeqTransformer
from ptft.data.token_batches import encode_texts, pad_ids
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError
from ptft.handoff import Pretrained, load_module
from ptft.seq2seq_generation import GenerationSettings, generate, output_text

SEQ2SEQ = f"{Seq2SeqTransformer.__module__}.{Seq2SeqTransformer.__qualname__}"


def is_seq2seq(pretrained: Pretrained) -> bool:
    """Whether ``pretrained``'s backbone is an encoder-decoder model."""
    return pretrained.specs.get("backbone", {}).get("class_path") == SEQ2SEQ


class TextToText:
    """An encoder-decoder model with its tokenizer, read from a checkpoint or export: input texts
    are encoded as ``Seq2SeqDataModule`` encodes sources (``<cls> text <sep>``, cut to the encoder's
    ``max_source_length``, which is reported), batched by length, and generated from."""

    def __init__(self, pretrained: Pretrained, device: str = "cpu") -> None:
        if not is_seq2seq(pretrained) or pretrained.tokenizer is None:
            raise ConfigError(f"{pretrained.source} is not an encoder-decoder text model (a Seq2SeqTransformer with a tokenizer); "
                              f"it holds a {pretrained.specs.get('backbone', {}).get('class_path')} from {pretrained.task or 'an unknown task'}")
        self.device = torch.device(device)
        self.model: Seq2SeqTransformer = load_module(pretrained, "backbone").eval().to(self.device)
        self.tokenizer = TextTokenizer.from_json(pretrained.tokenizer, pretrained.source)

    def __call__(self, texts: list[str], settings: GenerationSettings, batch_size: int = 32,
                 generator: torch.Generator | None = None) -> list[str]:
        """The output text of each input text, in the given order."""
        tok = self.tokenizer
        ids, truncated, longest = encode_texts(tok, texts, self.model.encoder.max_length)
        if truncated:
            rank_zero_warn(f"{truncated} of {len(texts)} inputs were longer than the model's max_source_length "
                           f"({self.model.encoder.max_length} tokens) and were cut (longest {longest})")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        outputs: list[str] = [""] * len(ids)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            source = pad_ids([ids[i] for i in chunk], tok.pad_id)
            for i, out in zip(chunk, generate(self.model, source.to(self.device), tok.cls_id, tok.sep_id, settings, generator)):
                outputs[i] = output_text(tok, out)
        return outputs
