"""The prepare stage's library function on real MRPC rows with the real tokenizer."""

import pytest

from top.data.prepare import load_prepared, prepare_task
from top.data.tasks import GLUE_TASKS
from top.errors import DataError
from top.params import parse_params

from .conftest import DEFAULT_BACKBONE, use_toy_task, write_tsv


def _data_params(params_dict, **overrides):
    params_dict["data"].update(overrides)
    return parse_params(params_dict).data


def test_prepare_mrpc_subset_round_trip(shared_data_dir, params_dict, tmp_path):
    data = _data_params(
        params_dict, data_dir=str(shared_data_dir), max_train_samples=40, max_eval_samples=24, max_length=32
    )
    metrics = prepare_task(data, DEFAULT_BACKBONE, tmp_path / "prepared")
    assert metrics["rows"] == {"train": 40, "eval": 24}
    assert metrics["tokens"]["train"]["max"] <= 32
    assert 0 < metrics["tokens"]["train"]["truncated_share"] < 1  # MRPC pairs average ~53 tokens

    spec, splits, meta = load_prepared(tmp_path / "prepared")
    assert spec == GLUE_TASKS["mrpc"]
    assert meta["source"]["kind"] == "local"
    assert max(len(ids) for ids in splits["train"]["input_ids"]) == 32
    assert {"input_ids", "attention_mask", "token_type_ids", "label"} <= set(splits["eval"].column_names)

    again = prepare_task(data, DEFAULT_BACKBONE, tmp_path / "again")
    assert again == metrics  # the seeded subsample is repeatable
    assert load_prepared(tmp_path / "again")[1]["train"]["text_a"] == splits["train"]["text_a"]


def test_failed_prepare_leaves_nothing_behind(params_dict, tmp_path):
    write_tsv(tmp_path / "toy/train.tsv", [["label", "text"], ["a", "one"], ["b", "two"]])
    write_tsv(tmp_path / "toy/eval.tsv", [["label", "text"], ["c", "three"]])
    use_toy_task(params_dict, tmp_path)
    data = parse_params(params_dict).data
    out = tmp_path / "out"
    with pytest.raises(DataError, match="unknown label 'c'"):
        prepare_task(data, DEFAULT_BACKBONE, out / "prepared")
    assert not (out / "prepared").exists()
    assert not out.exists() or not any(out.iterdir())


def test_load_prepared_from_a_wrong_directory(tmp_path):
    with pytest.raises(DataError, match="is not a prepared dataset"):
        load_prepared(tmp_path)
