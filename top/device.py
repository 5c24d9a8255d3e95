"""Where a stage runs and in what precision: one rule for every stage, so 'auto' means the same thing everywhere.

On CUDA the training stages compute in bfloat16 under autocast (float32 master weights, so the saved model is
float32); on the CPU they compute in float32, where autocast would only add casts.
"""

from __future__ import annotations

import contextlib

import torch

from top.errors import ParamsError


def resolve_device(requested: str, key: str) -> str:
    """'auto' picks CUDA when present; asking for CUDA without one is an error, not a silent CPU run."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"{key} is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def training_dtype(device: str | torch.device) -> torch.dtype:
    """The dtype a training stage computes in on ``device``: bfloat16 on CUDA, float32 elsewhere."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16' for torch.bfloat16: the form a stage's metrics record."""
    return str(dtype).removeprefix("torch.")


def autocast_for(device: str | torch.device) -> contextlib.AbstractContextManager:
    """The context a training forward runs in: bfloat16 autocast on CUDA, no autocast (a null context) elsewhere."""
    device_type = torch.device(device).type
    dtype = training_dtype(device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)
