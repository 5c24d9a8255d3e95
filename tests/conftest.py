"""Shared fixtures: the real benchmark data root, a tiny random-weight BERT, and params builders."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertForSequenceClassification

from top.backbone import load_tokenizer
from top.data.prepare import load_prepared, prepare_task
from top.params import parse_params

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"

# Under pytest-xdist (`make test` runs one worker per core) each worker gets its share of the cores: torch's
# default of one thread per core in every worker would oversubscribe them.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

# Stage tests run their stages in temporary directories, which inherit this variable: a relative data root
# (the README's `export TOP_DATA_DIR=../shared/data`) is made absolute from where pytest started.
if os.environ.get("TOP_DATA_DIR"):
    os.environ["TOP_DATA_DIR"] = str(Path(os.environ["TOP_DATA_DIR"]).resolve())


@contextmanager
def flop_counter() -> Iterator[FlopCounterMode]:
    """torch's FLOP counter, with fused attention on its math backend: the counter does not see the fused CPU
    kernel (it would count its matmuls as zero), but it counts the math backend's, which compute the same."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        yield counter


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real data root ($TOP_DATA_DIR). Missing data is a failure, never a silent skip."""
    value = os.environ.get("TOP_DATA_DIR")
    if not value:
        pytest.fail("TOP_DATA_DIR is not set: point it at the benchmark data root (CI uses ../shared/data)")
    path = Path(value)
    if not (path / "glue").is_dir():
        pytest.fail(f"TOP_DATA_DIR={path} does not hold glue/: the benchmark data is missing")
    return path


def tiny_bert_config(**overrides: Any) -> BertConfig:
    """A 4-layer, 48-hidden BERT config for unit tests (eager attention, which the FLOP counter sees)."""
    settings = {
        "vocab_size": 120,
        "hidden_size": 48,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 96,
        "num_labels": 3,
        "attn_implementation": "eager",
    }
    return BertConfig(**(settings | overrides))


def save_tiny_bert(directory: Path, model_class: type, **config_overrides: Any) -> Path:
    """Save a 2-layer, 32-hidden ``model_class`` with random weights and the real uncased WordPiece tokenizer;
    ``config_overrides`` replace any ``BertConfig`` setting."""
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    settings = {
        "vocab_size": tokenizer.vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 512,
    }
    config = BertConfig(**(settings | config_overrides))
    model_class(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT classifier (2 labels) with random weights."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), BertForSequenceClassification)


@pytest.fixture(scope="session")
def default_params_dict() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def params_dict(default_params_dict: dict[str, Any]) -> dict[str, Any]:
    """A fresh, mutable copy of the repository's params.yaml."""
    return copy.deepcopy(default_params_dict)


def write_tsv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    return path


