"""Loaders against the real benchmark files: official row counts and label balance."""

import pytest

from top.data.sources import load_task, read_split
from top.data.tasks import GLUE_TASKS, resolve_task
from top.params import parse_params


@pytest.mark.parametrize(
    ("task", "split_file", "rows", "positives"),
    [
        ("sst2", "train.tsv", 67_349, 37_569),
        ("sst2", "dev.tsv", 872, 444),
        ("mrpc", "train.tsv", 3_668, 2_474),
        ("mrpc", "dev.tsv", 408, 279),
        ("cola", "train.tsv", 8_551, 6_023),
        ("cola", "dev.tsv", 1_043, 721),  # this file has no trailing newline
    ],
)
def test_glue_row_counts_and_balance(shared_data_dir, task, split_file, rows, positives):
    spec = GLUE_TASKS[task]
    columns = read_split(spec, shared_data_dir / "glue" / spec.glue_dir_name / split_file)
    assert len(columns["label"]) == rows
    assert sum(columns["label"]) == positives


def test_qnli_dev_keeps_rows_that_start_with_quotes(shared_data_dir):
    columns = read_split(GLUE_TASKS["qnli"], shared_data_dir / "glue" / "QNLI" / "dev.tsv")
    assert len(columns["label"]) == 5_463
    assert columns["label"].count(0) == 2_702  # entailment
    assert columns["text_a"][0].startswith("What came into force after the new constitution was herald")


def test_mrpc_text_pairs_survive_bom_and_quotes(shared_data_dir):
    _, splits, source = load_task(GLUE_TASKS["mrpc"], shared_data_dir)
    assert {name: len(split) for name, split in splits.items()} == {"train": 3_668, "eval": 408}
    assert set(splits["train"].column_names) == {"text_a", "text_b", "label"}
    assert source["files"]["eval"]["sha256"] == "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17"


@pytest.mark.parametrize(
    ("name", "train_rows", "eval_rows", "classes"), [("20news", 11_314, 7_532, 20), ("imdb", 25_000, 25_000, 2)]
)
def test_long_document_sets(shared_data_dir, params_dict, name, train_rows, eval_rows, classes):
    params = parse_params(params_dict)
    spec, splits, _ = load_task(resolve_task(name, params.data.custom), shared_data_dir)
    assert (len(splits["train"]), len(splits["eval"])) == (train_rows, eval_rows)
    assert spec.num_labels == classes
    assert len(set(splits["eval"]["label"])) == classes
