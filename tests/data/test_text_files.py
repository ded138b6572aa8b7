"""Streaming UTF-8 reading: bounded memory, exact byte offsets of bad bytes."""

import pytest

import ptft.data.text_files as text_files
from ptft.data.text_files import read_lines
from ptft.errors import ConfigError


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


def test_non_utf8_bytes_name_the_file_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nsecond caf".encode() + "é".encode("latin-1") + b"\n")
    with pytest.raises(ConfigError, match=r"latin1.txt is not UTF-8 text: byte offset 21 \(0xe9\)"):
        list(read_lines(path))