def toy_dataset(root: Path, rows: int = 24) -> None:
    """A learnable two-class task under root/toy: the label is whether the text talks about cats."""
    words = ["cats purr softly", "dogs bark loudly"]
    train = [["label", "text"]] + [[str(i % 2), f"{words[i % 2]} {i}"] for i in range(rows)]
    write_tsv(root / "toy/train.tsv", train)
    write_tsv(root / "toy/eval.tsv", train[: 1 + rows // 2])


def use_toy_task(params_dict: dict[str, Any], data_root: Path, labels: list[str] | None = None) -> None:
    """Point params_dict at the custom dataset root/toy/{train,eval}.tsv."""
    params_dict["data"].update(task="toy", data_dir=str(data_root), max_length=16)
    params_dict["data"]["custom"] = {
        "toy": {
            "train": "toy/train.tsv",
            "eval": "toy/eval.tsv",
            "text_columns": ["text"],
            "label_column": "label",
            "labels": labels,
        }
    }


@pytest.fixture
def toy_top(params_dict: dict[str, Any], tiny_bert_dir: Path, tmp_path: Path) -> tuple[Any, ...]:
    """Params, prepared toy task, tokenizer and a random 3-layer teacher (in tmp_path/teacher) for ToP tests."""
    tiny_pipeline_params(params_dict, tiny_bert_dir, tmp_path, rows=64)
    params_dict["prune"].update(epochs=30, learning_rate=1e-4, eval_batch_size=32)
    params = parse_params(params_dict)
    prepare_task(params.data, params.model.backbone, tmp_path / "prepared")
    # A random 3-layer BERT plays the fine-tuned teacher (tiny_bert_dir has 2 layers: too few to prune after 1).
    config = BertConfig.from_pretrained(tiny_bert_dir, num_hidden_layers=3, num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "teacher")
    spec, splits, _ = load_prepared(tmp_path / "prepared")
    return params, spec, splits, load_tokenizer(str(tiny_bert_dir)), tmp_path


def tiny_pipeline_params(
    params_dict: dict[str, Any], backbone: Path, data_root: Path, rows: int = 48
) -> dict[str, Any]:
    """Params for a whole-pipeline run in seconds: a toy task written under ``data_root``, a tiny backbone."""
    toy_dataset(data_root, rows=rows)
    use_toy_task(params_dict, data_root, labels=["0", "1"])
    params_dict["data"]["max_length"] = 24
    params_dict["model"]["backbone"] = str(backbone)
    params_dict["teacher"].update(epochs=1, batch_size=16, threads=1, device="cpu")
    params_dict["prune"].update(
        target_macs=0.6,
        prune_layers=[1],
        bins=4,
        top_k=4,
        distill_layers=[0],
        epochs=40,
        finetune_epochs=5,
        warmup_ratio=0.3,
        # The authors' Adam multipliers: the toy's search then overshoots, which the fine-tuning tests rely on.
        mask_learning_rate=0.1,
        multiplier_update="adam",
        multiplier_learning_rate=0.1,
        constraint_penalty=0.0,
        batch_size=16,
        eval_steps=20,
        macs_tolerance=0.05,
        device="cpu",
        threads=1,
    )
    params_dict["quantize"].update(calibration_batches=2, calibration_batch_size=8)
    params_dict["benchmark"].update(
        threads=1, batch_sizes=[1, 4], examples=8, warmup=1, repetitions=2, rounds=2, compile=False
    )
    params_dict["flex"].update(
        enabled=True,
        importance_samples=8,
        widths=[1.0, 0.5],
        depths=[1.0, 0.5],
        width_epochs=1,
        depth_epochs=1,
        batch_size=16,
        eval_batch_size=16,
        gate_widths=[0.5, 1.0],
        gate_epochs=2,
        width_map_grid=[0.5, 1.0],
        thresholds=[0.0, 0.5],
        save_steps=2,
        device="cpu",
        threads=1,
    )
    return params_dict


def fit_classifier_head(model: Any, split: Any, tokenizer: Any) -> None:
    """Set a two-class head to a logistic regression on the frozen encoder's pooled [CLS] over ``split``.

    A random head would put most examples near the decision boundary, where any rounding flips predictions.
    """
    from sklearn.linear_model import LogisticRegression

    from top.data.batches import batch_loader, model_inputs

    features, labels = [], []
    with torch.no_grad():
        for batch in batch_loader(split, tokenizer, 32, False, 0):
            features.append(model.bert.pooler(model.bert(**model_inputs(batch)).last_hidden_state))
            labels.append(batch["labels"])
    head = LogisticRegression(max_iter=1000).fit(torch.cat(features).numpy(), torch.cat(labels).numpy())
    with torch.no_grad():
        weight = torch.tensor(head.coef_, dtype=torch.float32)
        model.classifier.weight.copy_(torch.cat([-weight, weight]) / 2)
        model.classifier.bias.copy_(torch.tensor([-head.intercept_[0], head.intercept_[0]], dtype=torch.float32) / 2)
