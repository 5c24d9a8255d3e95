"""Where a stage runs and in what precision: one rule for every stage, so 'auto' means the same thing everywhere.

A training stage's ``precision`` picks the dtype its forwards compute in, under autocast (float32 master weights,
so the saved model is float32). ``auto`` is bfloat16 on CUDA and float32 on the CPU. ``bfloat16`` on the CPU pays
where the cores multiply bfloat16 natively (AMX, AVX512-BF16), and costs more than float32's step where they do
not (emulated): ``python -m studies.cpu_bf16_cost`` measures it, and a stage warns once when asked for it there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any

import torch

from top.cpu import cpu_description, has_bfloat16_matmul
from top.errors import ParamsError
from top.params import Precision

log = logging.getLogger(__name__)


def resolve_device(requested: str, key: str) -> str:
    """'auto' picks CUDA when present; asking for CUDA without one is an error, not a silent CPU run."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"{key} is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def training_dtype(device: str | torch.device, precision: Precision) -> torch.dtype:
    """The dtype a training stage computes in on ``device``: ``precision``, where 'auto' is bfloat16 on CUDA and
    float32 elsewhere."""
    if precision == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if precision == "bfloat16" and torch.device(device).type == "cpu" and not has_bfloat16_matmul():
        warn_emulated_bfloat16()
    return getattr(torch, precision)


@functools.cache
def warn_emulated_bfloat16() -> None:
    """Once per process: bfloat16 asked for on a CPU that would emulate it, which the user pays for in hours."""
    log.warning(
        "precision is bfloat16 but this CPU has no bfloat16 matrix instructions (AMX or AVX512-BF16): "
        "autocast emulates them, slower than float32 (studies.cpu_bf16_cost); use precision auto or float32 here"
    )


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16' for torch.bfloat16: the form a stage's metrics record."""
    return str(dtype).removeprefix("torch.")


def training_record(device: str | torch.device, precision: Precision) -> dict[str, Any]:
    """What a training stage's metrics say about where it ran: the device type, the compute dtype and the machine
    (the GPU's name, or the CPU's description). A model trained on a GPU host and timed on a CPU host then says so."""
    device = torch.device(device)
    machine = (
        {"gpu": torch.cuda.get_device_name(device)}
        if device.type == "cuda"
        else cpu_description(torch.get_num_threads())
    )
    return {"device": device.type, "dtype": dtype_name(training_dtype(device, precision)), "machine": machine}


def autocast_for(device: str | torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The context a training forward runs in: autocast to the training dtype, or a null context for float32."""
    dtype = training_dtype(device, precision)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
