"""Language-model pretraining of a TextTransformer: masked LM (BERT recipe) and causal LM."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptft.backbones.base import Backbone
from ptft.backbones.text import TextTransformer
from ptft.data.spec import DataSpec
from ptft.data.tokenizer import TextTokenizer
from ptft.errors import ConfigError
from ptft.handoff import build_loaded, load_checkpoint, pretrained_in_checkpoint
from ptft.pretext.lm_head import TiedLMHead
from ptft.pretext.token_masking import IGNORE_INDEX, mask_tokens, non_special_ids
from ptft.tasks.text_pretraining import TextPretraining


class LanguageModelPretraining(TextPretraining):
    """A TextTransformer with a tied LM head, trained on token blocks from a text DataModule
    (``WikiTextDataModule``). Subclasses define the objective; ``head_transform`` selects BERT's
    transform in the head."""

    backbone_type = TextTransformer
    head_transform = False

    def __init__(
        self,
        backbone: Backbone,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        self.lm_head = TiedLMHead(backbone.out_dim, backbone.vocab_size, self.head_transform)
        self.trained_length: int | None = None  # the data's max_length (block_size) of a loaded checkpoint

    @property
    def context_length(self) -> int:
        """The positions the model may read at inference: the data's ``max_length`` (``block_size``,
        every position of which training scores), never more than the backbone's ``max_length``."""
        spec = self.data_spec
        trained = spec.max_length if spec is not None and spec.max_length else self.trained_length
        return min(trained or self.backbone.max_length, self.backbone.max_length)

    def compile_regions(self) -> list[nn.Module]:
        return [*super().compile_regions(), self.lm_head]

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits ``(B, T, vocab)`` of packed (unpadded) token blocks."""
        return self.lm_head(self.backbone.hidden_states(tokens, padding=False), self.backbone.token_embedding.weight)


class MaskedLMPretraining(LanguageModelPretraining):
    """The text denoising autoencoder (BERT): ``select_rate`` of the tokens are selected, of which
    80% are replaced by the mask token, 10% by a random token and 10% kept; the loss is the
    cross-entropy on the selected positions only (0 for a batch where none is selected). Logs
    ``val/mlm_acc`` (masked-token accuracy) and ``val/mlm_ppl`` = exp(masked-token loss), which is
    not comparable with a causal perplexity. It reads the first ``block_size`` tokens of each example.

    Args:
        backbone: a bidirectional ``TextTransformer`` (``causal: false``).
        select_rate: fraction of non-special tokens selected for prediction.
        mask_rate: fraction of the selected tokens replaced by the mask token.
        random_rate: fraction of the selected tokens replaced by a random token (the rest stay).
        special_tokens: read each example as ``<cls>`` + its first ``block_size - 2`` tokens + ``<sep>``
            (BERT), the way text fine-tuning (``TextClassificationDataModule``) wraps every text, so a
            fine-tuned model starts from trained ``<cls>`` / ``<sep>`` embeddings; the last 2 tokens
            of each block are then not read. False: the first ``block_size`` tokens, no special tokens.
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    head_transform = True
    metric_name = "mlm_ppl"

    def __init__(
        self,
        backbone: Backbone,
        select_rate: float = 0.15,
        mask_rate: float = 0.8,
        random_rate: float = 0.1,
        special_tokens: bool = True,
        **kwargs: Any,
    ) -> None:
        if not 0 < select_rate < 1:
            raise ConfigError(f"model.select_rate must be in (0, 1), got {select_rate}")
        if mask_rate < 0 or random_rate < 0 or mask_rate + random_rate > 1:
            raise ConfigError(f"model.mask_rate and model.random_rate must be >= 0 with a sum <= 1, got {mask_rate} and {random_rate}")
        super().__init__(backbone, **kwargs)
        if getattr(backbone, "causal", False):
            raise ConfigError("MaskedLMPretraining needs a bidirectional backbone: set model.backbone.init_args.causal=false")
        self.select_rate, self.mask_rate, self.random_rate = select_rate, mask_rate, random_rate
        self.special_tokens = special_tokens

    def _masking_ids(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokenizer's special ids and the ids random replacements draw from, on ``device``
        (built on first use per device and tokenizer, not every step)."""
        key = (id(self.tokenizer), device)
        if getattr(self, "_masking_key", None) != key:
            special = self.tokenizer.special_ids
            self._masking = torch.tensor(special, device=device), non_special_ids(self.tokenizer.vocab_size, special, device)
            self._masking_key = key
        return self._masking

    def check_data(self, spec: DataSpec) -> None:
        super().check_data(spec)
        if self.special_tokens and spec.max_length is not None and spec.max_length < 3:
            raise ConfigError(f"data.block_size must be >= 3 with model.special_tokens=true (<cls>, a token, <sep>), got {spec.max_length}")

    def context(self, tokens: torch.Tensor) -> torch.Tensor:
        """The ``block_size`` tokens the model reads of examples ``(B, block_size + 1)``: the first
        ``block_size`` (the last is the next example's first), or with ``special_tokens`` the first
        ``block_size - 2`` between ``<cls>`` and ``<sep>``."""
        if not self.special_tokens:
            return tokens[:, :-1]
        cls, sep = (torch.full_like(tokens[:, :1], i) for i in (self.tokenizer.cls_id, self.tokenizer.sep_id))
        return torch.cat([cls, tokens[:, :-3], sep], dim=1)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tokens = self.context(tokens)
        special, replacements = self._masking_ids(tokens.device)
        inputs, labels = mask_tokens(tokens, self.tokenizer.mask_id, special, replacements, generator,
                                     self.select_rate, self.mask_rate, self.random_rate)
        selected = labels != IGNORE_INDEX
        logits = self.lm_head(self.backbone.hidden_states(inputs, padding=False)[selected], self.backbone.token_embedding.weight)
        targets = labels[selected]
        count = selected.sum()
        # sum / count: a batch with no selected token scores 0, not NaN (the mean of nothing), and its
        # zero gradients still reach every parameter (DDP ranks stay in step); no host sync
        loss = F.cross_entropy(logits.float(), targets, reduction="sum") / count.clamp(min=1)
        accuracy = (logits.argmax(-1) == targets).sum() / count.clamp(min=1)
        return loss, {"mlm_acc": accuracy, "count": count}


class CausalLMPretraining(LanguageModelPretraining):
    """Next-token prediction with a causal ``TextTransformer`` (GPT recipe); logs ``val/ppl`` =
    exp(mean next-token loss) and samples text with :meth:`generate` or ``ptft generate``.

    Args:
        backbone: a causal ``TextTransformer`` (``causal: true``).
        **kwargs: the options every task shares (optimizer, lr_scheduler, on_nonfinite, ...): see :class:`PtftTask`.
    """

    def __init__(
        self,
        backbone: Backbone,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, **kwargs)
        if not getattr(backbone, "causal", False):
            raise ConfigError("CausalLMPretraining needs a causal backbone: set model.backbone.init_args.causal=true")

    def loss(self, tokens: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # inputs: the block_size context; targets: the next token at every one of its positions
        logits = self.logits(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        return loss, {"count": torch.tensor(tokens[:, 1:].numel(), device=tokens.device)}

    def encode_prompt(self, text: str) -> list[int]:
        """Ids of a prompt, encoded as training encoded such text (a newline is the end-of-text
        token); an empty prompt is the end-of-text token alone: the start of a text."""
        return self.tokenizer.encode_text(text) or [self.tokenizer.eos_id]

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> list[int]:
        """``max_new_tokens`` ids sampled after ``prompt`` (temperature 0: greedy; ``top_k``: sample
        among the k likeliest). The context is cropped to :attr:`context_length` (the trained
        ``data.block_size``, every position of which training scores)."""
        if temperature < 0 or (top_k is not None and top_k < 1):
            raise ConfigError(f"temperature must be >= 0 and top_k >= 1, got {temperature} and {top_k}")
        was_training = self.training
        self.eval()
        tokens = torch.tensor([prompt], dtype=torch.long, device=self.device)
        vocab = self.tokenizer.vocab_size if self.tokenizer is not None else self.backbone.vocab_size
        for _ in range(max_new_tokens):
            logits = self.logits(tokens[:, -self.context_length:])[0, -1, :vocab].float()
            if temperature == 0:
                next_id = logits.argmax()
            else:
                logits = logits / temperature
                if top_k is not None:
                    threshold = torch.topk(logits, min(top_k, vocab)).values[-1]
                    logits = logits.masked_fill(logits < threshold, -math.inf)
                next_id = torch.multinomial(logits.softmax(-1), 1, generator=generator)[0]
            tokens = torch.cat([tokens, next_id.view(1, 1)], dim=1)
        self.train(was_training)
        return tokens[0, len(prompt):].tolist()


def load_causal_lm(path: str | os.PathLike) -> CausalLMPretraining:
    """A causal LM with its tokenizer, rebuilt from a ``CausalLMPretraining`` checkpoint (read once, safely)."""
    if Path(path).is_dir():
        raise ConfigError(f"{path} is an export folder: generation needs the .ckpt of a CausalLMPretraining run (an export holds the backbone only)")
    checkpoint = load_checkpoint(path)
    pretrained = pretrained_in_checkpoint(checkpoint, path)
    if pretrained.task != f"{CausalLMPretraining.__module__}.{CausalLMPretraining.__qualname__}":
        raise ConfigError(f"{path} was written by {pretrained.task or 'something other than ptft'}, not CausalLMPretraining: only causal LMs generate text")
    if pretrained.tokenizer is None:
        raise ConfigError(f"{path} has no tokenizer (checkpoint['ptft']['tokenizer'])")
    model = CausalLMPretraining(build_loaded(pretrained.specs["backbone"], pretrained.states["backbone"], path))
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    model.tokenizer = TextTokenizer.from_json(pretrained.tokenizer, str(path))
    model.trained_length = checkpoint["ptft"].get("max_length")  # absent in older checkpoints: the backbone's
    return model.eval()
