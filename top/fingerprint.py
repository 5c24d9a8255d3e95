"""Fingerprints of training runs: a killed stage resumes the *same* run from its checkpoint, never a stale one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

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
