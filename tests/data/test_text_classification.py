"""TextClassificationDataModule: TSV / CSV / JSONL, label maps, bad rows."""

import json

import pytest

from conftest import make_sentiment_tsv
from helpers import CONFIGS
from ptft.cli import run_cli
from ptft.data import TextClassificationDataModule
from ptft.errors import ConfigError, MissingPathError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sst(tmp_path):
    for name, rows in (("train.tsv", 60), ("dev.tsv", 20), ("test.tsv", 20)):
        make_sentiment_tsv(tmp_path / "sst" / name, rows, seed=len(name))
    return tmp_path / "sst"


def test_tsv_batches_are_cls_text_sep_padded_and_labels_map_to_ids(tmp_path):
    dm = TextClassificationDataModule(root=str(sst(tmp_path)), batch_size=8, vocab_size=300)
    assert dm.spec.num_classes == 2 and dm.spec.label_names == ["0", "1"]
    dm.setup("fit")
    tokens, labels = next(iter(dm.val_dataloader()))
    tok = dm.tokenizer
    assert tokens.shape[0] == 8 and (tokens[:, 0] == tok.cls_id).all() and labels.tolist() == [int(r[1]) for r in dm.rows["val"][:8]]
    first = tokens[0][tokens[0] != tok.pad_id].tolist()
    assert first[-1] == tok.sep_id and tok.decode(first[1:-1]) == dm.rows["val"][0][0]


def test_csv_with_quotes_and_extra_columns_and_jsonl_with_named_labels(tmp_path):
    write(tmp_path / "c" / "train.csv", 'id,text,label,source\n1,"good, really",pos,a\n2,bad,neg,b\n3,"so ""fine""",pos,c\n')
    write(tmp_path / "c" / "val.csv", "id,text,label,source\n4,meh,neg,d\n")
    dm = TextClassificationDataModule(root=str(tmp_path / "c"), train_file="train.csv", val_file="val.csv", test_file=None,
                                      text_column="text", label_column="label", vocab_size=300)
    assert dm.label_names == ["neg", "pos"] and dm.rows["train"][0] == ("good, really", "pos") and dm.rows["train"][2][0] == 'so "fine"'
    lines = [json.dumps({"review": t, "stars": s}) for t, s in (("great", "5"), ("awful", "1"), ("fine", "10"))]
    write(tmp_path / "j" / "train.jsonl", "\n".join(lines) + "\n")
    write(tmp_path / "j" / "val.jsonl", lines[0] + "\n")
    dm = TextClassificationDataModule(root=str(tmp_path / "j"), train_file="train.jsonl", val_file="val.jsonl", test_file=None,
                                      text_column="review", label_column="stars")
    assert dm.label_names == ["1", "5", "10"]  # integer labels in numeric order


def test_headerless_files_take_column_indices(tmp_path):
    write(tmp_path / "h" / "train.tsv", "1\tnice one\n0\tnope\n")
    write(tmp_path / "h" / "val.tsv", "0\tno\n")
    dm = TextClassificationDataModule(root=str(tmp_path / "h"), train_file="train.tsv", val_file="val.tsv", test_file=None,
                                      has_header=False, text_column=1, label_column=0)
    assert dm.rows["train"] == [("nice one", "1"), ("nope", "0")]


def test_absolute_file_paths_need_no_root_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PTFT_DATA", raising=False)
    root = sst(tmp_path)
    dm = TextClassificationDataModule(root="sst2", train_file=str(root / "train.tsv"), val_file=str(root / "dev.tsv"), test_file=None)
    assert dm.files == {"train": root / "train.tsv", "val": root / "dev.tsv"} and len(dm.rows["train"]) == 60
    with pytest.raises(MissingPathError, match=r"^data.root: sst2 is not a folder$"):
        TextClassificationDataModule(root="sst2", train_file=str(root / "train.tsv"), val_file="dev.tsv", test_file=None)


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # built in this process, under pytest's argv
def test_column_indices_work_on_the_command_line(tmp_path):
    write(tmp_path / "h" / "train.tsv", "1\tnice one\n0\tnope\n")
    write(tmp_path / "h" / "val.tsv", "0\tno\n")
    cli = run_cli(["-c", str(CONFIGS / "finetune/sst2_scratch.yaml"), f"--data.root={tmp_path / 'h'}", "--data.val_file=val.tsv",
                   "--data.test_file=null", "--data.has_header=false", "--data.text_column=1", "--data.label_column=0",
                   "--trainer.logger=false"], run=False)
    assert cli.datamodule.rows["train"] == [("nice one", "1"), ("nope", "0")]


def test_test_labels_never_seen_in_training_are_refused(tmp_path):
    root = sst(tmp_path)
    with open(root / "test.tsv", "a") as file:
        file.write("an odd one\t2\n")
    with pytest.raises(ConfigError, match=r"data.test_file: .*test.tsv has label\(s\) '2' never seen in .*train.tsv \(training labels: '0', '1'\)"):
        TextClassificationDataModule(root=str(root))


def test_malformed_rows_name_their_line(tmp_path):
    root = sst(tmp_path)
    with open(root / "dev.tsv", "a") as file:
        file.write("a row without a label\n")
    with pytest.raises(ConfigError, match=r"dev.tsv:22: 1 field\(s\), but column 1 is needed"):
        TextClassificationDataModule(root=str(root))
    write(root / "bad.jsonl", '{"sentence": "ok", "label": "1"}\n{"sentence": "broken"\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not a JSON object"):
        TextClassificationDataModule(root=str(root), train_file="bad.jsonl")
    with pytest.raises(ConfigError, match=r"no column review in the header \(sentence, label\)"):
        TextClassificationDataModule(root=str(root), text_column="review")


def test_non_utf8_label_file_names_the_byte_offset(tmp_path):
    root = sst(tmp_path)
    (root / "latin.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(ConfigError, match=r"latin.tsv is not UTF-8 text: byte offset 18"):
        TextClassificationDataModule(root=str(root), val_file="latin.tsv")


def test_a_character_tokenizer_and_a_too_small_bpe(tmp_path):
    root = sst(tmp_path)
    with pytest.raises(ConfigError, match=r"data.vocab_size 100 is below the smallest byte-level BPE, 262"):
        TextClassificationDataModule(root=str(root), vocab_size=100)
    with pytest.warns(UserWarning, match="upper bound for tokenizer_kind char"):
        dm = TextClassificationDataModule(root=str(root), batch_size=8, tokenizer_kind="char", vocab_size=500, min_frequency=1)
        dm.setup("fit")
    text = dm.rows["val"][0][0]
    assert dm.tokenizer.decode(dm.tokenizer.encode_batch([text])[0]) == text
