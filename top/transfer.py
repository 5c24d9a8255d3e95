"""Copying a trained model between hosts without a DVC remote: half precision and shards for the copy.

``python -m top.transfer artifacts/teacher /media/usb/teacher --max-shard-size 200MB`` writes a saved model
directory's floating-point weights in float16, split into safetensors files of at most that size, next to its
config, tokenizer and every other file. The stages load such a directory back in float32
(``top.backbone.load_float32``), so it replaces the original on the CPU host unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from safetensors.torch import load_file

from top.atomic import atomic_directory
from top.device import dtype_name
from top.errors import ModelDirError

WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin")


def load_state_dict(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor a saved model directory holds, from one safetensors file, its shards, or pytorch_model.bin."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("model*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not files:
        raise ModelDirError(f"{model_dir} holds no model weights (model*.safetensors or pytorch_model*.bin)")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state |= load_file(str(file)) if file.suffix == ".safetensors" else torch.load(file, weights_only=True)
    return state


def save_for_transfer(
    model_dir: str | Path,
    output_dir: str | Path,
    max_shard_size: str | int = "200MB",
    dtype: torch.dtype = torch.float16,
) -> list[Path]:
    """Write ``model_dir`` to ``output_dir`` (atomically) with its floating-point weights in ``dtype`` and
    sharded at ``max_shard_size``; return the weight files written. Every other file is copied as it is."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ModelDirError(f"{model_dir} is not a saved model directory: no config.json")
    state = {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor
        for name, tensor in load_state_dict(model_dir).items()
    }
    with atomic_directory(output_dir) as staging:
        for path in model_dir.iterdir():
            if path.is_file() and not any(path.match(pattern) for pattern in WEIGHT_PATTERNS):
                shutil.copy2(path, staging / path.name)
        config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
        config["dtype"] = dtype_name(dtype)  # what is on disk; the stages load float32 regardless
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_torch_state_dict(state, str(staging), max_shard_size=max_shard_size)
    return sorted(Path(output_dir).glob("model*.safetensors"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a saved model directory (artifacts/teacher, artifacts/pruned, ...)")
    parser.add_argument("output_dir", help="where the half-precision, sharded copy goes (replaced if present)")
    parser.add_argument("--max-shard-size", default="200MB", help="largest weight file, e.g. 200MB or 1GB")
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    args = parser.parse_args(argv)
    try:
        files = save_for_transfer(args.model_dir, args.output_dir, args.max_shard_size, getattr(torch, args.dtype))
    except ModelDirError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"{args.output_dir}: {len(files)} weight file(s), {sum(file.stat().st_size for file in files)} bytes")


if __name__ == "__main__":
    main()
