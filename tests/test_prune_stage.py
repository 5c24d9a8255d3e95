"""The prune and baselines stages' jobs on a toy task: artifacts, metrics, reload, and clear input errors."""

import json

import pytest
import torch

from pipeline import read_stage_metrics
from pipeline.baselines import compare_with_baselines
from pipeline.prune import HISTORY_FILE, TRAJECTORY_FILE, prune_teacher
from top.cpu import cpu_description
from top.errors import DataError, ModelDirError
from top.pruning.model import TokenPruningBertForSequenceClassification


def test_prune_then_compare(toy_top):
    params, _spec, splits, tokenizer, tmp_path = toy_top
    metrics = prune_teacher(
        tmp_path / "prepared", tmp_path / "teacher", params.prune, tmp_path / "pruned", tmp_path / "live", tmp_path
    )
    assert metrics["task"] == "toy" and set(metrics["teacher"]) == {"accuracy"}
    assert metrics["macs_ratio_real_lengths"] <= params.prune.target_macs + params.prune.macs_tolerance
    assert metrics["macs_ratio_padded_max_length"] < metrics["macs_ratio_real_lengths"]
    assert metrics["delta_points"] == pytest.approx(100 * (metrics["accuracy"] - metrics["teacher"]["accuracy"]))
    assert list(metrics["keep_ratios"]) == ["layer_1"] and metrics["resumed_from_checkpoint"] is False
    assert not list(tmp_path.glob("prune-*.pt")), "the finished run's checkpoint is removed"
    assert metrics["device"] == "cpu" and metrics["dtype"] == "float32"
    assert metrics["machine"]["isa_flags"] == cpu_description(1)["isa_flags"]  # where it trained
    assert metrics["teacher_outputs"]["source"] == "computed"
    assert len(list(tmp_path.glob("teacher-outputs-*.pt"))) == 1, "the teacher outputs are kept for later runs"
    header, *rows = (line.split("\t") for line in (tmp_path / "live" / HISTORY_FILE).read_text().splitlines())
    assert {"step", "macs_ratio", "target", "dev_score"} <= set(header)
    search = [dict(zip(header, row, strict=True)) for row in rows if row[header.index("phase")] == "search"]
    assert metrics["search_end_macs_ratio"] == pytest.approx(float(search[-1]["macs_ratio"]), abs=1e-4)
    header, *rows = (line.split("\t") for line in (tmp_path / "live" / TRAJECTORY_FILE).read_text().splitlines())
    trajectory = [dict(zip(header, row, strict=True)) for row in rows]
    assert {"expected_macs", "target", "lambda1", "lambda2", "keep_0"} <= set(header)
    steps = [int(point["step"]) for point in trajectory]
    assert steps == sorted(steps) and steps[-1] <= int(search[-1]["step"]), "one point per search step at most"
    assert float(trajectory[-1]["target"]) == pytest.approx(params.prune.target_macs)
    # The toy's pruned model trained away from the random teacher: the two rank differently.
    agreement = metrics["ranking_agreement"]
    assert set(agreement) == {"teacher", "pruned"} and set(agreement["pruned"]) == {"layer_1"}
    assert set(agreement["pruned"]["layer_1"]) == {"kendall_tau", "top_k_overlap"}
    assert agreement["pruned"] != agreement["teacher"]
    assert metrics["ranking_agreement_examples"] == len(splits["eval"])  # a toy split is measured whole

    # A user's two lines: load and call it like a Hugging Face model.
    model = TokenPruningBertForSequenceClassification.from_pretrained(tmp_path / "pruned")
    batch = tokenizer(["the cat sat on the mat today", "a dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 2)
    assert model.config.keep_ratios == [metrics["keep_ratios"]["layer_1"]]

    compared = compare_with_baselines(tmp_path / "prepared", tmp_path / "teacher", metrics, params.prune)
    assert compared["top"] == metrics["accuracy"] and compared["teacher"] == metrics["teacher"]["accuracy"]
    details = compared["details"]
    assert details["static_topk"]["macs_ratio_real_lengths"] == pytest.approx(
        compared["macs_ratio_real_lengths"], abs=0.1
    )
    assert details["truncation"]["max_length"] <= 24
    json.dumps(compared)  # the stage writes it as JSON


def test_bad_teacher_dir_and_missing_prune_metrics(toy_top, tmp_path, monkeypatch):
    params, *_ = toy_top
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ModelDirError, match=r"no config\.json"):
        prune_teacher(
            tmp_path / "prepared", tmp_path / "not-a-model", params.prune, tmp_path / "o", tmp_path / "l", tmp_path
        )
    with pytest.raises(DataError, match="run the prune stage first"):
        monkeypatch.chdir(tmp_path)
        read_stage_metrics("prune")
