"""The flex job end to end on a toy task: metrics shape, resume from finished phases, reload, bad params; the
final fine-tuning stage on its own."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import BertConfig

from pipeline.flex import flex_teacher
from top.cpu import cpu_description
from top.data.batches import batch_loader, model_inputs
from top.errors import ParamsError
from top.flex.dynamic import dynamic_forward
from top.flex.supernet import FlexibleBertForSequenceClassification
from top.flex.train import Optimization, SupernetStage, task_loss, train_supernet
from top.params import parse_params


def toy_flex_params(params_dict):
    """toy_top already holds the tiny pipeline params; its teacher has 3 layers, so three depths; grafting
    needs a second epoch (never in the last one)."""
    params_dict["flex"].update(depths=[1.0, 0.67, 0.34], width_epochs=2)
    return parse_params(params_dict).flex


def test_flex_job_measures_grids_and_the_dynamic_range_and_resumes(toy_top, params_dict):
    _, _, _, _, tmp_path = toy_top
    params = toy_flex_params(params_dict)
    metrics, points = flex_teacher(
        tmp_path / "prepared", tmp_path / "teacher", params, tmp_path / "flex", tmp_path / "ckpt"
    )
    assert set(metrics["grids"]) == {"grafted", "plain"}
    assert metrics["device"] == "cpu" and metrics["dtype"] == "float32"
    assert metrics["machine"]["isa_flags"] == cpu_description(1)["isa_flags"]  # where it trained
    assert len(metrics["grids"]["grafted"]) == 2 * 3  # widths x depths (3 layers: 3, 2, 1)
    assert metrics["training"]["grafted_width"]["grafts"] > 0 and metrics["training"]["plain_width"]["grafts"] == 0
    assert params.finetune_epochs > 0 and {"grafted_finetune", "plain_finetune"} <= set(metrics["training"])
    assert set(metrics["grids_before_finetune"]) == {"grafted", "plain"}
    assert 0 <= metrics["grid_mean_dev_score_grafted_before_finetune"] <= 1
    assert len(metrics["grafting_gain_per_subnet"]) == 6
    majority = metrics["majority_class"]
    weakest = min(row["dev_score"] for row in metrics["grids"]["grafted"])
    assert metrics["grid_min_margin_over_majority_points_grafted"] == round(100 * (weakest - majority["dev"]), 2)
    assert len(points) == metrics["dynamic_points"] == 3 * 2  # monotone maps of 2 classes over 2 widths x 2 thresholds
    best = metrics["best_tradeoff"]
    assert 0 < best["report_macs_ratio"] <= 1.1 and 0 <= best["report_score"] <= 1
    macs = [point["report_macs_ratio"] for point in metrics["dynamic_front"]]
    assert macs == sorted(macs)
    json.dumps(metrics)  # serialisable as flex.json

    again, _ = flex_teacher(tmp_path / "prepared", tmp_path / "teacher", params, tmp_path / "flex", tmp_path / "ckpt")
    assert all(summary.get("restored") for summary in again["training"].values())
    assert again["grids"] == metrics["grids"]

    model = FlexibleBertForSequenceClassification.from_pretrained(tmp_path / "flex").eval()
    assert model.config.flex_exit_layers == [1, 2] and len(model.gates) == 3
    assert model.config.flex_prefix_pooling == params.prefix_pooling == model.ramps["1"].pooling
    ids = model.dummy_inputs["input_ids"]
    trace = dynamic_forward(model, ids, ids.ne(0).long(), None, [0.5, 1.0], 0.3)
    assert trace.logits.shape == (ids.shape[0], 2)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("widths", [0.5, 0.25], "must include 1.0"),
        ("thresholds", [-0.1], "non-negative"),
        ("graft_alpha", 1.5, "at most 1"),
        ("prefix_pooling", "max", "one of cls, mean"),
        ("finetune_epochs", -1, "at least 0"),
    ],
)
def test_bad_flex_params_are_clear_errors(params_dict, key, value, message):
    params_dict["flex"][key] = value
    with pytest.raises(ParamsError, match=message):
        parse_params(params_dict)


class NoTeacher:
    """A teacher that fails if the stage runs it."""

    def eval(self):
        return self

    def __call__(self, *args, **kwargs):
        raise AssertionError("the fine-tuning stage must not distil")


def test_the_finetuning_stage_fits_every_subnet_to_the_labels_without_a_teacher(toy_top, params_dict, tmp_path):
    _, _, splits, tokenizer, data_root = toy_top
    config = BertConfig.from_pretrained(data_root / "teacher")
    torch.manual_seed(0)
    model = FlexibleBertForSequenceClassification(config)
    stage = SupernetStage("finetune", [1.0, 0.5], [3, 1], 12, 1e-3, 0.0, None, 1, distill=False)
    train, split = splits["train"], splits["eval"]

    def loss(width: float, depth: int) -> float:
        model.eval()
        with torch.no_grad():
            batches = batch_loader(split, tokenizer, 64, False, 0)
            return sum(
                float(task_loss(model(**model_inputs(b), width=width, depth=depth).logits, b["labels"], False))
                for b in batches
            )

    before = {(width, depth): loss(width, depth) for width in stage.widths for depth in stage.depths}
    summary = train_supernet(
        model, NoTeacher(), train, train, tokenizer, stage, Optimization(16, 0, 1000, "auto"), False, tmp_path / "ft.pt"
    )
    assert summary["steps"] == 12 * math.ceil(len(train) / 16) and summary["grafts"] == 0
    for (width, depth), value in before.items():
        assert loss(width, depth) < value
