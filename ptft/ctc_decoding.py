"""Turning CTC log-probabilities into character ids: greedy (best path) and beam search."""

from __future__ import annotations

import importlib.util

from typing import TYPE_CHECKING

import torch

from ptft.errors import ConfigError

if TYPE_CHECKING:
    from ptft.data.tokenizer import TextTokenizer


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int) -> list[list[int]]:
    """Best path of each utterance ``(B, T, V)`` over its first ``lengths[b]`` frames: the most
    likely label per frame, repeats merged, blanks removed."""
    best = log_probs.argmax(-1).cpu()
    decoded = []
    for path, length in zip(best, lengths.tolist()):
        path = torch.unique_consecutive(path[:length])
        decoded.append(path[path != blank].tolist())
    return decoded


def transcript(vocabulary: TextTokenizer, ids: list[int]) -> str:
    """The text of decoded ids: special tokens other than the unknown one (never in a transcript) dropped."""
    unused = set(vocabulary.special_ids) - {vocabulary.unk_id}
    return vocabulary.decode([i for i in ids if i not in unused]).strip()


class BeamSearchDecoder:
    """CTC prefix beam search without a language model (torchaudio's ``ctc_decoder``, which needs
    the ``flashlight-text`` package: ``pip install 'ptft[beam]'``).

    Args:
        tokens: the vocabulary's tokens in id order.
        blank: id of the CTC blank.
        beam_size: hypotheses kept per frame.
    """

    def __init__(self, tokens: list[str], blank: int, beam_size: int = 20) -> None:
        if importlib.util.find_spec("flashlight") is None:  # torchaudio's ctc_decoder needs it
            raise ConfigError("CTC beam search needs flashlight-text: pip install 'ptft[beam]' (or use model.decoder=greedy)")
        from torchaudio.models.decoder import ctc_decoder

        # flashlight names tokens by string: give every id a unique name without spaces
        names = [f"#{i}" for i in range(len(tokens))]
        self.silence = f"#{tokens.index(' ')}" if " " in tokens else names[blank]
        self.decoder = ctc_decoder(lexicon=None, tokens=names, blank_token=names[blank], sil_token=self.silence,
                                   beam_size=beam_size, word_score=0.0, log_add=True)
        self.blank = blank

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        hypotheses = self.decoder(log_probs.float().cpu().contiguous(), lengths.cpu().int())
        decoded = []
        for best in (h[0] for h in hypotheses):
            ids = best.tokens.tolist()
            decoded.append([i for i in ids if i != self.blank])
        return decoded
