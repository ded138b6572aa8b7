"""Named or indexed columns of the rows of TSV / CSV / JSONL files, with the line of each row."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ptft.data.text_files import read_text, split_lines
from ptft.errors import ConfigError


class Row(NamedTuple):
    """The wanted ``values`` of one row, in the order of the columns asked for, and its ``line``
    (1-based) in the file, for error messages."""

    line: int
    values: tuple[str, ...]


def read_columns(path: Path, columns: Sequence[str | int], keys: Sequence[str], has_header: bool, delimiter: str | None) -> list[Row]:
    """The ``columns`` of every row of a TSV/CSV (by extension or ``delimiter``) or JSONL file.

    Columns are names (with a header / JSON keys) or 0-based indices; ``keys`` are the config keys
    that set them (``data.text_column``), named by errors. Other columns are ignored and blank
    lines skipped; a missing column or a row without the needed fields is an error naming the
    file and line. A JSON null reads as an empty string."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        return _json_rows(path, text, columns, keys)
    if delimiter is None:
        delimiter = "\t" if path.suffix in (".tsv", ".tab") else ","
    if not has_header:  # an index given on the command line arrives as a string ('0')
        columns = [int(c) if isinstance(c, str) and c.isdigit() else c for c in columns]
        names = [key for key, c in zip(keys, columns) if isinstance(c, str)]
        if names:
            raise ConfigError(f"{path}: with data.has_header=false, {' and '.join(dict.fromkeys(names))} must be column indices")
    # TSV: tabs separate fields and quotes are text (SST-2 has both); CSV: standard quoting
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL)
    indices = None if has_header else list(columns)
    rows: list[Row] = []
    for row in reader:
        if not row:
            continue
        if indices is None:
            indices = _header_indices(path, row, columns, keys)
            continue
        if max(indices) >= len(row):
            raise ConfigError(f"{path}:{reader.line_num}: {len(row)} field(s), but column {max(indices)} is needed (delimiter {delimiter!r})")
        rows.append(Row(reader.line_num, tuple(row[i] for i in indices)))
    return rows


def _header_indices(path: Path, header: list[str], columns: Sequence[str | int], keys: Sequence[str]) -> list[int]:
    """The index of each column in ``header`` (an index stays as it is)."""
    header = [name.strip() for name in header]
    missing = {str(c): key for c, key in zip(columns, keys) if isinstance(c, str) and c not in header}
    if missing:
        raise ConfigError(f"{path}: no column {', '.join(missing)} in the header ({', '.join(header)}); "
                          f"set {' / '.join(dict.fromkeys(missing.values()))}")
    return [header.index(c) if isinstance(c, str) else c for c in columns]


def _json_rows(path: Path, text: str, columns: Sequence[str | int], keys: Sequence[str]) -> list[Row]:
    rows: list[Row] = []
    for number, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}:{number}: not a JSON object ({error.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: not a JSON object (a {type(record).__name__})")
        missing = {str(c): key for c, key in zip(columns, keys) if str(c) not in record}
        if missing:
            raise ConfigError(f"{path}:{number}: no key {', '.join(map(repr, missing))}; set {' / '.join(dict.fromkeys(missing.values()))}")
        rows.append(Row(number, tuple("" if record[str(c)] is None else str(record[str(c)]) for c in columns)))
    return rows
