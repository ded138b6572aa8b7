"""Streaming UTF-8 reading: bounded memory, exact byte offsets of bad bytes."""

import subprocess
import sys

import pytest

import ptft.data.text_files as text_files
from ptft.data.text_files import read_lines
from ptft.errors import ConfigError
from conftest import make_corpus


def test_lines_come_back_without_newlines_and_crlf(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\r\ntwo\n\nthree")
    assert list(read_lines(path)) == [("one", True), ("two", True), ("", True), ("three", True)]


def test_an_over_long_line_is_streamed_in_pieces_cut_at_spaces_or_character_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(text_files, "CHUNK_BYTES", 16)
    monkeypatch.setattr(text_files, "MAX_PIECE_BYTES", 32)
    line = " ".join(["wörd"] * 40) + "ééééééééééééééééééééééééé"
    path = tmp_path / "long.txt"
    path.write_text(line + "\nnext\n", encoding="utf-8")
    pieces = list(read_lines(path))
    assert len(pieces) > 5 and all(len(text.encode()) <= 32 for text, _ in pieces)
    assert "".join(text for text, _ in pieces[:-1]) == line and pieces[-1] == ("next", True)
    assert [ends for _, ends in pieces[:-1]] == [False] * (len(pieces) - 2) + [True]
    assert all(text.startswith(" ") for text, _ in pieces[1:7])  # cut before a space: it stays with the next word


# Peak memory (KB) of tokenizing each corpus, each in a child forked once the libraries are imported.
TOKENIZE_PEAK = """
import os, resource, sys
from pathlib import Path
from ptft.data.tokenizer import train_tokenizer
from ptft.data.wikitext import tokenize_file
tokenizer = train_tokenizer([Path(sys.argv[1]).read_text().splitlines()[:2000]], vocab_size=300)
for corpus in sys.argv[1:]:
    if os.fork() == 0:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tokenize_file(Path(corpus), tokenizer, Path(corpus + ".bin"))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, flush=True)
        os._exit(0)
    os.wait()
"""


def test_a_corpus_on_one_line_costs_no_more_memory_than_with_newlines(tmp_path):
    lines = make_corpus(tmp_path / "lines.txt", lines=25_000)  # 2 MB
    one_line = tmp_path / "one_line.txt"
    one_line.write_text(lines.read_text().replace("\n", " ") + "\n")
    result = subprocess.run([sys.executable, "-c", TOKENIZE_PEAK, str(lines), str(one_line)], capture_output=True, text=True, check=True)
    with_newlines, on_one_line = map(int, result.stdout.split())
    assert on_one_line < 2 * with_newlines + 32_000, (on_one_line, with_newlines)  # was 4x: 350 MB for its one 2 MB piece


def test_non_utf8_bytes_name_the_file_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nsecond caf".encode() + "é".encode("latin-1") + b"\n")
    with pytest.raises(ConfigError, match=r"latin1.txt is not UTF-8 text: byte offset 21 \(0xe9\)"):
        list(read_lines(path))
