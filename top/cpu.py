"""What the CPU can do for INT8 and bfloat16: its model name, its ISA flags, and whether it has an INT8
dot-product instruction and bfloat16 matrix instructions.

x86 CPUs without VNNI (or AMX) multiply unsigned 8-bit activations by signed 8-bit weights with an instruction
whose 16-bit intermediate sums saturate, so an INT8 model with full-range weights loses accuracy there. ONNX
Runtime's INT8 models (``top.peers.quantize_ort``) get 7-bit weights on such CPUs, as ONNX Runtime recommends.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import Any

# Instructions that add u8 x s8 products in 32 bits, with no 16-bit intermediate to saturate.
INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Instructions that multiply bfloat16 matrices; without them oneDNN converts to float32 and back around each product.
BFLOAT16_MATMUL_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})
# The vector and matrix extensions that decide INT8 and bfloat16 speed, as a record lists them.
REPORTED_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@functools.cache
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU's model name and ISA flags from /proc/cpuinfo (no flags where it cannot be read)."""
    model, flags = platform.processor(), frozenset[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def int8_weights_saturate() -> bool:
    """Whether full-range INT8 weights risk saturated dot products here: an x86 CPU with none of the INT8
    dot-product flags, or whose flags cannot be read (7-bit weights are then the safe choice)."""
    if platform.machine().lower() not in X86_MACHINES:
        return False
    return not cpu_model_and_flags()[1] & INT8_DOT_PRODUCT_FLAGS


def has_bfloat16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 natively (not x86: assumed so, as its flags say nothing of it)."""
    if platform.machine().lower() not in X86_MACHINES:
        return True
    return bool(cpu_model_and_flags()[1] & BFLOAT16_MATMUL_FLAGS)


def cpu_description(threads: int) -> dict[str, Any]:
    """The CPU a figure came from, as records keep it: model, logical cores, the reported ISA flags and the threads
    torch used. A speed or a training time means little without it, since hosts of one name differ in all four."""
    model, flags = cpu_model_and_flags()
    return {
        "cpu": model,
        "logical_cores": os.cpu_count(),
        "isa_flags": sorted(flag for flag in REPORTED_ISA_FLAGS if flag in flags),
        "threads": threads,
    }
