"""Prefix subnets on the real backbone: through its [CLS] a shallow prefix predicts one class for every input,
through the mean of its tokens it learns the task.

MiniLM's [CLS] state is an input-independent attention sink until its last layers, so a prefix's [CLS] carries
nothing to classify from and stage 2 sits on the majority class; the mean of the real tokens' states carries the
input at every layer. The task is synthetic (a keyword decides the label) and the teacher is the backbone with a
classifier fitted on its final [CLS], so the test needs no data and no fine-tuning.
"""

from __future__ import annotations

import copy
import random

import datasets
import pytest
import torch
from transformers import BertConfig

from top.backbone import load_float32, load_tokenizer, resolve_backbone
from top.data.batches import batch_loader, model_inputs
from top.flex.supernet import FlexibleBertForSequenceClassification
from top.flex.train import Optimization, SupernetStage, frozen_copy, train_supernet
from top.params import FlexParams

from .conftest import DEFAULT_BACKBONE, fit_classifier_head

WORDS = ["the", "a", "of", "to", "in", "on", "river", "road", "city", "house", "tree", "car", "book", "old", "new"]


def keyword_split(tokenizer, rows: int, seed: int) -> datasets.Dataset:
    """Random word strings holding "cat" (label 1, about two thirds of rows) or "dog" (label 0)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(rows):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 9))]
        label = int(rng.random() < 0.67)
        words.insert(rng.randint(0, len(words)), "cat" if label else "dog")
        texts.append(" ".join(words))
        labels.append(label)
    encoded = tokenizer(texts, truncation=True, max_length=24)
    return datasets.Dataset.from_dict(dict(encoded) | {"label": labels})


@torch.no_grad()
def predictions(model, split, tokenizer, depth: int) -> torch.Tensor:
    model.eval()
    batches = batch_loader(split, tokenizer, 64, False, 0)
    return torch.cat([model(**model_inputs(batch), depth=depth).logits.argmax(-1) for batch in batches])


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_a_shallow_prefix_learns_only_through_the_mean_of_its_tokens(pooling, tmp_path):
    torch.set_num_threads(1)
    tokenizer = load_tokenizer(DEFAULT_BACKBONE)
    location = resolve_backbone(DEFAULT_BACKBONE)
    config = BertConfig.from_pretrained(location, num_labels=2)
    torch.manual_seed(0)
    teacher = load_float32(FlexibleBertForSequenceClassification, location, config=config).eval()
    train, dev = keyword_split(tokenizer, 192, seed=0), keyword_split(tokenizer, 96, seed=1)
    fit_classifier_head(teacher, train, tokenizer)
    labels = torch.tensor(dev["label"])
    assert (predictions(teacher, dev, tokenizer, 6) == labels).float().mean() > 0.95

    student = copy.deepcopy(teacher)
    student.config.flex_prefix_pooling = pooling
    defaults = FlexParams()
    stage = SupernetStage("depth", [1.0], [6, 3], 1, defaults.depth_learning_rate, 1.0, None, 1)
    train_supernet(
        student,
        frozen_copy(teacher),
        train,
        train,
        tokenizer,
        stage,
        Optimization(16, 0, 1000, "auto"),
        False,
        tmp_path / "c",
    )
    full, shallow = predictions(student, dev, tokenizer, 6), predictions(student, dev, tokenizer, 3)
    assert (full == labels).float().mean() > 0.95
    if pooling == "cls":  # the cause: the prefix's [CLS] is the same for every input
        assert shallow.unique().numel() == 1
    else:
        majority = max(labels.float().mean(), 1 - labels.float().mean())
        assert (shallow == labels).float().mean() > majority + 0.1
