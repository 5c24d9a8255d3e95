"""Bad input gets an error that names the file and line."""

import pytest

from top.data.sources import load_task, read_split
from top.data.tasks import GLUE_TASKS, custom_task
from top.errors import DataError
from top.params import CustomDatasetParams

from .conftest import write_tsv

SST2 = GLUE_TASKS["sst2"]


def test_missing_task_directory(tmp_path):
    (tmp_path / "glue").mkdir()
    with pytest.raises(DataError, match=r"GLUE task directory not found: .*glue/SST-2"):
        load_task(SST2, tmp_path)


def test_missing_file(tmp_path):
    write_tsv(tmp_path / "glue/SST-2/train.tsv", [["sentence", "label"], ["good", "1"]])
    with pytest.raises(DataError, match=r"data file not found: .*SST-2/dev.tsv"):
        load_task(SST2, tmp_path)


def test_wrong_column_count_names_the_line(tmp_path):
    path = write_tsv(tmp_path / "train.tsv", [["sentence", "label"], ["good", "1"], ["bad", "0", "extra"]])
    with pytest.raises(DataError, match=r"train.tsv:3: expected 2 tab-separated columns, found 3"):
        read_split(SST2, path)


def test_unknown_label_names_the_line(tmp_path):
    path = write_tsv(tmp_path / "dev.tsv", [["sentence", "label"], ["good", "1"], ["meh", "2"]])
    with pytest.raises(DataError, match=r"dev.tsv:3: unknown label '2' for task sst2 \(expected one of: 0, 1\)"):
        read_split(SST2, path)


def test_regression_label_must_be_a_number(tmp_path):
    header = [
        "index",
        "genre",
        "filename",
        "year",
        "old_index",
        "source1",
        "source2",
        "sentence1",
        "sentence2",
        "score",
    ]
    path = write_tsv(tmp_path / "dev.tsv", [header, ["0", "g", "f", "y", "o", "s", "s", "a", "b", "high"]])
    with pytest.raises(DataError, match=r"dev.tsv:2: label 'high' is not a number"):
        read_split(GLUE_TASKS["stsb"], path)


def test_empty_split(tmp_path):
    path = write_tsv(tmp_path / "dev.tsv", [["sentence", "label"]])
    with pytest.raises(DataError, match=r"dev.tsv: empty split"):
        read_split(SST2, path)


def test_blank_line_in_the_middle(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\ngood\t1\n\nbad\t0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev.tsv:3: empty line"):
        read_split(SST2, path)


def test_missing_column(tmp_path):
    path = write_tsv(tmp_path / "dev.tsv", [["text", "label"], ["good", "1"]])
    with pytest.raises(DataError, match=r"no column 'sentence'"):
        read_split(SST2, path)


def test_not_utf8(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(DataError, match=r"dev.tsv: not valid UTF-8"):
        read_split(SST2, path)


def test_unknown_extension(tmp_path):
    (tmp_path / "train.json").write_text("{}")
    params = CustomDatasetParams(
        train="train.json", eval="train.json", text_columns=["t"], label_column="l", labels=["a"]
    )
    with pytest.raises(DataError, match=r"cannot tell the format"):
        load_task(custom_task("x", params), tmp_path)


def test_custom_eval_label_outside_declared_set(tmp_path):
    write_tsv(tmp_path / "train.tsv", [["label", "text"], ["pos", "a"], ["neg", "b"]])
    write_tsv(tmp_path / "eval.tsv", [["label", "text"], ["neutral", "c"]])
    params = CustomDatasetParams(
        train="train.tsv", eval="eval.tsv", text_columns=["text"], label_column="label", labels=None
    )
    with pytest.raises(DataError, match=r"eval.tsv:2: unknown label 'neutral' for task x"):
        load_task(custom_task("x", params), tmp_path)
