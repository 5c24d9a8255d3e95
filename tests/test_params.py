from pathlib import Path

import pytest

from top.data.tasks import resolve_task
from top.errors import ParamsError
from top.params import load_params, parse_params

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
