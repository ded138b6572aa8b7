"""What a model needs to know about its data, in one object that flows from data to model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ptft.data.audio_features import LogMelSettings
    from ptft.data.tokenizer import TextTokenizer


@dataclass
class DataSpec:
    """The description a DataModule gives of its data (``datamodule.spec``); the ``ptft`` CLI
    links it into the model as ``model.data_spec``, and a task started from Python reads it from
    ``trainer.datamodule``. Data flows one way: the DataModule fills its spec, models only read it.

    Args:
        input_kind: what the batches hold: ``image``, ``text`` or ``audio``; a backbone of another
            ``input_kind`` is refused.
        num_classes: number of classes of a labelled data set.
        label_names: the class names in label-id order (saved in checkpoints).
        image_size: side of the square images.
        tokenizer: the tokenizer of text data, or the character vocabulary of transcripts (speech). A DataModule that trains its tokenizer fills it in
            ``prepare_data`` / ``setup``, so tasks read it from their ``setup`` on.
        max_length: longest token sequence a batch holds (text; a seq2seq model's source).
        max_target_length: longest target token sequence a batch holds (seq2seq text).
        extra_references: seq2seq text: val/test examples carry reference texts besides their
            target (``reference_columns``), so outputs are also scored against the target alone.
        audio: how speech waveforms become log-mel frames (saved in checkpoints and exports).
        views: the view layout of multi-view train batches, ``(global views, local views)``
            (``data.views``, :class:`ptft.data.MultiView`): a train batch is then ``(views, labels)``
            with ``views`` a list of the global views, then the local ones. None: single-view
            ``(images, labels)`` batches. Validation, test and feature batches are always single-view.
        view_sizes: ``(global side, local side)`` of multi-view batches (None when single-view).
    """

    input_kind: str
    num_classes: int | None = None
    label_names: list[str] | None = None
    image_size: int | None = None
    tokenizer: TextTokenizer | None = field(default=None, repr=False)
    max_length: int | None = None
    max_target_length: int | None = None
    extra_references: bool = False
    audio: LogMelSettings | None = None
    views: tuple[int, int] | None = None
    view_sizes: tuple[int, int] | None = None
