"""Seq2SeqDataModule: parallel files and tables, <cls>/<sep> wrapping, truncation, bad input, bucketed training batches."""

import csv
import json
import pickle

import pytest

from conftest import real_data
from ptft.data import Seq2SeqDataModule
from ptft.data.seq2seq_batch import Seq2SeqBatch
from ptft.data.token_batches import encode_texts
from ptft.data.tokenizer import train_tokenizer
from ptft.errors import ConfigError, MissingPathError

SUBJECTS = [("a dog", "ein Hund"), ("the cat", "die Katze"), ("two men", "zwei Männer"), ("a small girl", "ein kleines Mädchen")]
VERBS = [("runs", "rennt"), ("sleeps", "schläft"), ("sings", "singt")]
SMALL = {"vocab_size": 300, "min_frequency": 1}


def make_pairs(n, offset=0):
    """English / German pairs of 2 to 9 words."""
    pairs = []
    for i in range(offset, offset + n):
        (en, de), (ev, dv) = SUBJECTS[i % 4], VERBS[i // 4 % 3]
        pairs.append((f"{en} {ev}" + " again" * (i % 7), f"{de} {dv}" + " wieder" * (i % 7)))
    return pairs


def write_parallel(folder, splits=(("train", 48), ("val", 12), ("test_2016_flickr", 8))):
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in splits:
        pairs = make_pairs(n, offset=len(name))
        (folder / f"{name}.en").write_text("".join(en + "\n" for en, _ in pairs), encoding="utf-8")
        (folder / f"{name}.de").write_text("".join(de + "\n" for _, de in pairs), encoding="utf-8")
    return folder


def write_table(path, rows, header=("source", "target")):
    """``rows`` (tuples in ``header`` order) as JSONL, TSV or CSV by the extension of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".tsv":  # quotes are text in TSV
        path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]), encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as file:
            csv.writer(file).writerows([header, *rows])
    return path


def table_module(root, ext, **kwargs):
    args = {"root": str(root), "train_file": f"train.{ext}", "val_file": f"val.{ext}", "test_file": None,
            "src_suffix": None, "tgt_suffix": None, **SMALL, **kwargs}
    return Seq2SeqDataModule(**args)


def test_parallel_files_give_line_aligned_pairs_in_wrapped_padded_batches(tmp_path):
    dm = Seq2SeqDataModule(root=str(write_parallel(tmp_path / "m")), batch_size=5, **SMALL)
    assert [(p.source, p.target) for p in dm.pairs["val"]] == make_pairs(12, offset=3)
    assert dm.spec.input_kind == "text" and dm.spec.max_length == 128 and dm.spec.max_target_length == 128
    dm.setup("fit")
    assert dm.spec.tokenizer is dm.tokenizer is not None
    batch = next(iter(dm.val_dataloader()))
    tok = dm.tokenizer
    assert isinstance(batch, Seq2SeqBatch) and batch.source.shape[0] == batch.target.shape[0] == 5
    assert batch.references == [[de] for _, de in make_pairs(5, offset=3)]  # file order
    for ids, (en, de) in zip(zip(batch.source.tolist(), batch.target.tolist()), make_pairs(5, offset=3)):
        for row, text in zip(ids, (en, de)):
            kept = [i for i in row if i != tok.pad_id]
            assert kept[0] == tok.cls_id and kept[-1] == tok.sep_id and tok.decode(kept[1:-1]) == text
            assert row[len(kept):] == [tok.pad_id] * (len(row) - len(kept))  # padded on the right
    assert [len(b.references) for b in dm.test_dataloader()] == [5, 3] and dm.predict_dataloader().dataset is dm.datasets["test"]
    assert dm.truncated == {split: {"source": 0, "target": 0} for split in ("train", "val", "test")}


@pytest.mark.parametrize("ext", ["jsonl", "tsv", "csv"])
def test_tables_give_pairs_and_extra_references_after_the_target(tmp_path, ext):
    header = ("id", "text", "summary", "ann0", "ann1")
    train = [(str(i), en, de) for i, (en, de) in enumerate(make_pairs(20))]
    write_table(tmp_path / f"train.{ext}", train, header[:3])
    write_table(tmp_path / f"val.{ext}", [("0", 'a "quoted", text', "eins", "one", ""), ("1", "b", "zwei", "two", "deux")], header)
    dm = table_module(tmp_path, ext, source_column="text", target_column="summary", reference_columns=["ann0", "ann1"])
    assert [(p.source, p.target) for p in dm.pairs["train"]] == make_pairs(20)
    assert [p.references for p in dm.pairs["train"]] == [[de] for _, de in make_pairs(20)]  # training reads no extra references
    assert dm.pairs["val"][0].source == 'a "quoted", text'
    dm.setup("validate")
    assert next(iter(dm.val_dataloader())).references == [["eins", "one"], ["zwei", "two", "deux"]]  # an empty reference is left out
    assert dm.spec.extra_references and not table_module(tmp_path, ext, source_column="text", target_column="summary").spec.extra_references


def test_headerless_tables_take_column_indices(tmp_path):
    (tmp_path / "train.tsv").write_text("x\ta dog\tein Hund\ny\tthe cat\tdie Katze\n", encoding="utf-8")
    (tmp_path / "val.tsv").write_text("z\ttwo men\tzwei Männer\tbeide\n", encoding="utf-8")
    dm = table_module(tmp_path, "tsv", has_header=False, source_column="1", target_column=2, reference_columns=[3])
    assert [(p.source, p.references) for p in dm.pairs["train"]] == [("a dog", ["ein Hund"]), ("the cat", ["die Katze"])]
    assert dm.pairs["val"][0].references == ["zwei Männer", "beide"]


def test_encode_texts_wraps_and_truncates_keeping_the_final_sep():
    tok = train_tokenizer(["abcdef"], kind="char", vocab_size=20, min_frequency=1)
    ids, truncated, longest = encode_texts(tok, ["ab", "abcdef"], max_length=5)
    a, b = tok.encode_batch(["ab", "abc"])
    assert ids == [[tok.cls_id, *a, tok.sep_id], [tok.cls_id, *b, tok.sep_id]] and truncated == 1 and longest == 8


def test_truncation_is_counted_per_split_and_side_and_reported(tmp_path):
    dm = Seq2SeqDataModule(root=str(write_parallel(tmp_path / "m")), max_source_length=6, max_target_length=40,
                           tokenizer_kind="char", vocab_size=60, min_frequency=1)
    with pytest.warns(UserWarning, match=r"^data: 48 of 48 train sources longer than data.max_source_length=6 tokens were truncated \(longest 55\); "
                                         r"23 of 48 train targets longer than data.max_target_length=40 tokens were truncated \(longest 69\)$"):
        dm.setup("fit")
    assert dm.truncated == {"train": {"source": 48, "target": 23}, "val": {"source": 12, "target": 7}, "test": {"source": 8, "target": 4}}
    batch = next(iter(dm.train_dataloader()))
    assert batch.source.shape[1] == 6 and (batch.source[:, -1] == dm.tokenizer.sep_id).all()
    assert batch.target.shape[1] <= 40


def test_only_newlines_end_parallel_lines(tmp_path):
    root = write_parallel(tmp_path / "m")
    (root / "val.en").write_bytes("\ufeffa dog\u2028runs\x0c\r\nthe cat\n".encode())  # a BOM, a CRLF, characters str.splitlines splits at
    (root / "val.de").write_text("ein Hund rennt\ndie Katze", encoding="utf-8")  # no final newline
    dm = Seq2SeqDataModule(root=str(root), **SMALL)
    assert [(p.source, p.target) for p in dm.pairs["val"]] == [("a dog\u2028runs", "ein Hund rennt"), ("the cat", "die Katze")]


def test_parallel_files_of_different_lengths_name_both_files_and_counts(tmp_path):
    root = write_parallel(tmp_path / "m")
    with open(root / "val.de", "a", encoding="utf-8") as file:
        file.write("eine Zeile zu viel\n")
    with pytest.raises(ConfigError, match=r"^data.val_file: \S+/val.en has 12 lines but \S+/val.de has 13; parallel files need one line per sentence pair$"):
        Seq2SeqDataModule(root=str(root), **SMALL)


def test_empty_pairs_are_refused_naming_file_and_line_or_skipped_and_counted(tmp_path):
    root = write_parallel(tmp_path / "m")
    lines = (root / "train.de").read_text(encoding="utf-8").split("\n")
    lines[4] = "  "
    (root / "train.de").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^\S+/train.de:5: empty target; set data.skip_empty: true to skip such pairs$"):
        Seq2SeqDataModule(root=str(root), **SMALL)
    with pytest.warns(UserWarning, match=r"^data: skipped 1 of 48 train pairs with an empty source or target \(data.skip_empty=true\)$"):
        dm = Seq2SeqDataModule(root=str(root), skip_empty=True, **SMALL)
    assert dm.skipped == {"train": 1, "val": 0, "test": 0} and len(dm.pairs["train"]) == 47
    write_table(tmp_path / "train.jsonl", [("a dog", "ein Hund"), ("", "leer")])
    write_table(tmp_path / "val.jsonl", [("a dog", "ein Hund")])
    with pytest.raises(ConfigError, match=r"train.jsonl:2: empty source"):
        table_module(tmp_path, "jsonl")


def test_bad_tables_name_the_file_and_line(tmp_path):
    write_table(tmp_path / "train.csv", [("a dog", "ein Hund")])
    write_table(tmp_path / "val.csv", [("a dog", "ein Hund", "Hund")], ("source", "target", "ann0"))
    with pytest.raises(ConfigError, match=r"^\S+/train.csv: no column summary in the header \(source, target\); set data.target_column$"):
        table_module(tmp_path, "csv", target_column="summary")
    with pytest.raises(ConfigError, match=r"^\S+/val.csv: no column ann1 in the header \(source, target, ann0\); set data.reference_columns$"):
        table_module(tmp_path, "csv", reference_columns=["ann0", "ann1"])
    with open(tmp_path / "train.csv", "a", encoding="utf-8") as file:
        file.write("only a source\n")
    with pytest.raises(ConfigError, match=r"^\S+/train.csv:3: 1 field\(s\), but column 1 is needed \(delimiter ','\)$"):
        table_module(tmp_path, "csv")
    write_table(tmp_path / "val.jsonl", [("a dog", "ein Hund")])
    for line, message in (('{"source": "a cat"', r"not a JSON object \(.*\)"), ('["a cat", "eine Katze"]', r"not a JSON object \(a list\)"),
                          ('{"source": "a cat", "tgt": "x"}', r"no key 'target'; set data.target_column")):
        (tmp_path / "train.jsonl").write_text('{"source": "a dog", "target": "ein Hund"}\n\n' + line + "\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=rf"^\S+/train.jsonl:3: {message}$"):
            table_module(tmp_path, "jsonl")


def test_missing_files_and_bad_settings_name_their_key(tmp_path):
    root = write_parallel(tmp_path / "m")
    with pytest.raises(MissingPathError, match=r"^data.train_file \+ data.tgt_suffix: \S+/train.fr does not exist or is not a file$"):
        Seq2SeqDataModule(root=str(root), tgt_suffix=".fr")
    with pytest.raises(ConfigError, match=r"must both be set \(parallel files\) or both be null \(tables\), got '.en' and None"):
        Seq2SeqDataModule(root=str(root), tgt_suffix=None)
    with pytest.raises(ConfigError, match=r"data.reference_columns needs table files"):
        Seq2SeqDataModule(root=str(root), reference_columns=["ann0"])
    with pytest.raises(ConfigError, match=r"data.max_source_length and data.max_target_length must be >= 3 .*got 128 and 2"):
        Seq2SeqDataModule(root=str(root), max_target_length=2)
    with pytest.raises(ConfigError, match=r"data.batch_size must be >= 1"):
        Seq2SeqDataModule(root=str(root), batch_size=0)
    with pytest.raises(ConfigError, match=r"data.vocab_size 100 is below the smallest byte-level BPE"):
        Seq2SeqDataModule(root=str(root), vocab_size=100)
    with pytest.raises(ConfigError, match=r"data.test_file is not set, so there is no test split"):
        dm = Seq2SeqDataModule(root=str(root), test_file=None, tokenizer_kind="char", vocab_size=60, min_frequency=1)
        dm.setup("fit")
        dm.test_dataloader()


def test_one_tokenizer_is_trained_on_both_sides_or_a_given_one_is_used(tmp_path):
    root = write_parallel(tmp_path / "m")
    dm = Seq2SeqDataModule(root=str(root), tokenizer_kind="wordpiece", vocab_size=1000, min_frequency=1)
    dm.setup("fit")
    vocab = dm.tokenizer.tokenizer.get_vocab()
    assert {"wieder", "rennt", "again", "sleeps"} <= set(vocab)  # target-only and source-only words (lower-cased)
    dm.tokenizer.save(tmp_path / "tokenizer.json")
    given = Seq2SeqDataModule(root=str(root), tokenizer=str(tmp_path / "tokenizer.json"), vocab_size=1)  # settings of a trained one unused
    assert given.tokenizer.same_as(dm.tokenizer)
    given.setup("fit")
    assert given.tokenizer.same_as(dm.tokenizer) and given.datasets["val"].targets == dm.datasets["val"].targets


def test_training_batches_cover_every_pair_once_per_epoch_grouped_by_length(tmp_path):
    dm = Seq2SeqDataModule(root=str(write_parallel(tmp_path / "m")), batch_size=4, **SMALL)
    dm.setup("fit")
    pad = dm.tokenizer.pad_id
    loader = dm.train_dataloader()
    assert pickle.loads(pickle.dumps(loader.collate_fn)).pad_id == pad  # for worker processes
    batches = list(loader)
    assert len(batches) == 12 and all(len(b.references) == 4 for b in batches)
    assert sorted(r[0] for b in batches for r in b.references) == sorted(de for _, de in make_pairs(48, offset=5))
    lengths = sorted(((b.source != pad).sum(1) + (b.target != pad).sum(1)).tolist() for b in batches)
    # One pool holds the whole epoch, so batches are consecutive runs of the length order.
    assert all(max(a) <= min(b) for a, b in zip(lengths, lengths[1:]))


@pytest.mark.filterwarnings("ignore:data.vocab_size")
def test_real_multi30k_and_aeslc(tmp_path):
    multi30k = real_data("multi30k", "val.de")
    dm = Seq2SeqDataModule(root=str(multi30k), train_file="val", val_file="test_2016_flickr", test_file=None,
                           tokenizer_kind="char", vocab_size=200, batch_size=32)
    assert len(dm.pairs["train"]) == 1014 and len(dm.pairs["val"]) == 1000 and dm.skipped == {"train": 0, "val": 0}
    assert dm.pairs["train"][0].source == "A group of men are loading cotton onto a truck"
    assert dm.pairs["train"][0].target == "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 32 and sum(len(b.references) for b in batches) == 1024  # the last batch padded with repeats
    assert dm.tokenizer.decode(dm.datasets["val"].targets[0][1:-1]) == dm.pairs["val"][0].target
    aeslc = real_data("aeslc", "dev.jsonl")
    with open(aeslc / "dev.jsonl", encoding="utf-8") as file:
        (tmp_path / "dev.jsonl").write_text("".join(next(file) for _ in range(200)), encoding="utf-8")
    dm = Seq2SeqDataModule(root=str(tmp_path), train_file="dev.jsonl", val_file="dev.jsonl", test_file=None, src_suffix=None,
                           tgt_suffix=None, source_column="email_body", target_column="subject_line",
                           reference_columns=["ann0", "ann1", "ann2"], max_source_length=64, max_target_length=16, vocab_size=400)
    assert len(dm.pairs["val"]) == 200 and 2 <= min(len(p.references) for p in dm.pairs["val"]) and max(len(p.references) for p in dm.pairs["val"]) == 4
    assert dm.pairs["val"][0].references[1:] == ["meeting confimation - tues, 8/10", "meeting confirmation", "meeting confirmed"]
    with pytest.warns(UserWarning, match=r"data: \d+ of 200 train sources longer than data.max_source_length=64"):
        dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch.source.shape == (64, 64) and batch.target.shape[1] <= 16 and batch.references[0][0] == dm.pairs["val"][0].target
