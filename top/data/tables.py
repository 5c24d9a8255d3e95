"""Reading delimited text files line by line, with errors that name the file and line.

GLUE TSVs must be split on tabs with no quoting at all (MRPC and QNLI have fields that begin with a quote
character, and a CSV reader would merge rows), so TSV is read by hand. CSV goes through the csv module.
Both accept gzipped files and a UTF-8 byte-order mark (MRPC's header has one).
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from top.errors import DataError


@dataclass(frozen=True)
class Row:
    line: int
    fields: dict[str, str]


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="\n")
    return path.open("r", encoding="utf-8-sig", newline="\n")


def table_format(path: Path) -> str:
    """'tsv' or 'csv', from the file name (a trailing .gz is allowed)."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".tsv") or name.endswith(".txt"):
        return "tsv"
    if name.endswith(".csv"):
        return "csv"
    raise DataError(f"{path}: cannot tell the format from the name; use .tsv, .csv, .tsv.gz or .csv.gz")


def read_rows(path: Path, *, has_header: bool = True) -> Iterator[Row]:
    """Yield the data rows of ``path`` as column-name -> value maps.

    Header-less files get column names "0", "1", ...; every row must have as many columns as the first.
    """
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        if table_format(path) == "csv":
            yield from _read_csv(path, has_header)
        else:
            yield from _read_tsv(path, has_header)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None


def _read_tsv(path: Path, has_header: bool) -> Iterator[Row]:
    with _open_text(path) as handle:
        columns: list[str] | None = None
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").removesuffix("\r")
            if not line:
                raise DataError(f"{path}:{line_number}: empty line")
            fields = line.split("\t")
            if columns is None:
                columns = _columns(path, fields, has_header)
                if has_header:
                    continue
            yield _row(path, line_number, columns, fields, "tab-separated")


def _read_csv(path: Path, has_header: bool) -> Iterator[Row]:
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        columns: list[str] | None = None
        try:
            for fields in reader:
                if columns is None:
                    columns = _columns(path, fields, has_header)
                    if has_header:
                        continue
                yield _row(path, reader.line_num, columns, fields, "comma-separated")
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def _columns(path: Path, first_row: list[str], has_header: bool) -> list[str]:
    if not has_header:
        return [str(index) for index in range(len(first_row))]
    names = [name.strip() for name in first_row]
    if len(set(names)) != len(names):
        raise DataError(f"{path}:1: duplicate column names in header {names}")
    return names


def _row(path: Path, line_number: int, columns: list[str], fields: list[str], kind: str) -> Row:
    if len(fields) != len(columns):
        raise DataError(f"{path}:{line_number}: expected {len(columns)} {kind} columns, found {len(fields)}")
    return Row(line_number, dict(zip(columns, fields, strict=True)))
