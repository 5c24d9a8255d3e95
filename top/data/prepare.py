"""The prepare stage's work: load a task, subsample it if asked, tokenize it, and save it with its metadata.

The saved directory is self-describing (``meta.json``: labels, metrics, splits, source files and their
sha256), so later stages need nothing but this directory and their own params.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from top.atomic import atomic_directory
from top.backbone import load_tokenizer
from top.data.sources import load_task, resolve_data_dir
from top.data.tasks import EvalSplit, TaskSpec, resolve_task
from top.errors import DataError
from top.params import DataParams
from top.qa.prepare import prepare_qa

log = logging.getLogger(__name__)

META_FILE = "meta.json"


def prepare_task(data: DataParams, backbone: str, output_dir: str | Path) -> dict[str, Any]:
    """Prepare ``data.task`` into ``output_dir`` (atomically) and return the stage's metrics."""
    spec = resolve_task(data.task, data.custom)
    data_dir = resolve_data_dir(data.data_dir)
    log.info("loading task %s from %s", spec.name, data_dir or "the Hugging Face hub")
    if spec.is_qa:
        return prepare_qa(spec, data, data_dir, backbone, output_dir)
    spec, splits, source = load_task(spec, data_dir)
    splits = _subsample(splits, data)
    tokenizer = load_tokenizer(backbone)
    log.info("tokenizing %s with max_length=%d", ", ".join(f"{k}={len(v)}" for k, v in splits.items()), data.max_length)
    tokenized, lengths = _tokenize(splits, spec, tokenizer, data.max_length)
    meta = {
        "task": asdict(spec) | {"num_labels": spec.num_labels, "is_regression": spec.is_regression},
        "splits": {name: len(split) for name, split in tokenized.items()},
        "max_length": data.max_length,
        "backbone": backbone,
        "source": source,
    }
    with atomic_directory(output_dir) as staging:
        tokenized.save_to_disk(str(staging / "splits"))
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {
        "task": spec.name,
        "rows": meta["splits"],
        "max_length": data.max_length,
        "tokens": {name: _length_summary(values, data.max_length) for name, values in lengths.items()},
    }


def load_prepared(prepared_dir: str | Path) -> tuple[TaskSpec, datasets.DatasetDict, dict[str, Any]]:
    """Read a prepared directory back: the task spec, the tokenized splits and the full metadata."""
    prepared_dir = Path(prepared_dir)
    meta_file = prepared_dir / META_FILE
    if not meta_file.is_file():
        raise DataError(f"{prepared_dir} is not a prepared dataset (no {META_FILE}); run the prepare stage first")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    fields = {k: v for k, v in meta["task"].items() if k not in ("num_labels", "is_regression")}
    fields["eval_splits"] = tuple(EvalSplit(**item) for item in fields["eval_splits"])
    for key in ("text_columns", "hub_text_columns", "metrics", "raw_labels", "label_names"):
        if fields.get(key) is not None:
            fields[key] = tuple(fields[key])
    spec = TaskSpec(**fields)
    # In memory: later stages shuffle, select and re-tokenize, and must never write cache files into this output.
    return spec, datasets.load_from_disk(str(prepared_dir / "splits"), keep_in_memory=True), meta


def _subsample(splits: datasets.DatasetDict, data: DataParams) -> datasets.DatasetDict:
    """Keep a seeded random subset for quick runs; evaluation splits keep their order otherwise."""
    limited = {}
    for name, split in splits.items():
        limit = data.max_train_samples if name == "train" else data.max_eval_samples
        if limit is not None and limit < len(split):
            split = split.shuffle(seed=data.seed).select(range(limit))
        limited[name] = split
    return datasets.DatasetDict(limited)


def tokenize_split(split: datasets.Dataset, spec: TaskSpec, tokenizer: Any, max_length: int) -> datasets.Dataset:
    """Add input_ids etc. to a split of text rows, truncated to ``max_length`` tokens (longest text first)."""

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        pair = (batch["text_a"], batch["text_b"]) if spec.is_pair else (batch["text_a"],)
        return tokenizer(*pair, truncation=True, max_length=max_length)

    return split.map(encode, batched=True, desc=f"tokenize at max_length={max_length}")


def _tokenize(
    splits: datasets.DatasetDict, spec: TaskSpec, tokenizer: Any, max_length: int
) -> tuple[datasets.DatasetDict, dict[str, np.ndarray]]:
    def full_length(batch: dict[str, list[Any]]) -> dict[str, Any]:
        pair = (batch["text_a"], batch["text_b"]) if spec.is_pair else (batch["text_a"],)
        return {"untruncated_length": [len(ids) for ids in tokenizer(*pair, verbose=False)["input_ids"]]}

    tokenized = {}
    lengths = {}
    for name, split in splits.items():
        encoded = tokenize_split(split, spec, tokenizer, max_length)
        untruncated = split.map(full_length, batched=True, remove_columns=split.column_names, desc=f"measure {name}")
        lengths[name] = np.asarray(untruncated["untruncated_length"])
        tokenized[name] = encoded
    return datasets.DatasetDict(tokenized), lengths


def _length_summary(untruncated: np.ndarray, max_length: int) -> dict[str, float]:
    kept = np.minimum(untruncated, max_length)
    return {
        "mean": float(kept.mean()),
        "p50": float(np.percentile(kept, 50)),
        "p90": float(np.percentile(kept, 90)),
        "max": int(kept.max()),
        "truncated_share": float((untruncated > max_length).mean()),
    }
