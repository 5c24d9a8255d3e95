from pathlib import Path

import pytest
from pydantic import ValidationError

from top.data.tasks import resolve_task
from top.errors import ParamsError
from top.params import FlexParams, Params, PruneParams, load_params, parse_params

from .conftest import REPO_ROOT


def test_repository_params_are_valid(default_params_dict):
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data.task == "mrpc"
    assert isinstance(params.teacher.learning_rate, float)
    assert params.teacher.learning_rate == float(default_params_dict["teacher"]["learning_rate"])
    assert set(params.data.custom) == {"20news", "imdb"}


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("teacher", "epochs", 0, "teacher.epochs must be greater than 0"),
        ("teacher", "batch_size", "32", "teacher.batch_size must be an integer"),
        ("teacher", "batch_size", True, "teacher.batch_size must be an integer"),
        ("teacher", "learning_rate", "fast", "teacher.learning_rate must be a number"),
        ("teacher", "warmup_ratio", 1.5, "teacher.warmup_ratio must be at most 0.9"),
        ("teacher", "attention_dropout", 1.5, "teacher.attention_dropout must be at most 1"),
        ("teacher", "device", "tpu", "teacher.device must be one of auto, cpu, cuda"),
        ("data", "max_length", 1024, "data.max_length must be at most 512"),
        ("data", "max_train_samples", 0, "data.max_train_samples must be at least 1"),
        ("model", "backbone", "", "model.backbone must be a non-empty string"),
        ("quantize", "activation_algorithm", "mse", "quantize.activation_algorithm must be one of kl, minmax"),
        ("quantize", "smoothing_alpha", 1.5, "quantize.smoothing_alpha must be at most 1"),
        ("benchmark", "repetitions", 0, "benchmark.repetitions must be at least 1"),
        ("benchmark", "rounds", 0, "benchmark.rounds must be at least 1"),
        ("benchmark", "rounds", 21, r"benchmark.rounds \(21\) must not exceed benchmark.repetitions \(20\)"),
        ("benchmark", "peers", ["tensorrt-int8"], r"benchmark.peers\[0\] must be one of ort-fp32, ort-int8, openvino"),
        ("benchmark", "peers", ["ort-int8", "ort-int8"], r"benchmark.peers lists a peer twice"),
        ("prune", "rank_by_question", True, "prune.rank_by_question is true but prune.protect_question is false"),
    ],
)
def test_bad_values_are_named(params_dict, section, key, value, message):
    params_dict[section][key] = value
    with pytest.raises(ParamsError, match=message):
        parse_params(params_dict)


def test_unknown_key_is_rejected(params_dict):
    params_dict["teacher"]["learning_rat"] = 1e-4
    with pytest.raises(ParamsError, match=r"unknown key\(s\) teacher.learning_rat"):
        parse_params(params_dict)


def test_unknown_section_is_rejected(params_dict):
    params_dict["teachr"] = {}
    with pytest.raises(ParamsError, match=r"unknown key\(s\) teachr"):
        parse_params(params_dict)


def test_missing_key_is_rejected(params_dict):
    del params_dict["teacher"]["seed"]
    with pytest.raises(ParamsError, match=r"missing key\(s\) teacher.seed"):
        parse_params(params_dict)


def test_yaml_11_float_strings_are_numbers(params_dict):
    params_dict["teacher"]["learning_rate"] = "3e-5"  # PyYAML reads 3e-5 as a string
    assert parse_params(params_dict).teacher.learning_rate == pytest.approx(3e-5)


def test_custom_dataset_entries_are_validated(params_dict):
    params_dict["data"]["custom"]["20news"]["text_columns"] = []
    with pytest.raises(ParamsError, match=r"data.custom.20news.text_columns must be a non-empty list"):
        parse_params(params_dict)


def test_missing_and_malformed_params_files(tmp_path: Path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_unknown_task_name(params_dict):
    params = parse_params(params_dict)
    with pytest.raises(ParamsError, match=r"unknown task name 'glue-x'.*known tasks: cola"):
        resolve_task("glue-x", params.data.custom)


def test_library_configs_have_the_params_yaml_defaults():
    assert PruneParams() == PruneParams.model_validate({})
    assert PruneParams(target_macs=0.3).target_macs == 0.3
    assert FlexParams().enabled is False
    assert Params() == load_params(REPO_ROOT / "params.yaml")


def test_library_configs_still_validate():
    with pytest.raises(ValidationError, match="target_macs"):
        PruneParams(target_macs=2)
    with pytest.raises(ValidationError, match=r"unknown key\(s\) target_mac"):
        PruneParams(target_mac=0.3)


def test_missing_nested_keys_are_named(params_dict):
    del params_dict["data"]["qa"]["n_best"]
    del params_dict["data"]["custom"]["imdb"]["labels"]
    del params_dict["flex"]["enabled"]
    with pytest.raises(ParamsError, match=r"missing key\(s\) .*data.qa.n_best") as raised:
        parse_params(params_dict)
    assert "data.custom.imdb.labels" in str(raised.value)
    assert "flex.enabled" in str(raised.value)


def test_missing_section_is_named(params_dict):
    del params_dict["benchmark"]
    with pytest.raises(ParamsError, match=r"missing key\(s\) benchmark in params.yaml"):
        parse_params(params_dict)


@pytest.mark.parametrize("value", ["true", 1, None])
def test_flex_enabled_must_be_a_bool(params_dict, value):
    params_dict["flex"]["enabled"] = value
    with pytest.raises(ParamsError, match=r"flex\.enabled must be true or false"):
        parse_params(params_dict)


def test_all_errors_come_in_one_message(params_dict):
    params_dict["teacher"]["epochs"] = 0
    params_dict["prune"]["device"] = "tpu"
    params_dict["flex"]["widths"] = [1.0, 0.0]
    with pytest.raises(ParamsError) as raised:
        parse_params(params_dict)
    message = str(raised.value)
    assert "teacher.epochs must be greater than 0" in message
    assert "prune.device must be one of auto, cpu, cuda" in message
    assert r"flex.widths[1] must be greater than 0" in message


def test_integers_are_floats_but_not_the_other_way(params_dict):
    params_dict["teacher"]["epochs"] = 2
    params = parse_params(params_dict)
    assert isinstance(params.teacher.epochs, float) and params.teacher.epochs == 2.0
    params_dict["teacher"]["batch_size"] = 16.0
    with pytest.raises(ParamsError, match=r"teacher\.batch_size must be an integer"):
        parse_params(params_dict)


def test_top_level_must_be_a_mapping():
    with pytest.raises(ParamsError, match=r"params\.yaml must be a mapping of keys to values, got list"):
        parse_params([1, 2])
