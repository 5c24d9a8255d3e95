"""Fingerprints of training runs: a killed stage resumes the *same* run from its checkpoint, never a stale one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc

CHUNK = 1 << 20


def fingerprint(payload: dict[str, Any]) -> str:
    """A short, stable hash of everything (JSON-serialisable) that decides a run."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def directory_digest(directory: str | Path) -> str:
    """sha256 over a directory's file names and bytes: identifies a saved model (e.g. the teacher) by content."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(directory).as_posix().encode())
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()


def dataset_digest(split: datasets.Dataset, columns: Sequence[str]) -> str:
    """sha256 over the rows of a split's ``columns`` in order (each row's length and values): identifies a tokenized
    split by content, whichever file or selection holds it."""
    digest = hashlib.sha256()
    view = split.with_format("arrow")
    for name in columns:
        if name not in split.column_names:
            continue
        column = view[name]
        digest.update(f"{name}:{column.type}".encode())
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            digest.update(pc.list_value_length(column).to_numpy().tobytes())
            column = pc.list_flatten(column)
        digest.update(column.to_numpy().tobytes())
    return digest.hexdigest()
