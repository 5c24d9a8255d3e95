"""Batches of a prepared split: one definition for training, evaluation, calibration and benchmarking."""

from __future__ import annotations

import datasets
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TARGETS = ("label", "start_positions", "end_positions")  # classification, extractive QA
# Each row's position in its split (see with_example_index): what per-example caches are looked up by.
EXAMPLE_INDEX = "example_index"


def with_example_index(split: datasets.Dataset) -> datasets.Dataset:
    """``split`` with an ``example_index`` column holding each row's position, which its batches then carry."""
    if EXAMPLE_INDEX in split.column_names:
        return split
    return split.add_column(EXAMPLE_INDEX, list(range(len(split))))


def batch_loader(
    split: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    shuffle: bool,
    seed: int,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """Batches of model inputs and targets (and ``example_index`` where the split has it) with dynamic padding;
    a seeded order when shuffled. ``pin_memory`` (for CUDA) lets the copies to the device run asynchronously."""
    columns = [c for c in (*MODEL_INPUTS, *TARGETS, EXAMPLE_INDEX) if c in split.column_names]
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        split.select_columns(columns),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        generator=generator,
        pin_memory=pin_memory,
    )


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The tensors a BERT forward takes (no labels), moved to ``device`` if one is given."""
    return {
        name: batch[name] if device is None else batch[name].to(device, non_blocking=True)
        for name in MODEL_INPUTS
        if name in batch
    }
