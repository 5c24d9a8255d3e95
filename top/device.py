"""Where a stage runs: one rule for every stage, so 'auto' means the same thing everywhere."""

from __future__ import annotations

import torch

from top.errors import ParamsError


def resolve_device(requested: str, key: str) -> str:
    """'auto' picks CUDA when present; asking for CUDA without one is an error, not a silent CPU run."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"{key} is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
