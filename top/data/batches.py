"""Batches of a prepared split: one definition for training, evaluation, calibration and benchmarking."""

from __future__ import annotations

import datasets
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TARGETS = ("label", "start_positions", "end_positions")  # classification, extractive QA


def batch_loader(
    split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int, shuffle: bool, seed: int
) -> torch.utils.data.DataLoader:
    """Batches of model inputs and targets with dynamic padding; a seeded order when shuffled."""
    columns = [c for c in (*MODEL_INPUTS, *TARGETS) if c in split.column_names]
    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        split.select_columns(columns), batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator
    )


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The tensors a BERT forward takes (no labels), moved to ``device`` if one is given."""
    return {name: batch[name] if device is None else batch[name].to(device) for name in MODEL_INPUTS if name in batch}
