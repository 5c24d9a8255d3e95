"""The prepare stage for extractive QA: SQuAD questions in, tokenized windows (features) out.

The prepared directory has the same shape as a classification task's (``splits`` + ``meta.json``), so later
stages read it with ``load_prepared``. Its splits: ``train`` and ``eval`` windows with start/end token targets,
the ``eval`` windows also with each token's character span (``offset_start``/``offset_end``, -1 outside the
context) and their question (``example_index``), and ``eval_examples`` (id, context, gold answers) so that
answers can be decoded and scored with nothing but this directory. ``meta.json`` carries the QA params the
decoding needs.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from top.atomic import atomic_directory
from top.backbone import load_tokenizer
from top.data.sources import describe_files
from top.data.tasks import TaskSpec
from top.errors import DataError, ParamsError
from top.params import DataParams, QAParams
from top.qa.features import QAFeatures, qa_features
from top.qa.squad import QAExample, load_squad, split_by_article

log = logging.getLogger(__name__)

LOCAL_SQUAD_FILE = Path("squad") / "dev-v1.1.json"
HUB_SQUAD_DATASET = "squad"
EVAL_EXAMPLES = "eval_examples"


def prepare_qa(
    spec: TaskSpec, data: DataParams, data_dir: Path | None, backbone: str, output_dir: str | Path
) -> dict[str, Any]:
    """Prepare SQuAD into ``output_dir`` (atomically) and return the stage's metrics."""
    qa = data.qa
    if qa.doc_stride * 2 > qa.max_length:
        raise ParamsError(
            f"data.qa.doc_stride ({qa.doc_stride}) must be at most half of data.qa.max_length ({qa.max_length})"
        )
    train, evaluation, source = load_squad_examples(data_dir, qa)
    train = _subsample(train, data.max_train_samples, data.seed)
    evaluation = _subsample(evaluation, data.max_eval_samples, data.seed)
    if not train or not evaluation:
        raise DataError(f"SQuAD split is empty ({len(train)} train, {len(evaluation)} eval questions)")
    tokenizer = load_tokenizer(backbone)
    log.info("windowing %d train and %d eval questions at max_length=%d", len(train), len(evaluation), qa.max_length)
    train_features = qa_features(train, tokenizer, qa.max_length, qa.doc_stride)
    eval_features = qa_features(evaluation, tokenizer, qa.max_length, qa.doc_stride)
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_window_columns(train_features)),
            "eval": datasets.Dataset.from_dict(_window_columns(eval_features) | _decoding_columns(eval_features)),
            EVAL_EXAMPLES: datasets.Dataset.from_dict(
                {
                    "id": [example.id for example in evaluation],
                    "context": [example.context for example in evaluation],
                    "answer_texts": [list(example.answer_texts) for example in evaluation],
                }
            ),
        }
    )
    meta = {
        "task": asdict(spec) | {"num_labels": spec.num_labels, "is_regression": spec.is_regression},
        "splits": {name: len(split) for name, split in splits.items()},
        "questions": {"train": len(train), "eval": len(evaluation)},
        "max_length": qa.max_length,
        "qa": qa.model_dump(),
        "backbone": backbone,
        "source": source,
    }
    with atomic_directory(output_dir) as staging:
        splits.save_to_disk(str(staging / "splits"))
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {
        "task": spec.name,
        "questions": meta["questions"],
        "rows": {"train": len(splits["train"]), "eval": len(splits["eval"])},  # windows
        "max_length": qa.max_length,
        "split": source.get("split", "hub train / validation"),
        "tokens": {
            name: _window_lengths(features) for name, features in (("train", train_features), ("eval", eval_features))
        },
    }


def load_squad_examples(data_dir: Path | None, qa: QAParams) -> tuple[list[QAExample], list[QAExample], dict]:
    """(train, eval) questions and a description of where they came from."""
    if data_dir is None:
        return _load_hub_squad()
    path = data_dir / LOCAL_SQUAD_FILE
    articles = load_squad(path)
    train, evaluation = split_by_article(articles, qa.eval_share, qa.split_seed)
    split = {
        "by": "article",
        "eval_share": qa.eval_share,
        "seed": qa.split_seed,
        "articles": {"train": len({e.title for e in train}), "eval": len({e.title for e in evaluation})},
        "note": "train and eval are disjoint article sets of the official SQuAD v1.1 dev file",
    }
    return train, evaluation, {"kind": "local", "files": describe_files({"dev": path}), "split": split}


def _load_hub_squad() -> tuple[list[QAExample], list[QAExample], dict]:
    try:
        hub = datasets.load_dataset(HUB_SQUAD_DATASET)
    except Exception as exc:  # network, auth or cache errors all mean the same thing to the user
        raise DataError(
            f"could not load SQuAD from the Hugging Face hub ({type(exc).__name__}: {exc}). Offline, set "
            f"$TOP_DATA_DIR (or data.data_dir) to a directory holding {LOCAL_SQUAD_FILE}"
        ) from None
    converted = [
        [
            QAExample(
                row["id"],
                row["title"],
                row["context"],
                row["question"],
                tuple(row["answers"]["text"]),
                tuple(row["answers"]["answer_start"]),
            )
            for row in hub[split]
        ]
        for split in ("train", "validation")
    ]
    return converted[0], converted[1], {"kind": "hub", "dataset": HUB_SQUAD_DATASET}


def _subsample(examples: list[QAExample], limit: int | None, seed: int) -> list[QAExample]:
    if limit is None or limit >= len(examples):
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[index] for index in chosen]


def _window_columns(features: QAFeatures) -> dict[str, list]:
    return {
        "input_ids": features.input_ids,
        "attention_mask": features.attention_mask,
        "token_type_ids": features.token_type_ids,
        "start_positions": features.start_positions,
        "end_positions": features.end_positions,
    }


def _decoding_columns(features: QAFeatures) -> dict[str, list]:
    return {
        "example_index": features.example_index,
        "offset_start": [[-1 if span is None else span[0] for span in spans] for spans in features.offsets],
        "offset_end": [[-1 if span is None else span[1] for span in spans] for spans in features.offsets],
    }


def _window_lengths(features: QAFeatures) -> dict[str, float]:
    lengths = np.asarray([len(ids) for ids in features.input_ids])
    return {"mean": float(lengths.mean()), "p50": float(np.percentile(lengths, 50)), "max": int(lengths.max())}
